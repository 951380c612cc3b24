"""`vessel-segment`: segments whole fundus photographs with a trained model.

  vessel-segment --input PATH [PATH ...] --output_dir O     (the shipped model fundus_small)
  vessel-segment --model fundus_small|stare_small|M --input PATH [PATH ...] --output_dir O
  vessel-segment --config configs/stare.config --model_dir M --input photos/ --output_dir O
  vessel-segment --model_dir M --input DRIVE/test/images --masks_dir DRIVE/test/1st_manual \\
      --fov_dir DRIVE/test/mask --layout drive --error_map --output_dir O
  vessel-segment --model_dir M --manifest pairs.csv --error_map --output_dir O

Writes O/<stem>.png (0/255 vessel mask) per input, optionally O/<stem>_probabilities.png
(16-bit) with its 8-bit preview and O/<stem>_overlay.png, and with ground truth
(--masks_dir or --manifest) O/metrics.csv, O/metrics.json and, with --error_map,
O/<stem>_errors.png. With --input_scale auto (the default) each image is segmented as a
native photo or as an enlarged one, whichever its size fits. Every image goes
through one TensorFlow graph (inference/predictor.py). Tiling options not given as flags
come from the config's [tiledinfer] section (--config / --set), then model_info.json.
"""
from __future__ import annotations

from tiled_vessel_seg import cli_app
from tiled_vessel_seg.inference import folder_run, segment_flags

PROGRAM = "vessel-segment"


def define_flags() -> None:
    segment_flags.define_flags()


def main(argv: list[str]) -> int:
    return folder_run.segment_folder(segment_flags.request_from_flags(PROGRAM, argv[1:]))


def run():
    """Console entry point `vessel-segment`."""
    cli_app.run(__name__, __doc__, define_flags, main)


if __name__ == "__main__":
    run()

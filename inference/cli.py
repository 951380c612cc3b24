"""`vessel-segment`: segments whole fundus photographs with a trained model.

  vessel-segment --model_dir M --input PATH [PATH ...] --output_dir O
  vessel-segment --config configs/stare.config --model_dir M --input photos/ --output_dir O

Writes O/<stem>.png (0/255 vessel mask) per input, optionally O/<stem>_probabilities.png
(16-bit) and O/<stem>_overlay.png, and with --masks_dir O/metrics.csv. Every image goes
through one TensorFlow graph (inference/predictor.py). Tiling options not given as flags
come from the config's [tiledinfer] section (--config / --set), then model_info.json.
"""
from __future__ import annotations

import sys

from absl import app, flags

from tiled_vessel_seg import cli_app
from tiled_vessel_seg.inference import predictor_flags, segment

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "Model dir written by vessel-train: best_model.keras "
                        "+ model_info.json (local or gs://).")
    flags.DEFINE_multi_string("input", None, "Image files, folders or globs (local or "
                              "gs://). Repeat the flag or list paths after it: --input a.jpg "
                              "b/ 'c/*.ppm.gz'. Formats: png jpg gif bmp ppm pgm tif, "
                              "optionally .gz.")
    flags.DEFINE_string("output_dir", None, "Where <stem>.png masks are written (local or gs://).")
    predictor_flags.define_flags()
    flags.DEFINE_bool("save_probabilities", False, "Also write <stem>_probabilities.png, "
                      "16-bit, probability x 65535.")
    flags.DEFINE_bool("overlay", False, "Also write <stem>_overlay.png: the photo with the "
                      "vessels tinted green.")
    flags.DEFINE_string("masks_dir", None, "Ground-truth masks (grey > 127 is vessel), paired "
                        "by stem (im0001.png) or STARE's im0001.ah.ppm.gz; writes "
                        "<output_dir>/metrics.csv.")
    flags.DEFINE_bool("overwrite", False, "Rewrite outputs that exist (default: skip them).")


def main(argv: list[str]) -> int:
    from tiled_vessel_seg import model_info
    from tiled_vessel_seg.inference import predictor as predictor_lib
    for name in ("model_dir", "output_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    patterns = list(FLAGS.input or []) + list(argv[1:])
    if not patterns:
        raise app.UsageError("--input is required: image files, folders or globs")
    options = predictor_flags.predictor_options()
    files, unmatched = segment.expand_inputs(patterns)
    for pattern in unmatched:
        print(f"no image matches {pattern}", file=sys.stderr)
    if not files:
        print("nothing to segment", file=sys.stderr)
        return 1
    truths = None
    try:
        if FLAGS.masks_dir:
            truths = segment.truth_index(FLAGS.masks_dir)
        predictor = predictor_lib.load_predictor(FLAGS.model_dir, **options)
    except (model_info.ModelDirError, FileNotFoundError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    print(f"segmenting {len(files)} image(s): tile {predictor.tile_size}, overlap "
          f"{predictor.overlap}, batch {predictor.batch_size}, blend {predictor.blend}, "
          f"tta {predictor.tta}, threshold {predictor.threshold}, input {options['input_scale']}"
          + (f" (x{predictor.enlarge} in the graph)" if predictor.enlarge > 1 else ""))
    summary = segment.segment_files(predictor, files, FLAGS.output_dir,
                                    save_probabilities=FLAGS.save_probabilities,
                                    overlay=FLAGS.overlay, truths=truths,
                                    overwrite=FLAGS.overwrite)
    print(segment.format_summary(summary, FLAGS.output_dir))
    return 1 if summary.failed or unmatched else 0


def run():
    """Console entry point `vessel-segment`."""
    cli_app.run(__name__, __doc__, define_flags, main)


if __name__ == "__main__":
    run()

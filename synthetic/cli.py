"""vessel-synth: writes synthetic STARE-format fundus images with exact vessel masks.

    vessel-synth --output_dir data/synthetic --num_images 20
    vessel-synth --output_dir /tmp/tiny --num_images 4 --size 160x140 --seed 1

Writes OUT/stare-images/imNNNN.ppm.gz and OUT/labels-ah/imNNNN.ah.ppm.gz (gzipped P6
PPM, labels 0/255), the layout of the official STARE archives, so every tool that
reads STARE reads these. The same --seed gives byte-identical files.
"""
from __future__ import annotations

import re
import sys
import time

from absl import app
from absl import flags

from tiled_vessel_seg import cli_app
from tiled_vessel_seg.configs import schema, tool_config
from tiled_vessel_seg.synthetic import fundus
from tiled_vessel_seg.synthetic import stare_layout

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string(
        "output_dir", None,
        "Folder (or gs:// URL) to write stare-images/ and labels-ah/ into; created if missing.")
    flags.DEFINE_integer("num_images", None, "How many images to write (default: [synth] "
                         "num_images, 10).", lower_bound=1)
    flags.DEFINE_string(
        "size", None,
        "Image size as WIDTHxHEIGHT in pixels (default: [synth] width x height, "
        f"{fundus.STARE_WIDTH}x{fundus.STARE_HEIGHT} as STARE photographs). Vessel geometry "
        f"scales with the size; at least {fundus.MIN_SIZE}x{fundus.MIN_SIZE}.")
    flags.DEFINE_integer(
        "seed", None, "Dataset seed: same seed, size and ids give byte-identical files "
        "(default: [synth] seed, 0).")
    flags.DEFINE_integer(
        "first_id", 1, "Number of the first image id (1 -> im0001). Image imNNNN is the "
        "same for a given seed whatever --first_id a run starts at.", lower_bound=1)
    flags.DEFINE_boolean(
        "overwrite", False, "Replace existing files; without it the run refuses to start "
        "if any file it would write already exists.")


def parse_size(text: str) -> tuple[int, int]:
    """'700x605' -> (width 700, height 605)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"--size must look like WIDTHxHEIGHT, e.g. 700x605; got {text!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if width < fundus.MIN_SIZE or height < fundus.MIN_SIZE:
        raise ValueError(f"--size {text} is too small; need at least "
                         f"{fundus.MIN_SIZE}x{fundus.MIN_SIZE}")
    fundus.check_size_fits(width, height, f"--size {width}x{height}")
    return width, height


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    synth = tool_config.load_config({"synth.num_images": FLAGS.num_images,
                                 "synth.seed": FLAGS.seed}).synth
    try:
        width, height = parse_size(FLAGS.size or f"{synth.width}x{synth.height}")
    except schema.TooLargeError as e:  # a size this machine cannot hold: one line, exit 2
        raise cli_app.ToolError(str(e)) from None
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    output_dir, num_images, seed = FLAGS.output_dir, synth.num_images, synth.seed
    print(f"vessel-synth: {num_images} image(s) of {width}x{height}, seed {seed}, "
          f"into {output_dir}", flush=True)
    start = time.perf_counter()
    done = 0

    def report(image_path: str, label_path: str) -> None:
        nonlocal done
        done += 1
        print(f"  [{done}/{num_images}] {image_path}  {label_path}", flush=True)

    try:
        stare_layout.write_synthetic_stare(
            output_dir, num_images, width=width, height=height, seed=seed,
            first_id=FLAGS.first_id, overwrite=FLAGS.overwrite, on_written=report)
    except FileExistsError as e:  # an unusable output, like a full disk: exit 2
        raise cli_app.ToolError(str(e)) from None
    last = stare_layout.stare_id(FLAGS.first_id + num_images - 1)
    print(f"vessel-synth: wrote {num_images} image(s) {stare_layout.stare_id(FLAGS.first_id)}"
          f"..{last} to {stare_layout.IMAGES_DIR}/ and {stare_layout.LABELS_DIR}/ under "
          f"{output_dir} in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


def run() -> None:
    """Console-script entry point (`vessel-synth`)."""
    cli_app.run(__name__, __doc__, define_flags, main)


if __name__ == "__main__":
    run()

"""The flags vessel-segment and vessel-segment-beam share, defined once, and the
`SegmentRequest` both tools make of them.

  --input PATH ... --output_dir O      photos (files, folders, globs) and where masks go
  --model and the tiling flags         inference/predictor_flags.py
  --masks_dir --layout --fov_dir --manifest    ground truth (tiled_vessel_seg/source_flags.py)
  --save_probabilities --overlay --error_map --overwrite --max_pixels
"""
from __future__ import annotations

from typing import Sequence

from absl import app, flags

from tiled_vessel_seg import imaging, source_flags
from tiled_vessel_seg.inference import predictor_flags
from tiled_vessel_seg.inference.segment_request import SegmentRequest

FLAGS = flags.FLAGS

SOURCE_FLAGS = ("masks_dir", "layout", "fov_dir", "manifest")
# What the input-source flags mean for a segmentation run, after their one help text.
SOURCE_HELP = {
    "masks_dir": "Here the inputs' ground truth: writes <output_dir>/metrics.csv and "
                 "metrics.json. Photographs the model was trained or validated on "
                 "(model_info.json data_ids) are marked used_in_training there and "
                 "named in the summary: their scores are not test scores.",
    "fov_dir": "Here (with --masks_dir) used for the fov_* metrics.",
    "manifest": "Here the images to segment (unless --input is given) and their "
                "ground truth."}


def define_flags(paths_after_flags: bool = True) -> None:
    """paths_after_flags: the tool takes photos listed after the flags (vessel-segment);
    vessel-segment-beam passes what follows to Beam."""
    listed = ("Repeat the flag or list paths after it: --input a.jpg b/ 'c/*.ppm.gz'."
              if paths_after_flags else "Repeat the flag: --input a.jpg --input 'c/*.ppm.gz'.")
    flags.DEFINE_multi_string("input", None, "Image files, folders or globs (local or "
                              f"gs://). {listed} Formats: png jpg gif bmp ppm pgm tif, "
                              "optionally .gz.")
    flags.DEFINE_string("output_dir", None, "Where <stem>.png masks are written (local or gs://).")
    predictor_flags.define_flags()
    flags.DEFINE_bool("save_probabilities", False, "Also write <stem>_probabilities.png, "
                      "16-bit, probability x 65535.")
    flags.DEFINE_bool("overlay", False, "Also write <stem>_overlay.png: the photo with the "
                      "vessels tinted green.")
    source_flags.define_flags(SOURCE_FLAGS, help_overrides=SOURCE_HELP)
    flags.DEFINE_bool("error_map", False, "With ground truth, also write <stem>_errors.png: "
                      "true positives white, false positives red, false negatives blue.")
    flags.DEFINE_bool("overwrite", False, "Rewrite outputs that exist (default: skip them).")
    flags.DEFINE_integer("max_pixels", imaging.MAX_PIXELS,
                         "Largest image segmented, in pixels after any enlargement in the "
                         "graph (--input_scale native: width x height x scale^2); larger "
                         "files are refused from their header, before decoding. A photo "
                         "needs about 35 bytes per pixel (49 when enlarged in the graph) "
                         "on top of the model: 2.2 GB at the default. See docs/tools.md "
                         "(vessel-segment, Memory).",
                         lower_bound=1)


def request_from_flags(tool: str, patterns: Sequence[str] = ()) -> SegmentRequest:
    """The run the flags ask for; `patterns` are photos given after the flags.

    Resolves --model first: with no --model it prints, as the tool's first line, that the
    shipped model is used. Raises app.UsageError for flags that do not go together.
    """
    model_dir = predictor_flags.model_dir(tool)
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    patterns = [*(FLAGS.input or []), *patterns]
    if not patterns and not FLAGS.manifest:
        raise app.UsageError("--input is required: image files, folders or globs")
    if FLAGS.manifest and (FLAGS.masks_dir or FLAGS.fov_dir or FLAGS.layout):
        raise app.UsageError("--manifest names the masks itself: drop --masks_dir, "
                             "--fov_dir and --layout")
    if (FLAGS.fov_dir or FLAGS.layout) and not FLAGS.masks_dir and not FLAGS.manifest:
        raise app.UsageError("--layout and --fov_dir go with --masks_dir")
    return SegmentRequest(
        model_dir=model_dir, output_dir=FLAGS.output_dir,
        predictor=predictor_flags.predictor_options(), patterns=tuple(patterns),
        model=FLAGS.model, manifest=FLAGS.manifest, masks_dir=FLAGS.masks_dir,
        layout=FLAGS.layout, fov_dir=FLAGS.fov_dir,
        save_probabilities=FLAGS.save_probabilities, overlay=FLAGS.overlay,
        error_map=FLAGS.error_map, overwrite=FLAGS.overwrite, max_pixels=FLAGS.max_pixels)

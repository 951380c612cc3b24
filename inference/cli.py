"""`vessel-segment`: segments whole fundus photographs with a trained model.

  vessel-segment --input PATH [PATH ...] --output_dir O     (the shipped model stare_small)
  vessel-segment --model stare_small|M --input PATH [PATH ...] --output_dir O
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

import sys

from absl import app, flags

from tiled_vessel_seg import cli_app, imaging
from tiled_vessel_seg.inference import predictor_flags, segment

FLAGS = flags.FLAGS


def define_flags() -> None:
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
    from tiled_vessel_seg import source_flags
    source_flags.define_flags(("masks_dir", "layout", "fov_dir", "manifest"), help_overrides={
        "masks_dir": "Here the inputs' ground truth: writes <output_dir>/metrics.csv and "
                     "metrics.json. Photographs the model was trained or validated on "
                     "(model_info.json data_ids) are marked used_in_training there and "
                     "named in the summary: their scores are not test scores.",
        "fov_dir": "Here (with --masks_dir) used for the fov_* metrics.",
        "manifest": "Here the images to segment (unless --input is given) and their "
                    "ground truth."})
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


def main(argv: list[str]) -> int:
    from tiled_vessel_seg import model_info
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.inference import mask_hints
    from tiled_vessel_seg import datasets
    model_dir = predictor_flags.model_dir("vessel-segment")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    patterns = list(FLAGS.input or []) + list(argv[1:])
    if not patterns and not FLAGS.manifest:
        raise app.UsageError("--input is required: image files, folders or globs")
    if FLAGS.manifest and (FLAGS.masks_dir or FLAGS.fov_dir or FLAGS.layout):
        raise app.UsageError("--manifest names the masks itself: drop --masks_dir, "
                             "--fov_dir and --layout")
    if (FLAGS.fov_dir or FLAGS.layout) and not FLAGS.masks_dir and not FLAGS.manifest:
        raise app.UsageError("--layout and --fov_dir go with --masks_dir")
    options = predictor_flags.predictor_options()
    truths, problems = None, []
    try:
        if FLAGS.manifest:
            pairs, problems = datasets.read_manifest(FLAGS.manifest)
            truths = {imaging.image_stem(p.image_path): p for p in pairs}
            if not patterns:
                patterns = [p.image_path for p in pairs]
    except datasets.InputDirError as e:
        raise cli_app.ToolError(str(e)) from None
    files, unmatched = segment.expand_inputs(patterns)
    for pattern in unmatched:
        print(f"no image matches {imaging.one_line(pattern)}", file=sys.stderr)
    try:
        if FLAGS.masks_dir:
            ignored: list = []
            truths, problems = datasets.match_truths(files, FLAGS.masks_dir, FLAGS.layout,
                                                     FLAGS.fov_dir, ignored)
            if ignored:
                print(datasets.ignored_note(ignored, "--masks_dir"), file=sys.stderr)
    except datasets.InputDirError as e:
        raise cli_app.ToolError(str(e)) from None
    for problem in problems:
        print(f"skipped {imaging.one_line(problem.path)}: {imaging.one_line(problem.reason)}",
              file=sys.stderr)
    if not files:
        print("nothing to segment", file=sys.stderr)
        return 1
    try:
        predictor = predictor_lib.load_predictor(model_dir, **options)
        # photographs the model was trained or validated on: their scores are marked
        seen = mask_hints.training_splits(model_info.read_model_info(model_dir).data_ids)
    except (model_info.ModelDirError, FileNotFoundError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    fov_diameter = getattr(predictor, "fov_diameter", None)
    scale_note = {"auto": (f" (each photo resampled to the model's FOV of {fov_diameter:.0f} px)"
                           if fov_diameter else " (native or enlarged per image by its size: "
                           f"the model records no FOV diameter; model scale x{predictor.enlarge})"),
                  "native": f" (x{predictor.enlarge} in the graph)" if predictor.enlarge > 1
                  else ""}.get(options["input_scale"], "")
    grid = "min overlap" if predictor.fitted else "overlap"
    print(f"segmenting {len(files)} image(s): tile {predictor.tile_size}, {grid} "
          f"{predictor.overlap}, tiler {predictor.tiler}, batch {predictor.batch_size}, "
          f"blend {predictor.blend}, "
          f"tta {predictor.tta}, threshold {predictor.threshold}, input "
          f"{options['input_scale']}{scale_note}")
    model = {"model_dir": model_dir, "tile_size": predictor.tile_size,
             "overlap": predictor.overlap, "blend": predictor.blend, "tta": predictor.tta,
             "input_scale": options["input_scale"]}
    try:
        summary = segment.segment_files(predictor, files, FLAGS.output_dir,
                                        save_probabilities=FLAGS.save_probabilities,
                                        overlay=FLAGS.overlay, truths=truths,
                                        overwrite=FLAGS.overwrite, error_map=FLAGS.error_map,
                                        model=model, max_pixels=FLAGS.max_pixels,
                                        used_in_training=seen)
    except segment.OutputError as e:  # read-only or full output location
        raise cli_app.ToolError(f"{e} (outputs already written are complete and kept)") \
            from None
    print(segment.format_summary(summary, FLAGS.output_dir))
    return 1 if summary.failed or unmatched or problems else 0


def run():
    """Console entry point `vessel-segment`."""
    cli_app.run(__name__, __doc__, define_flags, main)


if __name__ == "__main__":
    run()

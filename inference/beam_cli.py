"""`vessel-segment-beam`: vessel-segment for whole archives, as a Beam RunInference job.

  vessel-segment-beam --input photos/ --output_dir O          (the shipped stare_small)
  vessel-segment-beam --input 'gs://b/photos/*.jpg' --model gs://b/model --output_dir gs://b/out
  vessel-segment-beam --manifest pairs.csv --error_map --output_dir O --direct_num_workers 2
  vessel-segment-beam --input photos/ --output_dir gs://b/out --model gs://b/model \\
      --runner DataflowRunner --project P --region R --temp_location gs://b/tmp \\
      --setup_file ./setup.py        (documented in docs/beam_inference.md, not run here)

Writes what vessel-segment writes, with the same names and pixels: O/<stem>.png per
photograph, optionally its probabilities, overlay and error map, and with ground truth
(--masks_dir or --manifest) O/metrics.csv and O/metrics.json for the whole run; plus
O/errors.jsonl, one line per rejected photograph (file, stage, reason). Photographs
whose outputs exist are skipped (--overwrite redoes them). Flags this tool does not
know go to Beam's PipelineOptions.
Exit status: 0 ok; 1 some photograph was rejected (see O/errors.jsonl); 2 bad flags,
model or output folder.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, imaging, storage
from tiled_vessel_seg.inference import predictor_flags

FLAGS = flags.FLAGS
PROGRAM = "vessel-segment-beam"


def define_flags() -> None:
    flags.DEFINE_multi_string("input", None, "Image files, folders or globs (local or "
                              "gs://), as vessel-segment's --input.")
    flags.DEFINE_string("output_dir", None, "Where <stem>.png masks are written (local or gs://).")
    predictor_flags.define_flags()
    flags.DEFINE_bool("save_probabilities", False, "Also write <stem>_probabilities.png "
                      "(16-bit, probability x 65535) and its 8-bit preview.")
    flags.DEFINE_bool("overlay", False, "Also write <stem>_overlay.png.")
    from tiled_vessel_seg import datasets
    flags.DEFINE_string("masks_dir", None, "Ground-truth masks, paired with the inputs as "
                        "vessel-segment pairs them; writes metrics.csv and metrics.json.")
    flags.DEFINE_enum("layout", None, list(datasets.LAYOUT_NAMES),
                      "How --masks_dir and --fov_dir name their files (as vessel-segment).")
    flags.DEFINE_string("fov_dir", None, "Field-of-view masks (with --masks_dir).")
    flags.DEFINE_string("manifest", None, "CSV with columns image,mask[,fov] (paths relative "
                        "to the CSV): the photographs (unless --input is given) and their "
                        "ground truth.")
    flags.DEFINE_bool("error_map", False, "With ground truth, also write <stem>_errors.png.")
    flags.DEFINE_bool("overwrite", False, "Redo photographs whose outputs exist.")
    flags.DEFINE_integer("max_pixels", imaging.MAX_PIXELS, "Largest photograph segmented, "
                         "in pixels after any enlargement in the graph (as vessel-segment).",
                         lower_bound=1)
    flags.DEFINE_string("runner", "DirectRunner", "Beam runner: DirectRunner or DataflowRunner.")
    flags.DEFINE_integer("direct_num_workers", 1, "DirectRunner worker processes (each "
                         "loads the model once).", lower_bound=1)
    flags.DEFINE_enum("direct_running_mode", "multi_processing",
                      ["in_memory", "multi_threading", "multi_processing"], "DirectRunner mode.")


def pipeline_options(beam_args: Sequence[str]):
    from apache_beam.options.pipeline_options import PipelineOptions
    options = [f"--runner={FLAGS.runner}", *beam_args]
    if FLAGS.runner in ("DirectRunner", "direct"):
        options += [f"--direct_num_workers={FLAGS.direct_num_workers}",
                    f"--direct_running_mode={FLAGS.direct_running_mode}"]
    return PipelineOptions(options)


def find_photos(patterns: list[str]):
    """(PhotoItems, error lines, with_truths) from --input / --manifest / --masks_dir,
    paired as vessel-segment pairs them."""
    from tiled_vessel_seg import datasets
    from tiled_vessel_seg.inference import beam_segment, segment
    truths, problems = None, []
    try:
        if FLAGS.manifest:
            pairs, problems = datasets.read_manifest(FLAGS.manifest)
            truths = {imaging.image_stem(p.image_path): p for p in pairs}
            patterns = patterns or [p.image_path for p in pairs]
        files, unmatched = segment.expand_inputs(patterns)
        if FLAGS.masks_dir:
            truths, problems = datasets.match_truths(files, FLAGS.masks_dir, FLAGS.layout,
                                                     FLAGS.fov_dir)
    except (datasets.InputDirError, storage.StorageError) as e:
        raise cli_app.ToolError(str(e)) from None
    lines = [beam_segment.error_line(p, "inputs", "no image matches") for p in unmatched]
    lines += [beam_segment.error_line(p.path, "inputs", p.reason) for p in problems]
    items = []
    for path in files:
        entry = truths.get(imaging.image_stem(path)) if truths is not None else None
        items.append(beam_segment.PhotoItem(path, getattr(entry, "mask_path", None),
                                            getattr(entry, "fov_path", None)))
    return items, lines, truths is not None


def main(argv: list[str]) -> int:
    from tiled_vessel_seg import model_info, models
    from tiled_vessel_seg.inference import beam_segment
    model_dir = predictor_flags.model_dir(PROGRAM)
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    patterns = list(FLAGS.input or [])
    beam_args = argv[1:]  # the flags this tool does not know: Beam's
    if not patterns and not FLAGS.manifest:
        raise app.UsageError("--input is required: image files, folders or globs")
    if FLAGS.manifest and (FLAGS.masks_dir or FLAGS.fov_dir or FLAGS.layout):
        raise app.UsageError("--manifest names the masks itself: drop --masks_dir, "
                             "--fov_dir and --layout")
    if (FLAGS.fov_dir or FLAGS.layout) and not FLAGS.masks_dir and not FLAGS.manifest:
        raise app.UsageError("--layout and --fov_dir go with --masks_dir")
    if not FLAGS.verbose:  # the workers' INFO lines, relayed by the runner, drown the output
        import logging
        from absl import logging as absl_logging
        logging.getLogger().setLevel(logging.WARNING)
        absl_logging.set_verbosity(absl_logging.WARNING)
    options = predictor_flags.predictor_options()
    try:
        info = model_info.read_model_info(model_dir)
    except (model_info.ModelDirError, FileNotFoundError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    threshold = info.threshold if options["threshold"] is None else options["threshold"]
    items, problems, with_truths = find_photos(patterns)
    from tiled_vessel_seg.inference import mask_hints, segment
    ground_truth = {f"{k}{kind}": path for k, item in enumerate(items)
                    for kind, path in (("m", item.truth_path), ("f", item.fov_path)) if path}
    try:  # inputs are never written: refused before the job starts, as vessel-segment does
        segment.check_outputs_are_not_inputs(
            [i.path for i in items], FLAGS.output_dir, ground_truth,
            save_probabilities=FLAGS.save_probabilities, overlay=FLAGS.overlay,
            error_map=FLAGS.error_map)
    except segment.InputOverwriteError as e:
        raise cli_app.ToolError(str(e)) from None
    if not items:
        print("nothing to segment", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    overlap = next(v for v in (options["min_overlap"], options["overlap"], info.overlap)
                   if v is not None)
    record = {"model_dir": model_dir, "tile_size": info.tile_size, "overlap": overlap,
              "blend": options["blend"], "tta": options["tta"],
              "input_scale": options["input_scale"]}
    job = beam_segment.JobOptions(
        # a shipped name stays a name: each worker resolves it in its own installation
        output_dir=FLAGS.output_dir, model=FLAGS.model or models.DEFAULT_MODEL,
        predictor=options,
        threshold=float(threshold), save_probabilities=FLAGS.save_probabilities,
        overlay=FLAGS.overlay, error_map=FLAGS.error_map, overwrite=FLAGS.overwrite,
        with_truths=with_truths, max_pixels=FLAGS.max_pixels, model_record=record,
        used_in_training=mask_hints.training_splits(info.data_ids))
    print(f"{PROGRAM}: {len(items)} photograph(s), runner {FLAGS.runner}"
          + (f" ({FLAGS.direct_num_workers} worker(s), {FLAGS.direct_running_mode})"
             if FLAGS.runner in ("DirectRunner", "direct") else ""), file=sys.stderr)
    try:
        summary = beam_segment.run_job(items, job, pipeline_options(beam_args), problems)
    except Exception as e:  # noqa: BLE001 - a worker's OutputError arrives wrapped by Beam
        line = next((l for l in str(e).splitlines() if "OutputError: " in l
                     or "StorageError: " in l), None) if not isinstance(
                         e, storage.StorageError) else f"StorageError: {e}"
        if line is None:
            raise
        raise cli_app.ToolError(f"{line.split('Error: ', 1)[1]} (outputs already written "
                                "are complete and kept)") from None
    print(beam_segment.format_summary(summary, FLAGS.output_dir))
    return 1 if summary.errors else 0


def run_in_process(argv: Sequence[str] | None = None) -> int:
    """Runs the tool in this process (tests, notebooks); argv without the program name."""
    args = [PROGRAM, *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, main, args,
                          pass_unknown_flags=True)


def run() -> None:
    """Console entry point `vessel-segment-beam`."""
    cli_app.run(__name__, __doc__, define_flags, main, pass_unknown_flags=True)


if __name__ == "__main__":
    run()

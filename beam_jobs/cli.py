"""`vessel-preprocess`: STARE photos + vessel labels -> split, sharded TFRecords (Apache Beam).

  vessel-preprocess --stare_dir ../shared/data/stare --output_dir /tmp/stare_tiles
  vessel-preprocess --images_dir imgs --masks_dir masks --output_dir out --augment none
  vessel-preprocess --dataset_dir DRIVE --layout drive --output_dir /tmp/drive_tiles
  vessel-preprocess --manifest pairs.csv --output_dir /tmp/my_tiles
  vessel-preprocess --source stare:../shared/data/stare \\
      --source chase_db1:../shared/data/chase_db1 --output_dir /tmp/fundus_tiles
  vessel-preprocess --config configs/stare.config --set preprocess.shards=16 \\
      --stare_dir gs://b/stare --output_dir gs://b/tiles --runner DataflowRunner \\
      --project P --region R --temp_location gs://b/tmp --setup_file ./setup.py

Enlarges, tiles, filters, augments and splits (by image) photos with vessel masks into
sharded TFRecords. Job flags override the [preprocess] section of --config (then --set);
flags this tool does not know go to Beam's PipelineOptions (Dataflow: --project,
--region, --temp_location, --setup_file, ...).
Exit status: 0 ok; 1 some input was rejected (see OUT/errors.jsonl; --allow_errors makes
this 0) or nothing could be written; 2 bad flags, config, or input/output folder.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, run_lock, storage
from tiled_vessel_seg.configs import tool_config
from tiled_vessel_seg.configs.schema import REFERENCE_AUGMENTATIONS

FLAGS = flags.FLAGS
PROGRAM = "vessel-preprocess"
# flag -> [preprocess] key, for the job flags that override the config one to one.
CONFIG_KEYS = ("scale", "tile_size", "tile_stride", "min_vessel_fraction", "split", "seed",
               "shards", "compression", "image_encoding", "jpeg_quality", "mask_encoding",
               "whole_image", "fov_masks")


def parse_augmentations(text: str) -> tuple[str, ...]:
    """'none' -> (), 'reference' -> the reference set, else a comma list of names."""
    value = text.strip().lower()
    if value in ("none", ""):
        return ()
    if value == "reference":
        return tuple(REFERENCE_AUGMENTATIONS)
    names = tuple(t.strip() for t in value.split(",") if t.strip())
    unknown = [n for n in names if n not in REFERENCE_AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"--augment: unknown augmentation(s) {', '.join(unknown)}; choose from 'none', "
            f"'reference' or a comma list of {', '.join(REFERENCE_AUGMENTATIONS)}")
    return names


def define_flags() -> None:
    from tiled_vessel_seg import source_flags
    source_flags.define_flags()
    flags.DEFINE_string("output_dir", None, "Dataset folder to write (local or gs://): {split}/ "
                        "shards, dataset_info.json, errors.jsonl, images.jsonl, statistics.png.")
    job = "(default: the config's [preprocess] value)"
    flags.DEFINE_integer("scale", None, f"Integer enlargement factor, bicubic {job}.")
    flags.DEFINE_integer("tile_size", None, f"Tile side in px of the enlarged image {job}.")
    flags.DEFINE_integer("tile_stride", None, f"Tile stride in px; None = tile_size {job}.")
    flags.DEFINE_float("min_vessel_fraction", None, "Drop tiles whose vessel fraction is <= "
                       f"this; 0 drops empty tiles {job}.")
    flags.DEFINE_string("augment", None, "Training-tile augmentations: 'none', 'reference' or a "
                        f"comma list of {', '.join(REFERENCE_AUGMENTATIONS)} {job}.")
    flags.DEFINE_string("split", None, f"Image shares, e.g. train=0.7,valid=0.15,test=0.15 {job}.")
    flags.DEFINE_list("valid_ids", None, f"Image ids for valid, comma list (overrides --split) {job}.")
    flags.DEFINE_list("test_ids", None, f"Image ids for test, comma list (overrides --split) {job}.")
    flags.DEFINE_integer("seed", None, f"Seed of the split shuffle and augmentations {job}.")
    flags.DEFINE_integer("shards", None, "TFRecord shards per split; 0: one per writing "
                         "worker, the fastest (a fixed count shuffles every record into it) "
                         f"{job}.", lower_bound=0)
    flags.DEFINE_enum("compression", None, ["gzip", "none"], f"Shard compression {job}.")
    flags.DEFINE_enum("image_encoding", None, ["jpeg", "png", "raw"], "Tile pixels in the "
                      "records: jpeg (~5x faster to decode than png), png (lossless) or raw "
                      f"(uncompressed bytes) {job}.")
    flags.DEFINE_integer("jpeg_quality", None, f"JPEG quality 1-100 {job}.")
    flags.DEFINE_enum("mask_encoding", None, ["packed", "png"], "Mask in the records, always "
                      f"lossless: packed (1 bit per pixel) or png {job}.")
    flags.DEFINE_bool("whole_image", None, "Also write each whole image letterboxed and "
                      f"resized to a tile {job}.")
    flags.DEFINE_bool("fov_masks", None, "Also store each tile's field-of-view plane (the "
                      "--fov_dir/layout/manifest FOV file, else computed from the photo), cut "
                      "and augmented with the vessel mask, for [train] loss_mask = \"fov\" "
                      f"{job}.")
    flags.DEFINE_bool("allow_errors", False, "Exit 0 even when some inputs were rejected.")
    flags.DEFINE_bool("overwrite", False, "Replace a dataset already in --output_dir.")
    flags.DEFINE_string("runner", "DirectRunner", "Beam runner, e.g. DirectRunner or "
                        "DataflowRunner.")
    flags.DEFINE_integer("direct_num_workers", os.cpu_count() or 1, "DirectRunner workers.")
    flags.DEFINE_enum("direct_running_mode", "multi_processing",
                      ["in_memory", "multi_threading", "multi_processing"], "DirectRunner mode.")


def preprocess_config():
    """The [preprocess] section: --config, then --set, then the job flags."""
    values = {f"preprocess.{name}": getattr(FLAGS, name) for name in CONFIG_KEYS}
    try:
        values["preprocess.augmentations"] = (None if FLAGS.augment is None
                                              else parse_augmentations(FLAGS.augment))
    except ValueError as e:
        raise cli_app.ToolError(str(e)) from None
    for name in ("valid_ids", "test_ids"):
        value = getattr(FLAGS, name)
        values[f"preprocess.{name}"] = None if value is None else tuple(value)
    return tool_config.load_config(values).preprocess


def pipeline_options(beam_args: Sequence[str]):
    """Beam PipelineOptions of --runner, the DirectRunner flags and the unknown flags."""
    from apache_beam.options.pipeline_options import PipelineOptions
    options = [f"--runner={FLAGS.runner}", *beam_args]
    if FLAGS.runner in ("DirectRunner", "direct"):
        options += [f"--direct_num_workers={FLAGS.direct_num_workers}",
                    f"--direct_running_mode={FLAGS.direct_running_mode}"]
    return PipelineOptions(options)


def _main(argv: list[str]) -> int:
    from tiled_vessel_seg import datasets
    from tiled_vessel_seg.beam_jobs import pipeline
    beam_args = argv[1:]
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    from tiled_vessel_seg.beam_jobs import split
    from tiled_vessel_seg import source_flags, sources
    inputs_given = source_flags.sources_from_flags()
    if not inputs_given:
        raise app.UsageError("give the inputs: --source NAME:DIR (repeatable), --stare_dir, "
                             "--dataset_dir with --layout, --images_dir with --masks_dir, "
                             "or --manifest")
    config = preprocess_config()
    try:
        ignored: list = []
        pairs, problems = sources.find_pairs(inputs_given, ignored)
    except datasets.InputDirError as e:
        raise cli_app.ToolError(str(e)) from None
    if ignored:
        from tiled_vessel_seg import datasets
        print(f"{PROGRAM}: {datasets.ignored_note(ignored)}", file=sys.stderr)
    parameters = ({"stare_dir": FLAGS.stare_dir} if FLAGS.stare_dir and not FLAGS.fov_dir
                  else sources.parameters(inputs_given))
    config, note = split.with_input_splits(config, pairs)
    if note:
        print(f"{PROGRAM}: {note}", file=sys.stderr)
    if not pairs:
        try:
            with run_lock.owned(FLAGS.output_dir, PROGRAM):
                pipeline.prepare_output_dir(FLAGS.output_dir, FLAGS.overwrite)
                written = pipeline.write_error_lines(FLAGS.output_dir, problems)
        except (pipeline.OutputExistsError, storage.StorageError) as e:
            raise cli_app.ToolError(str(e)) from None
        kept = "" if written else f" (nothing to write: the dataset in {FLAGS.output_dir} was kept)"
        print(f"{PROGRAM}: no image/mask pairs found{kept}; {len(problems)} problem(s):",
              file=sys.stderr)
        for problem in problems:
            print(f"  [{problem.stage}] {problem.path}: {problem.reason}", file=sys.stderr)
        return 1
    print(f"{PROGRAM}: {len(pairs)} image pairs, {len(problems)} rejected input(s); "
          f"runner {FLAGS.runner}", file=sys.stderr)
    try:
        summary = pipeline.run_job(config, pairs, problems, FLAGS.output_dir,
                                   pipeline_options(beam_args), parameters,
                                   overwrite=FLAGS.overwrite)
    except (pipeline.OutputExistsError, storage.StorageError, ValueError) as e:
        # StorageError: the output location cannot be written (read-only, full disk)
        raise cli_app.ToolError(str(e)) from None
    print(pipeline.format_summary(summary))
    if summary.info is None:
        print("error: no tiles were written; see errors above", file=sys.stderr)
        return 1
    if summary.errors and not FLAGS.allow_errors:
        print(f"{PROGRAM}: {len(summary.errors)} input(s) rejected; exit status 1 "
              f"(pass --allow_errors to accept)", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the tool in this process (tests, notebooks); argv without the program name."""
    args = [PROGRAM, *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, _main, args,
                          pass_unknown_flags=True)


def run() -> None:
    """Console entry point `vessel-preprocess`."""
    cli_app.run(__name__, __doc__, define_flags, _main, pass_unknown_flags=True)


if __name__ == "__main__":
    run()

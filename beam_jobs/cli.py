"""`vessel-preprocess`: STARE photos + vessel labels -> split, sharded TFRecords (Apache Beam).

  vessel-preprocess --stare_dir ../shared/data/stare --output_dir /tmp/stare_tiles
  vessel-preprocess --images_dir imgs --masks_dir masks --output_dir out --augment none \\
      --set preprocess.scale=1 --set preprocess.tile_size=256
  vessel-preprocess --dataset_dir DRIVE --layout drive --output_dir /tmp/drive_tiles
  vessel-preprocess --manifest pairs.csv --output_dir /tmp/my_tiles
  vessel-preprocess --source stare:../shared/data/stare \\
      --source chase_db1:../shared/data/chase_db1 --output_dir /tmp/fundus_tiles
  vessel-preprocess --config configs/stare.config --set preprocess.shards=16 \\
      --stare_dir gs://b/stare --output_dir gs://b/tiles --runner DataflowRunner \\
      --project P --region R --temp_location gs://b/tmp --setup_file ./setup.py

Enlarges, tiles, filters, augments and splits (by image) photos with vessel masks into
sharded TFRecords, as the [preprocess] section of --config says (then --set
preprocess.KEY=VALUE: scale, tile_size, shards, image_encoding, ...; --augment,
--valid_ids and --test_ids on top); flags this tool does not know go to Beam's
PipelineOptions (Dataflow: --project, --region, --temp_location, --setup_file, ...).
Exit status: 0 ok; 1 some input was rejected (see OUT/errors.jsonl; --allow_errors makes
this 0) or nothing could be written; 2 bad flags, config, or input/output folder.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, datasets, runner_flags, source_flags, storage
from tiled_vessel_seg.configs import schema, tool_config
from tiled_vessel_seg.configs.schema import REFERENCE_AUGMENTATIONS
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # Apache Beam: not for --help
    from tiled_vessel_seg.beam_jobs import pipeline

FLAGS = flags.FLAGS
PROGRAM = "vessel-preprocess"
# [preprocess] keys that were flags of their own up to 0.2.0: now `--set preprocess.KEY=VALUE`.
REMOVED_FLAGS = ("scale", "tile_size", "tile_stride", "min_vessel_fraction", "split", "seed",
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
    source_flags.define_flags()
    flags.DEFINE_string("output_dir", None, "Dataset folder to write (local or gs://): {split}/ "
                        "shards, dataset_info.json, errors.jsonl, images.jsonl, statistics.png.")
    job = "(default: the config's [preprocess] value)"
    flags.DEFINE_string("augment", None, "Training-tile augmentations: 'none', 'reference' or a "
                        f"comma list of {', '.join(REFERENCE_AUGMENTATIONS)} {job}.")
    flags.DEFINE_list("valid_ids", None, f"Image ids for valid, comma list (overrides "
                      f"[preprocess] split) {job}.")
    flags.DEFINE_list("test_ids", None, f"Image ids for test, comma list (overrides "
                      f"[preprocess] split) {job}.")
    flags.DEFINE_bool("allow_errors", False, "Exit 0 even when some inputs were rejected.")
    flags.DEFINE_bool("overwrite", False, "Replace a dataset already in --output_dir.")
    runner_flags.define_flags(direct_num_workers=os.cpu_count() or 1)


def refuse_removed_flags(beam_args: Sequence[str]) -> None:
    """A removed job flag would reach Beam as an unknown option and be ignored: refuse it,
    naming its --set spelling (raises app.UsageError)."""
    for i, arg in enumerate(beam_args):
        name, _, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        key = next((name[len(p):] for p in ("no-", "no") if name.startswith(p)
                    and name[len(p):] in REMOVED_FLAGS), name)
        if key not in REMOVED_FLAGS:
            continue
        if key != name:  # --nowhole_image, --no-whole_image
            value = "False"
        elif not value:
            value = ("True" if key in ("whole_image", "fov_masks")
                     else beam_args[i + 1] if i + 1 < len(beam_args) else "VALUE")
        raise app.UsageError(f"--{name} is no longer a flag: use --set "
                             f"preprocess.{key}={value}")


def preprocess_config() -> schema.PreprocessConfig:
    """The [preprocess] section: --config, then --set, then --augment, --valid_ids and
    --test_ids."""
    values: dict = {}
    try:
        values["preprocess.augmentations"] = (None if FLAGS.augment is None
                                              else parse_augmentations(FLAGS.augment))
    except ValueError as e:
        raise cli_app.ToolError(str(e)) from None
    for name in ("valid_ids", "test_ids"):
        value = getattr(FLAGS, name)
        values[f"preprocess.{name}"] = None if value is None else tuple(value)
    return tool_config.load_config(values).preprocess


def _main(argv: list[str]) -> int:
    beam_args = argv[1:]
    refuse_removed_flags(beam_args)
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    inputs = source_flags.sources_from_flags()
    if not inputs:
        raise app.UsageError("give the inputs: --source NAME:DIR (repeatable), --stare_dir, "
                             "--dataset_dir with --layout, --images_dir with --masks_dir, "
                             "or --manifest")
    config = preprocess_config()
    parameters = ({"stare_dir": FLAGS.stare_dir} if FLAGS.stare_dir and not FLAGS.fov_dir
                  else None)
    try:
        summary = pipeline.preprocess(
            config, inputs, FLAGS.output_dir, runner_flags.pipeline_options(beam_args),
            parameters=parameters, overwrite=FLAGS.overwrite,
            say=lambda text: print(f"{PROGRAM}: {text}", file=sys.stderr))
    except (datasets.InputDirError, pipeline.OutputExistsError, storage.StorageError,
            ValueError) as e:
        # StorageError: the output location cannot be written (read-only, full disk)
        raise cli_app.ToolError(str(e)) from None
    if not summary.images_found:
        kept = ("" if summary.errors_file else
                f" (nothing to write: the dataset in {FLAGS.output_dir} was kept)")
        print(f"{PROGRAM}: no image/mask pairs found{kept}; {len(summary.errors)} problem(s):",
              file=sys.stderr)
        for error in summary.errors:
            print(f"  [{error['stage']}] {error['path']}: {error['reason']}", file=sys.stderr)
        return 1
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

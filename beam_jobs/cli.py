"""`vessel-preprocess`: STARE photos + vessel labels -> split, sharded TFRecords (Apache Beam).

Examples:
  vessel-preprocess --stare_dir ../shared/data/stare --output_dir /tmp/stare_tiles
  vessel-preprocess --images_dir imgs --masks_dir masks --output_dir out --augment none
  vessel-preprocess --stare_dir gs://b/stare --output_dir gs://b/tiles --runner DataflowRunner \
      --project P --region R --temp_location gs://b/tmp --setup_file ./setup.py

Flags override the [preprocess] section of --config; unknown flags go to Beam's
PipelineOptions (Dataflow: --project, --region, --temp_location, --setup_file, ...).
Exit status: 0 ok; 1 some input was rejected (see OUT/errors.jsonl; --allow_errors makes
this 0) or nothing could be written; 2 bad flags, config, or input/output folder.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from tiled_vessel_seg.configs.schema import REFERENCE_AUGMENTATIONS


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def parse_augmentations(text: str) -> tuple[str, ...]:
    """'none' -> (), 'reference' -> the reference set, else a comma list of names."""
    value = text.strip().lower()
    if value in ("none", ""):
        return ()
    if value == "reference":
        return tuple(REFERENCE_AUGMENTATIONS)
    names = _comma_list(value)
    unknown = [n for n in names if n not in REFERENCE_AUGMENTATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown augmentation(s) {', '.join(unknown)}; choose from 'none', 'reference' "
            f"or a comma list of {', '.join(REFERENCE_AUGMENTATIONS)}")
    return names


class _HelpFormatter(argparse.HelpFormatter):
    """Shows '(default: ...)' only for flags that have a real default of their own."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vessel-preprocess",
        description="Enlarge, tile, filter, augment and split (by image) STARE-style photos "
                    "with vessel masks into sharded TFRecords, on Apache Beam.",
        epilog="Unknown flags are passed to Beam PipelineOptions (e.g. Dataflow's --project "
               "--region --temp_location --setup_file ./setup.py). Exit status: 0 ok, 1 inputs "
               "rejected (see OUT/errors.jsonl) unless --allow_errors, 2 bad flags or folders.",
        formatter_class=_HelpFormatter)
    src = p.add_argument_group("inputs (one of --stare_dir or --images_dir + --masks_dir)")
    src.add_argument("--stare_dir", help="folder with stare-images/ and labels-ah/ (local or gs://)")
    src.add_argument("--images_dir", help="folder of photographs, paired with masks by file stem")
    src.add_argument("--masks_dir", help="folder of vessel masks (grey > 127 is vessel)")
    p.add_argument("--output_dir", required=True,
                   help="dataset folder to write (local or gs://): {split}/ shards, "
                        "dataset_info.json, errors.jsonl, images.jsonl, statistics.png")
    p.add_argument("--config", help="INI config whose [preprocess] section gives defaults "
                                    "(default: built-in defaults; configs/stare.config is the "
                                    "reference experiment)")
    job = p.add_argument_group("job parameters (default: the config's value)")
    job.add_argument("--scale", type=int, help="integer enlargement factor (bicubic)")
    job.add_argument("--tile_size", type=int, help="tile side in px of the enlarged image")
    job.add_argument("--tile_stride", type=int, help="tile stride in px (default: tile_size)")
    job.add_argument("--min_vessel_fraction", type=float,
                     help="drop tiles whose vessel fraction is <= this (0: drop empty tiles)")
    job.add_argument("--augment", type=parse_augmentations, metavar="LIST",
                     help="training-tile augmentations: 'none', 'reference' or a comma list of "
                          + ", ".join(REFERENCE_AUGMENTATIONS))
    job.add_argument("--split", help="image shares, e.g. train=0.7,valid=0.15,test=0.15")
    job.add_argument("--valid_ids", type=_comma_list, metavar="IDS",
                     help="comma list of image ids for valid (overrides --split)")
    job.add_argument("--test_ids", type=_comma_list, metavar="IDS",
                     help="comma list of image ids for test (overrides --split)")
    job.add_argument("--seed", type=int, help="seed of the split shuffle and augmentations")
    job.add_argument("--shards", type=int, help="TFRecord shards per split")
    job.add_argument("--compression", choices=("gzip", "none"), help="shard compression")
    job.add_argument("--image_encoding", choices=("jpeg", "png", "raw"),
                     help="tile pixels in the records: jpeg (default; ~5x faster to decode "
                          "than png), png (lossless) or raw (uncompressed bytes)")
    job.add_argument("--jpeg_quality", type=int, help="JPEG quality 1-100 (default 95)")
    job.add_argument("--mask_encoding", choices=("packed", "png"),
                     help="mask in the records, always lossless: packed (1 bit per pixel, "
                          "default) or png")
    job.add_argument("--whole_image", action=argparse.BooleanOptionalAction, default=None,
                     help="also write each whole image letterboxed and resized to a tile")
    run = p.add_argument_group("running")
    run.add_argument("--allow_errors", action="store_true",
                     help="exit 0 even when some inputs were rejected")
    run.add_argument("--overwrite", action="store_true",
                     help="replace a dataset already in --output_dir")
    run.add_argument("--runner", default="DirectRunner",
                     help="Beam runner, e.g. DirectRunner or DataflowRunner")
    run.add_argument("--direct_num_workers", type=int, default=os.cpu_count() or 1,
                     help="DirectRunner workers")
    run.add_argument("--direct_running_mode", default="multi_processing",
                     choices=("in_memory", "multi_threading", "multi_processing"),
                     help="DirectRunner mode")
    return p


def config_from_args(args: argparse.Namespace):
    """The [preprocess] config: --config (or defaults) with flag values applied."""
    from tiled_vessel_seg import configs
    config = configs.load_config(args.config)
    config = configs.with_overrides(config, {
        "preprocess.scale": args.scale,
        "preprocess.tile_size": args.tile_size,
        "preprocess.tile_stride": args.tile_stride,
        "preprocess.min_vessel_fraction": args.min_vessel_fraction,
        "preprocess.augmentations": args.augment,
        "preprocess.split": args.split,
        "preprocess.valid_ids": args.valid_ids,
        "preprocess.test_ids": args.test_ids,
        "preprocess.seed": args.seed,
        "preprocess.shards": args.shards,
        "preprocess.compression": args.compression,
        "preprocess.image_encoding": args.image_encoding,
        "preprocess.jpeg_quality": args.jpeg_quality,
        "preprocess.mask_encoding": args.mask_encoding,
        "preprocess.whole_image": args.whole_image,
    })
    return config.preprocess


def pipeline_options(args: argparse.Namespace, beam_args: Sequence[str]):
    from apache_beam.options.pipeline_options import PipelineOptions
    flags = [f"--runner={args.runner}", *beam_args]
    if args.runner in ("DirectRunner", "direct"):
        flags += [f"--direct_num_workers={args.direct_num_workers}",
                  f"--direct_running_mode={args.direct_running_mode}"]
    return PipelineOptions(flags)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if bool(args.stare_dir) == bool(args.images_dir or args.masks_dir):
        parser.error("give either --stare_dir or both --images_dir and --masks_dir")
    if args.images_dir and not args.masks_dir or args.masks_dir and not args.images_dir:
        parser.error("--images_dir and --masks_dir go together")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # also inherited by Beam workers
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from tiled_vessel_seg import configs
    from tiled_vessel_seg.beam_jobs import inputs, pipeline

    def fail(message: str, code: int = 2) -> int:
        print(f"vessel-preprocess: error: {message}", file=sys.stderr)
        return code

    try:
        config = config_from_args(args)
    except (configs.ConfigError, ValueError) as e:
        return fail(str(e))
    try:
        if args.stare_dir:
            pairs, problems = inputs.discover_stare(args.stare_dir)
            parameters = {"stare_dir": args.stare_dir}
        else:
            pairs, problems = inputs.pair_folders(args.images_dir, args.masks_dir)
            parameters = {"images_dir": args.images_dir, "masks_dir": args.masks_dir}
    except inputs.InputDirError as e:
        return fail(str(e))
    if not pairs:
        try:
            pipeline.prepare_output_dir(args.output_dir, args.overwrite)
            pipeline.write_error_lines(args.output_dir, problems)
        except pipeline.OutputExistsError as e:
            return fail(str(e))
        print(f"vessel-preprocess: no image/mask pairs found; {len(problems)} problem(s):",
              file=sys.stderr)
        for problem in problems:
            print(f"  [{problem.stage}] {problem.path}: {problem.reason}", file=sys.stderr)
        return 1
    print(f"vessel-preprocess: {len(pairs)} image pairs, {len(problems)} rejected input(s); "
          f"runner {args.runner}", file=sys.stderr)
    try:
        summary = pipeline.run_job(config, pairs, problems, args.output_dir,
                                   pipeline_options(args, beam_args), parameters,
                                   overwrite=args.overwrite)
    except (pipeline.OutputExistsError, ValueError) as e:
        return fail(str(e))
    print(pipeline.format_summary(summary))
    if summary.info is None:
        return fail("no tiles were written; see errors above", 1)
    if summary.errors and not args.allow_errors:
        print(f"vessel-preprocess: {len(summary.errors)} input(s) rejected; exit status 1 "
              f"(pass --allow_errors to accept)", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()

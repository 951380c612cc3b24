"""`vessel-run`: the whole pipeline as one command, with one config.

    vessel-run --config configs/demo.config --workdir runs/demo
    vessel-run --config configs/stare_cpu.config --workdir runs/stare --stare_dir ../shared/data/stare
    vessel-run --config configs/demo.config --workdir runs/demo --set train.epochs=2 --stages train
    vessel-run --config C --workdir runs/drive --dataset_dir DRIVE --layout drive
    vessel-run --config C --workdir runs/mine --manifest pairs.csv
    vessel-run --config C --workdir runs/both --source stare:../shared/data/stare \\
        --source chase_db1:../shared/data/chase_db1

Stages, in order (`--stages` picks some):
  synth       W/stare       synthetic STARE-format images ([synth]); skipped with --stare_dir,
                            --dataset_dir or --manifest
  preprocess  W/data        Beam job: tiles, augmentation, image-level split, TFRecords
  train       W/model       the U-Net, MirroredStrategy, best model + model_info.json
  evaluate    W/model/evaluation.csv   tile-level metrics of the test split
  segment     W/segment     the test split's full photos at native resolution (through the
                            in-graph enlargement when the model's scale > 1), with error
                            maps, metrics.csv and metrics.json against their masks (FOV
                            masks from the dataset where it ships them)
  report      W/report.md, W/montage.png, W/report_images/, W/training_curves.png

A stage whose complete outputs exist is skipped (so a rerun after an interruption goes on
where it stopped; training itself resumes from its last finished epoch); `--overwrite`
redoes the selected stages. Each stage ends with one line saying what it did and where.

Exit status: 0 every selected stage done; 1 done, but preprocessing rejected inputs (each
named in a [preprocess] line, all in W/data/errors.jsonl; --allow_errors: 0); 2 bad flags
or config, or a stage failed (one error line).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional, Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, datasets, model_info, names, source_flags, storage
from tiled_vessel_seg.configs import tool_config
from tiled_vessel_seg.lazy_imports import lazy_imports
from tiled_vessel_seg.pipeline import stages
from tiled_vessel_seg.trainer import cli_flags

with lazy_imports():  # not imported for --help
    from tiled_vessel_seg.tfrecords import dataset_info
    from tiled_vessel_seg.trainer import strategy

FLAGS = flags.FLAGS


def keras_verbosity(quiet: bool, stream=None) -> int:
    """Keras' fit verbosity for vessel-run: none with --quiet, a progress bar within
    each epoch on a terminal (1), one line per epoch otherwise (2)."""
    if quiet:
        return 0
    stream = sys.stdout if stream is None else stream
    return 1 if getattr(stream, "isatty", lambda: False)() else 2


def show_training_log(quiet: bool) -> None:
    """The trainer's own lines (strategy, batch, precision, parameter count) as
    "[train] ..." on stderr, unless --quiet (vessel-train prints them as "vessel-train: ")."""
    logger = logging.getLogger("vessel-train")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[train] %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Folder for every stage's outputs.")
    source_flags.define_flags(help_overrides={
        "stare_dir": "Without any input flag the synth stage makes synthetic STARE photos.",
        "layout": "A dataset's own split (DRIVE's training/test) is kept unless "
                  "[preprocess] names valid_ids/test_ids."})
    flags.DEFINE_list("stages", list(stages.STAGES), "Comma-separated subset of the stages.")
    cli_flags.define_init_model()
    flags.DEFINE_bool("overwrite", False, "Redo the selected stages even when their outputs "
                      "exist.")
    flags.DEFINE_integer("num_cpu_replicas", 0, "Mirror training over N logical CPU devices "
                         "(no GPU needed).")
    flags.DEFINE_enum("precision", "auto", list(names.PRECISIONS),
                      "auto: mixed_float16 on GPU, float32 on CPU.")
    flags.DEFINE_integer("direct_num_workers", 1, "Beam DirectRunner workers for the "
                         "preprocess stage.", lower_bound=1)
    flags.DEFINE_bool("deterministic", False, "Seeded, ordered input and op determinism in "
                      "training (repeatable bit for bit); same as --set train.deterministic=True.")
    flags.DEFINE_bool("quiet", False, "No per-epoch or per-image lines.")
    flags.DEFINE_bool("allow_errors", False, "Exit 0 although preprocessing rejected inputs "
                      "(without it: exit status 1, as vessel-preprocess).")


def inputs_from_flags() -> tuple[Optional[str], object]:
    """(stare_dir, source) of stages.run_pipeline from the input flags: a plain
    --stare_dir stays a STARE folder, anything else is one datasets.Source or a list."""
    given = source_flags.sources_from_flags()
    if len(given) == 1 and given[0] == datasets.Source(root=FLAGS.stare_dir, layout="stare"):
        return FLAGS.stare_dir, None
    return None, (given[0] if len(given) == 1 else given) if given else None


def finish(paths: stages.RunPaths, selected: Sequence[str], allow_errors: bool,
           start: float) -> int:
    """Prints the held-out Dice and the time; returns the exit status (1: preprocessing
    rejected inputs, unless allow_errors)."""
    dice = (stages.mean_held_out_dice(paths.metrics_csv) if storage.exists(paths.metrics_csv)
            else None)
    if dice is not None:
        print(f"vessel-run: held-out Dice (mean over the test images) {dice:.4f}"
              + stages.pooled_held_out_f1(paths.segment_dir) + f"; report: {paths.report}")
    print(f"vessel-run: done in {time.time() - start:.0f} s")
    rejected = stages.rejected_inputs(paths) if "preprocess" in selected else []
    if rejected and not allow_errors:  # the exit-status table: inputs left out -> 1
        print(f"vessel-run: {len(rejected)} input(s) rejected by preprocessing and left out "
              f"of the dataset (named above; all in "
              f"{storage.join(paths.data_dir, dataset_info.ERRORS_FILE)}); exit status 1 "
              f"(pass --allow_errors to accept)", file=sys.stderr)
        return 1
    return 0


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("config", "workdir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if FLAGS.num_cpu_replicas > 1:  # split the CPU before anything initialises TF devices
        strategy.configure_cpu_replicas(FLAGS.num_cpu_replicas)
    options = stages.RunOptions(
        overwrite=FLAGS.overwrite, num_cpu_replicas=FLAGS.num_cpu_replicas,
        precision=FLAGS.precision, verbose=keras_verbosity(FLAGS.quiet),
        direct_num_workers=FLAGS.direct_num_workers)
    show_training_log(FLAGS.quiet)
    start = time.time()
    config = tool_config.load_config({"train.deterministic": FLAGS.deterministic or None,
                                      "train.init_model": cli_flags.init_model_value()})
    stare_dir, source = inputs_from_flags()
    try:
        paths = stages.run_pipeline(config, FLAGS.workdir, stare_dir, FLAGS.stages, options,
                                    source=source)
    except (stages.StageError, dataset_info.DatasetError, model_info.ModelDirError,
            datasets.InputDirError, FileNotFoundError, FileExistsError) as e:
        raise cli_app.ToolError(str(e)) from None
    return finish(paths, FLAGS.stages, FLAGS.allow_errors, start)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs vessel-run in this process (tests, notebooks); argv without the program name."""
    args = ["vessel-run", *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, _main, args)


def run() -> None:
    """Console entry point `vessel-run`."""
    cli_app.run(__name__, __doc__, define_flags, _main)


if __name__ == "__main__":
    run()

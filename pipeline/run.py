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

import dataclasses
import json
import logging
import sys
import time
from typing import Callable, Optional, Sequence

from absl import app, flags

from tiled_vessel_seg import (cli_app, datasets, imaging, model_info, names, source_flags,
                              sources, storage)
from tiled_vessel_seg.configs import schema, tool_config
from tiled_vessel_seg.lazy_imports import lazy_imports
from tiled_vessel_seg.trainer import cli_flags

with lazy_imports():  # the stages: not imported for --help
    from apache_beam.options import pipeline_options
    from tiled_vessel_seg.beam_jobs import pipeline, split
    from tiled_vessel_seg.inference import metrics_json, segment
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.pipeline import report, training_callbacks
    from tiled_vessel_seg.synthetic import stare_layout
    from tiled_vessel_seg.tfrecords import dataset_info
    from tiled_vessel_seg.trainer import callbacks, evaluate, strategy, train

FLAGS = flags.FLAGS

STAGES = ("synth", "preprocess", "train", "evaluate", "segment", "report")


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where each stage writes, under the work dir W."""
    workdir: str
    stare_dir: str  # the source photos + labels (given, or W/stare when synthesised)
    # a datasets.Source or a list of them (several datasets: sources.py); None: stare_dir
    # in STARE layout
    source: Optional[object] = None

    @property
    def pairs_source(self):
        """Where the labelled photos are: a datasets.Source, or a list of them."""
        return self.source or datasets.Source(root=self.stare_dir, layout="stare")

    def describe_source(self) -> str:
        """'runs/demo/stare (stare layout)', 'manifest pairs.csv', ... (joined by ' + ')."""
        return sources.describe(self.pairs_source)

    @property
    def data_dir(self) -> str:
        return storage.join(self.workdir, "data")

    @property
    def model_dir(self) -> str:
        return storage.join(self.workdir, "model")

    @property
    def segment_dir(self) -> str:
        return storage.join(self.workdir, "segment")

    @property
    def metrics_csv(self) -> str:
        return storage.join(self.segment_dir, "metrics.csv")

    @property
    def report(self) -> str:
        return storage.join(self.workdir, "report.md")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    overwrite: bool = False
    num_cpu_replicas: int = 0
    precision: str = "auto"
    verbose: int = 2
    direct_num_workers: int = 1


class StageError(RuntimeError):
    """A stage that could not produce its outputs; the message says which and why."""


def _say(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", flush=True)


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


# ---------------------------------------------------------------------------- stages

def stage_synth(config, paths: RunPaths, options: RunOptions) -> str:
    synth = config.synth
    ids = [stare_layout.stare_id(n) for n in range(1, synth.num_images + 1)]
    expected = [p for i in ids for p in (stare_layout.image_path(paths.stare_dir, i),
                                         stare_layout.label_path(paths.stare_dir, i))]
    if not options.overwrite and all(storage.exists(p) for p in expected):
        return f"skipped: {synth.num_images} synthetic images already in {paths.stare_dir}"
    try:
        stare_layout.write_synthetic_stare(paths.stare_dir, synth.num_images,
                                           width=synth.width, height=synth.height,
                                           seed=synth.seed, overwrite=True)
    except schema.TooLargeError as e:
        raise StageError(f"[synth] {e}") from None
    return (f"wrote {synth.num_images} synthetic {synth.width}x{synth.height} images "
            f"(seed {synth.seed}) to {paths.stare_dir}")


def stage_preprocess(config, paths: RunPaths, options: RunOptions) -> str:
    if not options.overwrite and storage.exists(storage.join(paths.data_dir,
                                                             dataset_info.INFO_FILE)):
        return f"skipped: dataset already in {paths.data_dir}"
    ignored: list = []
    pairs, problems = sources.find_pairs(paths.pairs_source, ignored)
    if ignored:
        _say("preprocess", datasets.ignored_note(ignored))
    if not pairs:
        raise StageError(f"no image/label pairs in {paths.describe_source()} "
                         f"({len(problems)} rejected input(s))")
    preprocess, note = split.with_input_splits(config.preprocess, pairs)
    if note:
        _say("preprocess", note)
    beam_options = pipeline_options.PipelineOptions([
        "--runner=DirectRunner", f"--direct_num_workers={options.direct_num_workers}",
        "--direct_running_mode=" + ("multi_processing" if options.direct_num_workers > 1
                                    else "in_memory")])
    summary = pipeline.run_job(preprocess, pairs, problems, paths.data_dir, beam_options,
                               sources.parameters(paths.pairs_source), overwrite=True)
    if summary.info is None:
        raise StageError(f"no tiles written to {paths.data_dir}; see "
                         f"{storage.join(paths.data_dir, dataset_info.ERRORS_FILE)}")
    splits = ", ".join(f"{name} {len(s.image_ids)} images/{s.records} records"
                       for name, s in sorted(summary.info.splits.items()))
    rejected = f"; {len(summary.errors)} input(s) rejected" if summary.errors else ""
    for error in summary.errors[:MAX_NAMED]:  # each rejected input named where it happened
        _say("preprocess", f"rejected {imaging.one_line(error.get('path'))}: "
                           f"{imaging.one_line(error.get('reason'))}")
    if len(summary.errors) > MAX_NAMED:
        _say("preprocess", f"... and {len(summary.errors) - MAX_NAMED} more in "
                           f"{storage.join(paths.data_dir, dataset_info.ERRORS_FILE)}")
    for warning in summary.warnings:  # e.g. a requested split left empty
        _say("preprocess", f"WARNING: {warning}")
    return f"wrote {splits} to {paths.data_dir}{rejected}"


MAX_NAMED = 10  # rejected inputs named one per line; the rest are in errors.jsonl


def rejected_inputs(paths: RunPaths) -> list[dict]:
    """The lines of W/data/errors.jsonl: inputs the preprocess stage left out."""
    return [json.loads(line) for line in pipeline.read_lines(
        storage.join(paths.data_dir, dataset_info.ERRORS_FILE))]


def stage_train(config, paths: RunPaths, options: RunOptions) -> str:
    if _training_finished(paths.model_dir) and not options.overwrite:
        return f"skipped: trained model already in {paths.model_dir}"
    if options.overwrite and storage.isdir(paths.model_dir):
        storage.remove_tree(paths.model_dir)
    start = time.time()
    train.train(config, paths.data_dir, paths.model_dir,
                num_cpu_replicas=options.num_cpu_replicas, precision=options.precision,
                verbose=options.verbose, callbacks=training_callbacks.for_training(
                    config, paths.data_dir, paths.model_dir, source=paths.pairs_source))
    history = callbacks.read_history(storage.join(paths.model_dir, callbacks.HISTORY_FILE))
    epochs = len(history.get("epoch", []))
    best = min(history.get("val_loss", [float("nan")]))
    return (f"trained {epochs} epochs in {time.time() - start:.0f} s (best val_loss "
            f"{best:.4f}) -> {paths.model_dir}")


def _training_finished(model_dir: str) -> bool:
    """True when the model dir holds a best model and no unfinished run to resume."""
    return (storage.exists(storage.join(model_dir, model_info.MODEL_FILE))
            and storage.exists(storage.join(model_dir, model_info.INFO_FILE))
            and not storage.exists(storage.join(model_dir, train.BACKUP_DIR)))


def stage_evaluate(config, paths: RunPaths, options: RunOptions) -> str:
    out = storage.join(paths.model_dir, evaluate.EVALUATION_FILE)
    if not options.overwrite and storage.exists(out):
        return f"skipped: {out} exists"
    if "test" not in dataset_info.read_dataset_info(paths.data_dir).splits:
        return "skipped: the dataset has no test split"
    results = evaluate.evaluate(paths.model_dir, paths.data_dir, "test",
                                verbose=min(options.verbose, 2))
    return (f"test tiles: loss {results['loss']:.4f}, dice_coef {results['dice_coef']:.4f} "
            f"-> {out}")


def held_out_pairs(paths: RunPaths):
    """The test split's datasets.ImagePair (photo, label, FOV and second-observer masks
    where the dataset has them), sorted by id."""
    info = dataset_info.read_dataset_info(paths.data_dir)
    test_ids = set(info.splits["test"].image_ids) if "test" in info.splits else set()
    pairs, _ = sources.find_pairs(paths.pairs_source)
    return [p for p in pairs if p.image_id in test_ids]


def stage_segment(config, paths: RunPaths, options: RunOptions) -> str:
    if not options.overwrite and storage.exists(paths.metrics_csv):
        return f"skipped: {paths.metrics_csv} exists"
    pairs = held_out_pairs(paths)
    if not pairs:
        raise StageError(f"the dataset in {paths.data_dir} has no test images to segment")
    tiled = config.tiledinfer
    # threshold None: model_info.json's, which is [tiledinfer] threshold unless training
    # chose one on the validation data ([train] select_threshold).
    predictor = predictor_lib.load_predictor(
        paths.model_dir, overlap=tiled.overlap, batch_size=tiled.batch_size,
        blend=tiled.blend, tta=tiled.tta, threshold=None, input_scale=tiled.input_scale)
    model = {"model_dir": paths.model_dir, "overlap": predictor.overlap,
             "blend": predictor.blend, "tta": predictor.tta,
             "input_scale": tiled.input_scale}
    summary = segment.segment_files(
        predictor, [p.image_path for p in pairs], paths.segment_dir, overlay=True,
        save_probabilities=True, truths={imaging.image_stem(p.image_path): p for p in pairs},
        overwrite=True, progress=options.verbose > 0, error_map=True, model=model)
    if summary.failed:
        raise StageError("could not segment " + "; ".join(f"{p}: {r}" for p, r in summary.failed))
    empty = (f"; {len(summary.empty)} nearly empty mask(s) ({summary.empty[0][1]}; see the "
             "report)" if summary.empty else "")
    return (f"segmented {len(summary.written)} held-out images in {summary.seconds:.1f} s "
            f"-> {paths.segment_dir}{empty}")


def stage_report(config, paths: RunPaths, options: RunOptions) -> str:
    if not options.overwrite and storage.exists(paths.report):
        return f"skipped: {paths.report} exists"
    report.write_report(paths.workdir, paths.describe_source(), paths.data_dir,
                        paths.model_dir, paths.segment_dir, held_out_pairs(paths))
    return f"wrote {paths.report} and {storage.join(paths.workdir, report.MONTAGE_FILE)}"


STAGE_FUNCTIONS: dict[str, Callable] = {
    "synth": stage_synth, "preprocess": stage_preprocess, "train": stage_train,
    "evaluate": stage_evaluate, "segment": stage_segment, "report": stage_report,
}


def run_pipeline(config, workdir: str, stare_dir: Optional[str] = None,
                 stages: Sequence[str] = STAGES, options: RunOptions = RunOptions(),
                 source=None) -> RunPaths:
    """Runs `stages` in pipeline order; returns the paths it used.

    source: a datasets.Source (a dataset folder in any layout, or a manifest), or a list
      of them (several datasets in one run, tiled_vessel_seg/sources.py), instead
      of stare_dir; with neither, the synth stage makes STARE-format photos in W/stare.
    Raises StageError (or the stage's own error) naming the stage that failed.
    """
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise StageError(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    if stare_dir is not None and not storage.isdir(stare_dir):
        raise StageError(f"--stare_dir {stare_dir}: not a folder")
    if source is not None:
        try:
            sources.check(source)
        except ValueError as e:
            raise StageError(str(e)) from None
        for one in sources.as_list(source):
            if one.root and not datasets.is_dir(one.root):
                raise StageError(f"--dataset_dir {one.root}: not a folder")
    paths = RunPaths(workdir=workdir, stare_dir=stare_dir or storage.join(workdir, "stare"),
                     source=source)
    storage.makedirs(workdir)
    for stage in STAGES:
        if stage not in stages:
            continue
        if stage == "synth" and (stare_dir is not None or source is not None):
            _say(stage, f"skipped: using the photos of {paths.describe_source()}")
            continue
        start = time.time()
        message = STAGE_FUNCTIONS[stage](config, paths, options)
        _say(stage, f"{message} ({time.time() - start:.0f} s)")
    return paths


def define_flags() -> None:
    flags.DEFINE_string("workdir", None, "Folder for every stage's outputs.")
    source_flags.define_flags(help_overrides={
        "stare_dir": "Without any input flag the synth stage makes synthetic STARE photos.",
        "layout": "A dataset's own split (DRIVE's training/test) is kept unless "
                  "[preprocess] names valid_ids/test_ids."})
    flags.DEFINE_list("stages", list(STAGES), "Comma-separated subset of the stages.")
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


def mean_held_out_dice(metrics_csv: str) -> Optional[float]:
    rows = report.read_metrics_csv(metrics_csv)
    return rows.get("mean", {}).get("dice") if rows else None


def pooled_held_out_f1(segment_dir: str) -> str:
    """', pooled F1 X' from metrics.json, or '' without it."""
    path = storage.join(segment_dir, metrics_json.METRICS_JSON)
    if not storage.exists(path):
        return ""
    pooled = metrics_json.read_metrics_json(path)["summary"]["pooled"]
    return f", pooled F1 {pooled['dice']:.4f} (inside FOV {pooled['fov_dice']:.4f})"


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("config", "workdir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    if FLAGS.num_cpu_replicas > 1:  # split the CPU before anything initialises TF devices
        strategy.configure_cpu_replicas(FLAGS.num_cpu_replicas)

    options = RunOptions(overwrite=FLAGS.overwrite, num_cpu_replicas=FLAGS.num_cpu_replicas,
                         precision=FLAGS.precision, verbose=keras_verbosity(FLAGS.quiet),
                         direct_num_workers=FLAGS.direct_num_workers)
    show_training_log(FLAGS.quiet)
    start = time.time()
    config = tool_config.load_config({"train.deterministic": FLAGS.deterministic or None,
                                      "train.init_model": cli_flags.init_model_value()})
    given = source_flags.sources_from_flags()
    stare_dir, source = None, None
    if len(given) == 1 and given[0] == datasets.Source(root=FLAGS.stare_dir, layout="stare"):
        stare_dir = FLAGS.stare_dir  # the plain STARE folder, as before
    elif given:
        source = given[0] if len(given) == 1 else given
    try:
        paths = run_pipeline(config, FLAGS.workdir, stare_dir, FLAGS.stages, options,
                             source=source)
    except (StageError, dataset_info.DatasetError, model_info.ModelDirError,
            datasets.InputDirError,
            FileNotFoundError, FileExistsError) as e:
        raise cli_app.ToolError(str(e)) from None
    dice = mean_held_out_dice(paths.metrics_csv) if storage.exists(paths.metrics_csv) else None
    if dice is not None:
        print(f"vessel-run: held-out Dice (mean over the test images) {dice:.4f}"
              + pooled_held_out_f1(paths.segment_dir) + f"; report: {paths.report}")
    print(f"vessel-run: done in {time.time() - start:.0f} s")
    rejected = rejected_inputs(paths) if "preprocess" in FLAGS.stages else []
    if rejected and not FLAGS.allow_errors:  # the exit-status table: inputs left out -> 1
        print(f"vessel-run: {len(rejected)} input(s) rejected by preprocessing and left out "
              f"of the dataset (named above; all in "
              f"{storage.join(paths.data_dir, 'errors.jsonl')}); exit status 1 (pass "
              f"--allow_errors to accept)", file=sys.stderr)
        return 1
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs vessel-run in this process (tests, notebooks); argv without the program name."""
    args = ["vessel-run", *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, _main, args)


def run() -> None:
    """Console entry point `vessel-run`."""
    cli_app.run(__name__, __doc__, define_flags, _main)


if __name__ == "__main__":
    run()

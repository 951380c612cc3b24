"""vessel-run's stages as library calls: each `stage_*` reads what the stage before it
wrote under the work dir W and calls one stage's library (synthetic/, beam_jobs/,
trainer/, inference/, the report); `run_pipeline` runs them in order. The tool is
pipeline/run.py; vessel-cv (pipeline/cv.py) runs the preprocess and train stages per fold.

    W/stare    synthetic photos (synth)       W/model    the trained model (train, evaluate)
    W/data     the dataset (preprocess)       W/segment  held-out photos segmented (segment)
    W/report.md, W/montage.png                the report (report)

A stage whose complete outputs exist is skipped unless RunOptions.overwrite; each returns
one line saying what it did and where. Paths go through storage (local or gs://).
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Callable, Optional, Sequence

from tiled_vessel_seg import datasets, imaging, model_info, sources, storage
from tiled_vessel_seg.configs import schema
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # the stages: loaded when a stage runs
    from apache_beam.options import pipeline_options
    from tiled_vessel_seg.beam_jobs import pipeline, split
    from tiled_vessel_seg.inference import metrics_json, segment
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.pipeline import report, training_callbacks
    from tiled_vessel_seg.synthetic import stare_layout
    from tiled_vessel_seg.tfrecords import dataset_info
    from tiled_vessel_seg.trainer import callbacks, evaluate, train

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


def stage_synth(config: schema.Config, paths: RunPaths, options: RunOptions) -> str:
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


def stage_preprocess(config: schema.Config, paths: RunPaths, options: RunOptions) -> str:
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


@dataclasses.dataclass(frozen=True)
class Training:
    """What the train stage did: its one-line message, the epochs of the finished model
    that an earlier, stopped run trained (all of them when training was skipped because
    the model was already there), with their times, and the model's history.json
    ({key: list per epoch}; {} when it has none)."""
    message: str
    carried: callbacks.CarriedEpochs
    history: dict = dataclasses.field(default_factory=dict)


def train_model(config: schema.Config, paths: RunPaths, options: RunOptions) -> Training:
    """The train stage, saying also what a resumed run carried over (vessel-cv times a
    fold's training with it)."""
    history_path = storage.join(paths.model_dir, callbacks.HISTORY_FILE)
    if _training_finished(paths.model_dir) and not options.overwrite:
        history = callbacks.read_history(history_path)
        return Training(f"skipped: trained model already in {paths.model_dir}",
                        callbacks.carried_epochs(history, history), history)
    if options.overwrite and storage.isdir(paths.model_dir):
        storage.remove_tree(paths.model_dir)
    before = callbacks.read_history(history_path)
    start = time.time()
    train.train(config, paths.data_dir, paths.model_dir,
                num_cpu_replicas=options.num_cpu_replicas, precision=options.precision,
                verbose=options.verbose, callbacks=training_callbacks.for_training(
                    config, paths.data_dir, paths.model_dir, source=paths.pairs_source))
    history = callbacks.read_history(history_path)
    carried = callbacks.carried_epochs(before, history)
    epochs = len(history.get("epoch", []))
    monitor = config.train.monitor
    best_index = callbacks.best_index(history, monitor)
    best = float("nan") if best_index is None else history[monitor][best_index]
    return Training(f"trained {epochs} epochs in {time.time() - start:.0f} s"
                    f"{resumed_note(carried)} (best {monitor} {best:.4f}) -> "
                    f"{paths.model_dir}", carried, history)


def stage_train(config: schema.Config, paths: RunPaths, options: RunOptions) -> str:
    return train_model(config, paths, options).message


def resumed_note(carried: callbacks.CarriedEpochs) -> str:
    """" (resumed: 32 epochs from a stopped run, 1140 s more)", or "" for a fresh run."""
    if not carried.epochs:
        return ""
    more = f", {carried.seconds:.0f} s more" if carried.timed else ", their time unknown"
    return f" (resumed: {carried.epochs} epochs from a stopped run{more})"


def _training_finished(model_dir: str) -> bool:
    """True when the model dir holds a best model and no unfinished run to resume."""
    return (storage.exists(storage.join(model_dir, model_info.MODEL_FILE))
            and storage.exists(storage.join(model_dir, model_info.INFO_FILE))
            and not storage.exists(storage.join(model_dir, train.BACKUP_DIR)))


def stage_evaluate(config: schema.Config, paths: RunPaths, options: RunOptions) -> str:
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


def stage_segment(config: schema.Config, paths: RunPaths, options: RunOptions) -> str:
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


def stage_report(config: schema.Config, paths: RunPaths, options: RunOptions) -> str:
    if not options.overwrite and storage.exists(paths.report):
        return f"skipped: {paths.report} exists"
    report.write_report(paths.workdir, paths.describe_source(), paths.data_dir,
                        paths.model_dir, paths.segment_dir, held_out_pairs(paths))
    return f"wrote {paths.report} and {storage.join(paths.workdir, report.MONTAGE_FILE)}"


STAGE_FUNCTIONS: dict[str, Callable] = {
    "synth": stage_synth, "preprocess": stage_preprocess, "train": stage_train,
    "evaluate": stage_evaluate, "segment": stage_segment, "report": stage_report,
}


def run_pipeline(config: schema.Config, workdir: str, stare_dir: Optional[str] = None,
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

r"""`vessel-cv`: K-fold cross-validation BY IMAGE, grouped by subject, as one command.

    vessel-cv --config configs/stare_small.config --stare_dir ../shared/data/stare \
        --workdir runs/cv --folds 7
    vessel-cv --config C --source stare:../shared/data/stare \
        --source chase_db1:../shared/data/chase_db1 --workdir runs/cv_both --folds 5

The inputs are vessel-preprocess's (tiled_vessel_seg/source_flags.py; several datasets
with --source NAME:DIR, tiled_vessel_seg/sources.py). The subjects (CHASE_DB1's child:
both eyes; elsewhere each photo) of each dataset are shuffled with `--seed` and cut into
K folds (`assign_folds`). For fold f:
  test   the fold's images (never used for training or selection),
  valid  one image per dataset of the next fold (model selection and the threshold only),
  train  every other image.
Each fold runs vessel-run's stages into W/fold_<f>/ (preprocess with these ids, train),
then segments its held-out photos ([tiledinfer] input_scale, default auto: resampled to
the model's FOV diameter, outputs at each photo's own size) and scores them
(W/fold_<f>/segment/[<dataset>/]metrics.csv, threshold from the fold's model_info.json).
At the end:
  W/cv_metrics.csv   one row per held-out image (fold, dataset, image, metrics), then per
                     dataset, for all images and per second observer: mean, std and
                     pooled (summed pixel counts) rows; then the second observer's rows
  W/cv_report.md     per-fold and overall F1 inside the FOV and over the whole image, AUC,
                     sensitivity, specificity, accuracy, training time per fold, a
                     per-dataset table (mean +- std, pooled F1, second observer), the config
A fold whose metrics exist is skipped on rerun (a fold interrupted while training
resumes from its last finished epoch); `--overwrite` redoes every fold.
`--only_folds 3,4` runs just those folds (several machines sharing one gs:// workdir, or
one fold redone); the reports are written by the run that finds every fold finished.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import resource
import sys
import time
from typing import Optional, Sequence

import numpy as np
from absl import app, flags

from tiled_vessel_seg import (cli_app, datasets as datasets_lib, imaging, model_info,
                              source_flags, sources, storage)
from tiled_vessel_seg.configs import config_file, schema, to_dict, tool_config
from tiled_vessel_seg.lazy_imports import lazy_imports
from tiled_vessel_seg.pipeline import cv_layout, stages
from tiled_vessel_seg.pipeline.cv_layout import ALL, FOLD_FILE, SEGMENT_DIR
from tiled_vessel_seg.trainer import cli_flags

with lazy_imports():  # the stages (and OpenCV): not imported for --help
    from tiled_vessel_seg import fov
    from tiled_vessel_seg.inference import metrics as inference_metrics
    from tiled_vessel_seg.inference import metrics_json, segment
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.pipeline import report, robustness as robustness_lib
    from tiled_vessel_seg.tfrecords import dataset_info
    from tiled_vessel_seg.trainer import callbacks
    from tiled_vessel_seg.trainer import metrics as train_metrics

FLAGS = flags.FLAGS

CV_METRICS = "cv_metrics.csv"
CV_REPORT = "cv_report.md"
METRICS = ("dice", "auc", "sensitivity", "specificity", "accuracy", "iou")
OBSERVER = "2nd observer"  # the dataset label of a second annotator's rows


@dataclasses.dataclass(frozen=True)
class Fold:
    """One fold: which image ids play which role (each id in exactly one role).

    valid_ids: the photos of one validation subject per dataset (model selection and the
    threshold): never of a test subject, and both eyes of a child validate together, so no
    subject sits on both sides of any split."""
    index: int
    test_ids: tuple[str, ...]
    valid_ids: tuple[str, ...]
    train_ids: tuple[str, ...]

    @property
    def valid_id(self) -> str:
        """The first validation image (the only one when every subject has one photo)."""
        return self.valid_ids[0]


def assign_folds(image_ids: Sequence[str], folds: int, seed: int = 0,
                 subjects: Optional[dict[str, str]] = None,
                 datasets: Optional[dict[str, str]] = None) -> list[Fold]:
    """Splits image ids into `folds` folds by image, grouped by subject, deterministically
    for `seed`.

    subjects: {image id: subject key} (sources.subject_key): the photos of one subject
      (both eyes of a CHASE_DB1 child) are held out together. Default: every image is
      its own subject.
    datasets: {image id: dataset name}: each dataset's subjects are spread over the folds
      on their own (every fold holds out some of each where there are enough).

    Per dataset (sorted by name), the sorted subjects are permuted by one
    numpy default_rng(seed), in turn, and cut into near-equal consecutive chunks
    (np.array_split); chunk c goes to fold c, shifted past the larger chunks of the
    datasets before. Fold f tests its subjects' images and validates on every image of
    the first subject of each dataset in the next fold (cyclically), so a valid image is
    never of a test subject and never the other eye of a training photo; with one dataset
    of single-image subjects this is the plain split by image, and with K = N every image
    validates once.
    """
    ids = sorted(set(image_ids))
    if len(ids) != len(image_ids):
        raise ValueError("image ids must be unique")
    if folds < 2:
        raise ValueError(f"--folds must be >= 2, got {folds}")
    subjects = subjects or {}
    datasets = datasets or {}
    members: dict[str, list[str]] = {}
    for image_id in ids:
        members.setdefault(subjects.get(image_id, image_id), []).append(image_id)
    if len(members) < folds:
        what = (f"{len(ids)} images" if len(members) == len(ids)
                else f"{len(ids)} images of {len(members)} subjects")
        raise ValueError(f"{what} cannot make {folds} folds")
    by_dataset: dict[str, list[str]] = {}
    for unit in sorted(members):
        by_dataset.setdefault(datasets.get(members[unit][0], ""), []).append(unit)
    rng = np.random.default_rng(seed)
    chunks: list[list[str]] = [[] for _ in range(folds)]
    shift = 0
    for name in sorted(by_dataset):
        group = by_dataset[name]
        order = [group[i] for i in rng.permutation(len(group))]
        for c, part in enumerate(np.array_split(np.array(order, object), folds)):
            chunks[(c + shift) % folds].extend(str(u) for u in part)
        shift += len(group) % folds
    unit_dataset = {u: name for name, group in by_dataset.items() for u in group}
    order = [i for chunk in chunks for unit in chunk for i in members[unit]]
    result = []
    for f, chunk in enumerate(chunks):
        test = tuple(i for unit in chunk for i in members[unit])
        valid = []
        for name in sorted(by_dataset):
            unit = next((u for step in range(1, folds) for u in chunks[(f + step) % folds]
                         if unit_dataset[u] == name), None)
            if unit is not None:
                valid.extend(members[unit])
        train = tuple(i for i in order if i not in test and i not in valid)
        if not train:
            raise ValueError(f"{len(ids)} images in {folds} folds leave none to train on "
                             "besides the held-out and validation subjects")
        result.append(Fold(f, test, tuple(valid), train))
    return result


def fold_dir(workdir: str, fold: Fold) -> str:
    return cv_layout.fold_dir(workdir, fold.index)


def fold_config(config: schema.Config, fold: Fold):
    """`config` with the fold's split by image (valid_ids / test_ids of [preprocess])."""
    return config_file.with_overrides(config, {"preprocess.valid_ids": fold.valid_ids,
                                               "preprocess.test_ids": fold.test_ids})


def segment_dirs(segment_dir: str, pairs) -> dict[str, str]:
    """{dataset: folder its held-out photos are segmented into}: segment_dir itself when
    the run has one dataset, else one sub-folder per dataset (file stems may repeat
    across datasets)."""
    names = sources.dataset_names(pairs)
    if len(names) == 1:
        return {names[0]: segment_dir}
    return {name: storage.join(segment_dir, name or "unnamed") for name in names}


def fold_predictor(config: schema.Config, model_dir: str):
    """The predictor that scores a fold's held-out photos (outputs at each photo's own
    size): [tiledinfer] tiling, TTA and input_scale (default auto: each photo resampled
    to the model's FOV diameter, so a model trained on harmonised photos is scored at
    its scale on every camera's), the model's threshold."""
    tiled = config.tiledinfer
    return predictor_lib.load_predictor(
        model_dir, overlap=tiled.overlap, batch_size=tiled.batch_size,
        blend=tiled.blend, tta=tiled.tta, threshold=None, input_scale=tiled.input_scale)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_training(config: schema.Config, paths, options, say
                    ) -> tuple[float, float, stages.Training]:
    """Runs the train stage; returns its wall and CPU seconds, those of the epochs a
    stopped earlier run trained included (history.json's epoch times), and what the
    stage reported."""
    start, cpu = time.time(), _cpu_seconds()
    training = stages.train_model(config, paths, options)
    say("train: " + training.message)
    seconds, cpu = time.time() - start, _cpu_seconds() - cpu
    return (seconds + training.carried.seconds, cpu + training.carried.cpu_seconds,
            training)


def run_fold(config: schema.Config, fold: Fold, inputs, workdir: str, pairs, options,
             say=print) -> dict:
    """Preprocess, train, segment and score one fold; returns its fold.json record.

    inputs: the run's sources (a datasets.Source or a list; a str is a STARE folder).
    """
    paths = _run_paths(fold_dir(workdir, fold), inputs)
    record_path = storage.join(paths.workdir, FOLD_FILE)
    held_out = [p for p in pairs if p.image_id in fold.test_ids]
    dirs = segment_dirs(paths.segment_dir, pairs)
    names = {p.dataset or "" for p in held_out}
    if not options.overwrite and fold_finished(workdir, fold, pairs):
        say(f"skipped: {paths.metrics_csv} exists")
        return json.loads(storage.read_text(record_path))
    storage.makedirs(paths.workdir)
    config = fold_config(config, fold)
    say("preprocess: " + stages.stage_preprocess(config, paths, options))
    train_seconds, train_cpu, training = _timed_training(config, paths, options, say)
    predictor = fold_predictor(config, paths.model_dir)
    if config.train.select_image_threshold:
        say(_select_image_threshold(config, predictor, paths.model_dir, fold, pairs))
    scored = 0
    for name in sorted(names):
        group = [p for p in held_out if (p.dataset or "") == name]
        summary = segment.segment_files(
            predictor, [p.image_path for p in group], dirs[name], overlay=True,
            save_probabilities=True,
            truths={imaging.image_stem(p.image_path): p for p in group},
            overwrite=True, progress=False)
        if summary.failed:
            raise stages.StageError("could not segment " + "; ".join(
                f"{p}: {r}" for p, r in summary.failed))
        scored += len(summary.metrics)
    history, carried = training.history, training.carried
    record = {**dataclasses.asdict(fold), "train_seconds": round(train_seconds, 1),
              "train_cpu_seconds": round(train_cpu, 1),
              "carried_epochs": carried.epochs, "carried_epochs_timed": carried.timed,
              "epochs": len(history.get("epoch", [])),
              "best_epoch": callbacks.best_epoch_number(history, config.train.monitor),
              "threshold": model_info.read_model_info(paths.model_dir).threshold}
    storage.write_text_atomic(record_path, json.dumps(record, indent=2))
    say(f"segment: {scored} held-out image(s) scored at threshold "
        f"{predictor.threshold:.2f} -> {paths.segment_dir}")
    return record


def fold_finished(workdir: str, fold: Fold, pairs) -> bool:
    """True when the fold's record and the metrics.csv of each of its held-out datasets
    exist (written last, atomically)."""
    dirs = segment_dirs(storage.join(fold_dir(workdir, fold), SEGMENT_DIR), pairs)
    names = {p.dataset or "" for p in pairs if p.image_id in fold.test_ids}
    return (storage.exists(storage.join(fold_dir(workdir, fold), FOLD_FILE))
            and all(storage.exists(storage.join(dirs[n], "metrics.csv")) for n in names))


def _select_image_threshold(config: schema.Config, predictor, model_dir: str, fold: Fold,
                            pairs) -> str:
    """store_image_threshold on the photos [train] threshold_photos names; one line."""
    ids = fold.train_ids if config.train.threshold_photos == "train" else fold.valid_ids
    threshold, f1 = store_image_threshold(predictor, model_dir,
                                          [p for p in pairs if p.image_id in ids])
    what = (f"the {len(ids)} training photos" if config.train.threshold_photos == "train"
            else " ".join(ids))
    return f"threshold {threshold:.2f} maximises F1 inside the FOV of {what} ({f1:.4f})"


def threshold_counts(predictor, pairs, bins: Optional[int] = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Segments the photos whole (the predictor's tiling, TTA and input scale) and counts
    their FOV pixels by probability bin: (vessel counts, background counts), int64 [bins]
    each, bin b holding probabilities in [b/bins, (b+1)/bins); bins defaults to
    trainer/metrics.THRESHOLD_BINS (f1_by_threshold's)."""
    bins = bins or train_metrics.THRESHOLD_BINS
    positives, negatives = np.zeros(bins, np.int64), np.zeros(bins, np.int64)
    for pair in pairs:
        image = imaging.read_image(pair.image_path)
        truth = imaging.read_mask(pair.mask_path) > 0  # uint8 {0, 1} -> bool
        region = fov.fov_mask(image)
        probabilities = predictor(image)[0].numpy()
        index = np.minimum((probabilities[region] * bins).astype(np.int64), bins - 1)
        positives += np.bincount(index[truth[region]], minlength=bins)
        negatives += np.bincount(index[~truth[region]], minlength=bins)
    return positives, negatives


def store_image_threshold(predictor, model_dir: str, pairs) -> tuple[float, float]:
    """Stores in model_info.json the threshold maximising F1 over the FOV pixels of the
    photos segmented whole (threshold_counts); sets it on `predictor` too. Returns
    (threshold, that F1)."""
    threshold, f1 = train_metrics.f1_by_threshold(*threshold_counts(predictor, pairs))
    info = model_info.read_model_info(model_dir)
    model_info.write_model_info(model_dir, dataclasses.replace(info, threshold=threshold))
    predictor.threshold = threshold
    return threshold, f1


FINAL_DIR = "final"


def final_valid_ids(pairs, configured: Sequence[str] = ()) -> tuple[str, ...]:
    """The final model's validation ids: the configured ones among the pairs, else every
    photo of the first subject (by sorted image id) of each dataset."""
    ordered = sorted(pairs, key=lambda p: p.image_id)
    valid = tuple(p.image_id for p in ordered if p.image_id in set(configured))
    if valid:
        return valid
    firsts: dict[str, str] = {}  # dataset: its first photo's subject
    for pair in ordered:
        firsts.setdefault(pair.dataset or "", sources.subject_key(pair))
    return tuple(p.image_id for p in ordered if sources.subject_key(p) in firsts.values())


def train_final(config: schema.Config, inputs, workdir: str, pairs, options, say=print) -> str:
    """The recipe trained on every image (the config's valid_ids images validate, else the
    photos of the first subject of each dataset) into W/final/model, with the validation threshold; returns
    the model dir. Skipped when finished."""
    ids = sorted(p.image_id for p in pairs)
    valid = final_valid_ids(pairs, config.preprocess.valid_ids)
    fold = Fold(-1, (), valid, tuple(i for i in ids if i not in valid))
    paths = _run_paths(storage.join(workdir, FINAL_DIR), inputs)
    done = storage.join(paths.workdir, FOLD_FILE)
    if storage.exists(done) and not options.overwrite:
        say(f"skipped: {paths.model_dir} is finished")
        return paths.model_dir
    config = fold_config(config, fold)
    say("preprocess: " + stages.stage_preprocess(config, paths, options))
    seconds, _, _ = _timed_training(config, paths, options, say)
    if config.train.select_image_threshold:
        say(_select_image_threshold(config, fold_predictor(config, paths.model_dir),
                                    paths.model_dir, fold, pairs))
    record = {**dataclasses.asdict(fold), "train_seconds": round(seconds, 1),
              "threshold": model_info.read_model_info(paths.model_dir).threshold}
    storage.write_text_atomic(done, json.dumps(record, indent=2))
    return paths.model_dir


def _run_paths(workdir: str, inputs):
    """vessel-run's RunPaths of a fold (or the final model) reading `inputs`."""
    if isinstance(inputs, str):
        return stages.RunPaths(workdir=workdir, stare_dir=inputs)
    return stages.RunPaths(workdir=workdir, stare_dir="", source=inputs)


def read_fold_rows(workdir: str, fold: Fold, pairs=None) -> list[dict]:
    """The fold's per-image metric rows (fold, dataset, image, metrics, and the pixel
    counts when metrics.json has them) from its segment folder(s). pairs: the run's
    (None: one dataset, unnamed)."""
    segment_dir = storage.join(fold_dir(workdir, fold), SEGMENT_DIR)
    pairs = list(pairs or [])
    dirs = segment_dirs(segment_dir, pairs) if pairs else {"": segment_dir}
    ids = {((p.dataset or ""), imaging.image_stem(p.image_path)): p.image_id for p in pairs}
    rows = []
    for name, folder in dirs.items():
        document_path = storage.join(folder, metrics_json.METRICS_JSON)
        csv_path = storage.join(folder, "metrics.csv")
        if storage.exists(document_path):
            images = metrics_json.read_metrics_json(document_path)["images"]
        elif storage.exists(csv_path):
            images = [{"image": k, **v} for k, v in report.read_metrics_csv(csv_path).items()
                      if k not in ("mean", "std")]
        else:
            continue
        for row in images:
            image = ids.get((name, row["image"]), row["image"])
            if pairs and image not in fold.test_ids:
                continue
            rows.append({**{k: v for k, v in row.items() if k not in ("image", "fov")},
                         "fold": fold.index, "dataset": name, "image": image})
    return rows


def observer_rows(pairs, folds: list[Fold]) -> list[dict]:
    """The second observer of each held-out photo that has one: that annotator's map
    scored against the first observer's as the model is, whole image and inside the FOV
    (the dataset's FOV file, else computed from the photo), with pixel counts
    (report.second_observer_row; AUC NaN). Dataset: '<name> 2nd observer'."""
    fold_of = {i: f.index for f in folds for i in f.test_ids}
    rows = []
    for pair in pairs:
        if not pair.second_mask_path or pair.image_id not in fold_of:
            continue
        region = report.fov_region(pair, imaging.read_image(pair.image_path))
        rows.append({**report.second_observer_row(pair, region),
                     "fold": fold_of[pair.image_id],
                     "dataset": f"{pair.dataset or ''} {OBSERVER}".strip()})
    return rows


def metric_columns() -> list[str]:
    return [m for m in METRICS] + [f"fov_{m}" for m in METRICS]


def summary_rows(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{"mean", "std" (over images, NaN ignored), "pooled" (summed pixel counts; no AUC)}:
    {column: value} of one group of per-image rows."""
    columns = metric_columns()
    stats = inference_metrics.summarize(rows, columns)
    pooled = metrics_json.pooled_metrics(rows) if rows else {}
    return {"mean": {c: stats[c][0] for c in columns},
            "std": {c: stats[c][1] for c in columns},
            "pooled": {c: pooled.get(c, float("nan")) for c in columns}}


def dataset_groups(rows: list[dict], observers: list[dict]) -> dict[str, list[dict]]:
    """The rows of each dataset, then ALL (every held-out image), then each second
    observer."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["dataset"], []).append(row)
    groups = dict(sorted(groups.items()))
    groups[ALL] = list(rows)
    for row in observers:
        groups.setdefault(row["dataset"], []).append(row)
    return groups


def write_cv_metrics(path: str, rows: list[dict], observers: Sequence[dict] = ()) -> None:
    """fold,dataset,image,<metrics> per held-out image; then per dataset, for all images
    (dataset "all") and per second observer: mean and std over images, and pooled (from
    the summed pixel counts; AUC empty); then the second observers' per-image rows."""
    columns = metric_columns()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["fold", "dataset", "image"] + columns)

    def cell(value):
        return "" if value is None or not np.isfinite(value) else f"{value:.6f}"
    for row in rows:
        writer.writerow([row["fold"], row["dataset"], row["image"]]
                        + [cell(row[c]) for c in columns])
    for name, group in dataset_groups(rows, list(observers)).items():
        for kind, values in summary_rows(group).items():
            writer.writerow(["", name, kind] + [cell(values[c]) for c in columns])
    for row in observers:
        writer.writerow([row["fold"], row["dataset"], row["image"]]
                        + [cell(row[c]) for c in columns])
    storage.write_text_atomic(path, buf.getvalue())


def dataset_table(rows: list[dict], observers: Sequence[dict]) -> list[str]:
    """The report's per-dataset lines: mean +- std over held-out images and pooled F1."""
    lines = ["## Per dataset", "",
             "Mean +- std over the held-out images of each dataset; pooled F1 from the "
             "pixel counts summed over them. The second observer's map is scored against "
             "the first's (the labels the model is scored on) in the same way.", "",
             "| dataset | images | F1 FOV | pooled F1 FOV | F1 whole | pooled F1 whole | "
             "AUC FOV | Se FOV | Sp FOV | Acc FOV |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, group in dataset_groups(rows, list(observers)).items():
        s = summary_rows(group)

        def ms(c):  # n/a: the second observer's AUC (a binary map has no ROC curve)
            if not np.isfinite(s["mean"][c]):
                return "n/a"
            return f"{s['mean'][c]:.3f} +- {s['std'][c]:.3f}"
        lines.append(f"| {name or '(unnamed)'} | {len(group)} | {ms('fov_dice')} | "
                     f"{s['pooled']['fov_dice']:.3f} | {ms('dice')} | "
                     f"{s['pooled']['dice']:.3f} | {ms('fov_auc')} | "
                     f"{ms('fov_sensitivity')} | {ms('fov_specificity')} | "
                     f"{ms('fov_accuracy')} |")
    return lines + [""]


def fold_means(rows: list[dict], folds: list[Fold]) -> dict[int, dict[str, float]]:
    """{fold: {metric: mean over its held-out images}}."""
    return {fold.index: {c: float(np.nanmean([r[c] for r in rows if r["fold"] == fold.index]))
                         for c in metric_columns()} for fold in folds}


def whole_run_command(command: str) -> str:
    """The command without its --only_folds flag: the one run that makes every fold, for
    the report written by the run that finished the last of them."""
    words = command.split(" ")
    return " ".join(w for i, w in enumerate(words) if not w.startswith("--only_folds")
                    and not (i and words[i - 1] == "--only_folds"))


def resumed_folds_note(folds: Sequence[Fold], records: Sequence[dict]) -> str:
    """A sentence on the folds whose training resumed a stopped run, or ""."""
    parts = []
    for fold, record in zip(folds, records):
        carried = record.get("carried_epochs", 0)
        if carried:
            timed = record.get("carried_epochs_timed", True)
            parts.append(f"fold {fold.index}, {carried} of its {record['epochs']} epochs"
                         + ("" if timed else ", not timed"))
    if not parts:
        return ""
    return (" Epochs trained by an earlier run of the command (" + "; ".join(parts) + ") "
            "count in the training time with their time from history.json, where it was "
            "recorded.")


def write_cv_report(path: str, rows: list[dict], folds: list[Fold], records: list[dict],
                    config, command: str, observers: Sequence[dict] = (),
                    in_parts: bool = False) -> dict[str, tuple[float, float]]:
    """Markdown report; returns {metric: (mean, std) over folds}. in_parts: the folds
    were run by several `--only_folds` runs of `command`."""
    per_fold = fold_means(rows, folds)
    overall = {c: (float(np.mean([per_fold[f.index][c] for f in folds])),
                   float(np.std([per_fold[f.index][c] for f in folds])))
               for c in metric_columns()}
    minutes = [r["train_seconds"] / 60 for r in records]
    lines = [
        f"# Cross-validation by image: {len(folds)} folds, {len(rows)} held-out images",
        "", f"Command: `{command}`" + (" (its folds run in parts with `--only_folds`)"
                                        if in_parts else ""), "",
        f"**F1 inside the FOV: {overall['fov_dice'][0]:.3f} +- {overall['fov_dice'][1]:.3f}** "
        f"(mean +- std over folds); whole image {overall['dice'][0]:.3f} +- "
        f"{overall['dice'][1]:.3f}. Training {np.mean(minutes):.1f} min per fold on average "
        f"({min(minutes):.1f}-{max(minutes):.1f}), {sum(minutes):.0f} min in all.", "",
        "| fold | held out | valid | F1 FOV | F1 whole | AUC FOV | Se FOV | Sp FOV | Acc FOV "
        "| threshold | epochs (best) | train min (CPU min) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for fold, record in zip(folds, records):
        m = per_fold[fold.index]
        lines.append(
            f"| {fold.index} | {' '.join(fold.test_ids)} | {' '.join(fold.valid_ids)} | "
            f"{m['fov_dice']:.3f} | {m['dice']:.3f} | {m['fov_auc']:.3f} | "
            f"{m['fov_sensitivity']:.3f} | {m['fov_specificity']:.3f} | "
            f"{m['fov_accuracy']:.3f} | {record['threshold']:.2f} | {record['epochs']} "
            f"({record['best_epoch']}) | {record['train_seconds'] / 60:.1f} "
            f"({record['train_cpu_seconds'] / 60:.1f}) |")
    lines.append("| **mean +- std** | | | " + " | ".join(
        f"{overall[c][0]:.3f} +- {overall[c][1]:.3f}"
        for c in ("fov_dice", "dice", "fov_auc", "fov_sensitivity", "fov_specificity",
                  "fov_accuracy")) + f" | | | {np.mean(minutes):.1f} |")
    lines += ["", "Per image: `cv_metrics.csv`. Metrics are at each fold's threshold "
              "(model_info.json); the FOV is computed from the photo (tiled_vessel_seg/fov.py)."
              + resumed_folds_note(folds, records), ""]
    lines += dataset_table(rows, observers)
    lines += ["## Config", "", "```ini"]
    for section, values in to_dict(config).items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {tuple(v) if isinstance(v, list) else v!r}"
                  for k, v in values.items()]
        lines.append("")
    lines.append("```")
    storage.write_text_atomic(path, "\n".join(lines) + "\n")
    return overall


def run_cv(config: schema.Config, inputs, workdir: str, folds: int, seed: int = 0,
           options=None, command: str = "vessel-cv", say=print, final: str = "no",
           robustness: bool = False, only_folds: Sequence[int] = ()) -> dict:
    """Runs every fold (skipping finished ones), writes cv_metrics.csv and cv_report.md;
    returns {metric: (mean, std) over folds}. final "also" / "only": (also) train the
    recipe on every image into W/final/model (train_final); "only" returns {}.
    robustness: also score every fold's held-out photos resized, recoloured and JPEG'd
    (pipeline/robustness.py) into W/cv_robustness.csv and a table in the report.
    only_folds: run just these fold indices (0-based); the reports are written only when
    every fold is finished (else returns {} after saying which folds are missing).

    inputs: a datasets.Source or a list of them (sources.py: several datasets, folds
    grouped by subject), or a STARE folder (str).
    """
    options = options or stages.RunOptions()
    if isinstance(inputs, str):
        if not storage.isdir(inputs):
            raise stages.StageError(f"--stare_dir {inputs}: not a folder")
        listed = [datasets_lib.Source(root=inputs, layout="stare")]
    else:
        listed = sources.as_list(inputs)
    for source in listed:
        for folder in (source.root, source.images_dir, source.masks_dir):
            if folder and not datasets_lib.is_dir(folder):
                raise stages.StageError(f"{folder}: not a folder")
    ignored: list = []
    pairs, problems = sources.find_pairs(listed, ignored)
    if ignored:
        say(datasets_lib.ignored_note(ignored))
    for problem in problems:
        say(f"ignored: {problem}")
    if not pairs:
        raise stages.StageError(f"no image/label pairs in {sources.describe(listed)}")
    storage.makedirs(workdir)
    run_inputs = inputs if isinstance(inputs, str) else listed
    if final in ("also", "only"):
        model_dir = train_final(config, run_inputs, workdir, pairs, options,
                                say=lambda m: say(f"[final model] {m}"))
        say(f"[final model] {model_dir}")
        if final == "only":
            return {}
    assignment = assign_folds([p.image_id for p in pairs], folds, seed,
                              subjects={p.image_id: sources.subject_key(p) for p in pairs},
                              datasets={p.image_id: p.dataset or "" for p in pairs})
    unknown = sorted(set(only_folds) - set(range(folds)))
    if unknown:
        raise ValueError(f"--only_folds {','.join(map(str, unknown))}: folds are 0-{folds - 1}")
    records = []
    for fold in assignment:
        if only_folds and fold.index not in only_folds:
            continue
        prefix = f"[fold {fold.index + 1}/{folds}: test {' '.join(fold.test_ids)}]"
        records.append(run_fold(config, fold, run_inputs, workdir, pairs, options,
                                say=lambda m: say(f"{prefix} {m}")))
    if only_folds:
        missing = [f.index for f in assignment if not fold_finished(workdir, f, pairs)]
        if missing:
            say(f"folds {','.join(map(str, missing))} not finished in {workdir}: the reports "
                "are written by the run that finishes the last fold")
            return {}
        records = [json.loads(storage.read_text(
            storage.join(fold_dir(workdir, f), FOLD_FILE))) for f in assignment]
        command = whole_run_command(command)
    rows = [r for fold in assignment for r in read_fold_rows(workdir, fold, pairs)]
    observers = observer_rows(pairs, assignment)
    write_cv_metrics(storage.join(workdir, CV_METRICS), rows, observers)
    overall = write_cv_report(storage.join(workdir, CV_REPORT), rows, assignment, records,
                              config, command, observers, in_parts=bool(only_folds))
    for name, group in dataset_groups(rows, observers).items():
        s = summary_rows(group)
        say(f"{name or '(unnamed)'}: F1 inside the FOV {s['mean']['fov_dice']:.4f} +- "
            f"{s['std']['fov_dice']:.4f} over {len(group)} image(s), pooled "
            f"{s['pooled']['fov_dice']:.4f}")
    if robustness:
        say("[robustness] segmenting the held-out photos changed 4 ways")
        summary = robustness_lib.evaluate_folds(
            workdir, assignment, pairs,
            lambda fold: fold_predictor(config, storage.join(fold_dir(workdir, fold), "model")),
            say=lambda message: say(f"[robustness] {message}"))
        report_path = storage.join(workdir, CV_REPORT)
        text = storage.read_text(report_path)
        table = robustness_lib.report_section(summary)
        marker = "## Config"
        storage.write_text_atomic(
            report_path, text.replace(marker, "\n".join(table) + "\n" + marker, 1))
    return overall


def define_flags() -> None:
    """vessel-cv's own flags (--config, --set and --verbose come from cli_app)."""
    source_flags.define_flags()
    flags.DEFINE_string("workdir", None, "Folder for the folds and reports. Required.")
    flags.DEFINE_integer("folds", 5, "K; K = number of images is leave-one-out.", lower_bound=2)
    flags.DEFINE_integer("seed", 0, "Seed of the fold assignment.")
    cli_flags.define_init_model()  # every fold (and --final) starts from these weights
    flags.DEFINE_bool("deterministic", False, "Seeded, ordered input and op determinism in "
                      "training (repeatable bit for bit).")
    flags.DEFINE_list("only_folds", [], "Run only these folds (0-based, comma list), e.g. one "
                      "per machine on a shared gs:// workdir; the reports are written by the "
                      "run that finds every fold finished.")
    flags.DEFINE_bool("overwrite", False, "Redo every fold even when its outputs exist.")
    flags.DEFINE_enum("final", "no", ["no", "also", "only"], "also / only: train the recipe on "
                      "every image (the config's valid_ids images validate, else the photos "
                      "of the first subject of each dataset) into WORKDIR/final/model, first.")
    flags.DEFINE_bool("robustness", False, "Also score the held-out photos resized by 0.75 "
                      "and 1.5, recoloured and JPEG-compressed (quality 70) with their fold's "
                      "model: W/cv_robustness.csv and a table in the report.")
    flags.DEFINE_bool("quiet", False, "No per-epoch lines.")


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("config", "workdir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    inputs = source_flags.sources_from_flags()
    if not inputs:
        raise app.UsageError("give the photos: --source NAME:DIR (repeatable), --stare_dir, "
                             "--dataset_dir with --layout, --images_dir with --masks_dir, "
                             "or --manifest")
    try:
        only_folds = [int(f) for f in FLAGS.only_folds]
    except ValueError:
        raise app.UsageError(f"--only_folds {','.join(FLAGS.only_folds)}: give fold "
                             "numbers, e.g. --only_folds 0,3") from None
    outside = [str(f) for f in only_folds if not 0 <= f < FLAGS.folds]
    if outside:
        raise app.UsageError(f"--only_folds {','.join(outside)}: the folds are "
                             f"0-{FLAGS.folds - 1}")
    config = tool_config.load_config({"train.deterministic": FLAGS.deterministic or None,
                                      "train.init_model": cli_flags.init_model_value()})
    options = stages.RunOptions(overwrite=FLAGS.overwrite, verbose=0 if FLAGS.quiet else 2)
    command = cli_app.command_line()
    start = time.time()
    try:
        overall = run_cv(config, inputs, FLAGS.workdir, FLAGS.folds, FLAGS.seed,
                         options, command, final=FLAGS.final, robustness=FLAGS.robustness,
                         only_folds=only_folds)
    except (stages.StageError, dataset_info.DatasetError, model_info.ModelDirError,
            FileNotFoundError, datasets_lib.InputDirError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    if not overall and only_folds:
        print(f"vessel-cv: fold(s) {','.join(map(str, only_folds))} finished in "
              f"{FLAGS.workdir} ({time.time() - start:.0f} s)")
        return 0
    if not overall:
        print(f"vessel-cv: final model in {storage.join(FLAGS.workdir, FINAL_DIR, 'model')} "
              f"({time.time() - start:.0f} s)")
        return 0
    print(f"vessel-cv: F1 inside the FOV {overall['fov_dice'][0]:.4f} +- "
          f"{overall['fov_dice'][1]:.4f} over {FLAGS.folds} folds; report: "
          f"{storage.join(FLAGS.workdir, CV_REPORT)} ({time.time() - start:.0f} s)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs vessel-cv in this process (tests, notebooks); argv without the program name."""
    args = ["vessel-cv", *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, _main, args)


def run() -> None:
    """Console entry point `vessel-cv`."""
    cli_app.run(__name__, __doc__, define_flags, _main)


if __name__ == "__main__":
    run()

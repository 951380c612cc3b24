r"""`vessel-cv`: K-fold cross-validation BY IMAGE, as one command.

    vessel-cv --config configs/stare_small.config --stare_dir ../shared/data/stare \
        --workdir runs/cv --folds 7

The images are shuffled with `--seed` and cut into K folds. For fold f:
  test   the fold's images (never used for training or selection),
  valid  one image of the next fold (model selection and the threshold only),
  train  every other image.
Each fold runs vessel-run's stages into W/fold_<f>/ (preprocess with these ids, train),
then segments its held-out photos at native resolution and scores them
(W/fold_<f>/segment/metrics.csv, threshold from the fold's model_info.json).
At the end:
  W/cv_metrics.csv   one row per held-out image (fold, image, metrics), then mean and std
  W/cv_report.md     per-fold and overall F1 inside the FOV and over the whole image, AUC,
                     sensitivity, specificity, accuracy, training time per fold, the config
A fold whose metrics.csv exists is skipped on rerun (a fold interrupted while training
resumes from its last finished epoch); `--overwrite` redoes every fold.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import resource
import sys
import time
from typing import Optional, Sequence

import numpy as np
from absl import app, flags

from tiled_vessel_seg import cli_app, storage
from tiled_vessel_seg.configs import tool_config

FLAGS = flags.FLAGS

CV_METRICS = "cv_metrics.csv"
CV_REPORT = "cv_report.md"
FOLD_FILE = "fold.json"
METRICS = ("dice", "auc", "sensitivity", "specificity", "accuracy", "iou")


@dataclasses.dataclass(frozen=True)
class Fold:
    """One fold: which image ids play which role (each id in exactly one role)."""
    index: int
    test_ids: tuple[str, ...]
    valid_id: str
    train_ids: tuple[str, ...]


def assign_folds(image_ids: Sequence[str], folds: int, seed: int = 0) -> list[Fold]:
    """Splits image ids into `folds` folds by image, deterministically for `seed`.

    The sorted ids are permuted by numpy's default_rng(seed) and cut into near-equal
    consecutive chunks (np.array_split); fold f tests chunk f and validates on the first
    image of chunk f+1 (cyclically), so with K = N every image validates once.
    """
    ids = sorted(set(image_ids))
    if len(ids) != len(image_ids):
        raise ValueError("image ids must be unique")
    if folds < 2:
        raise ValueError(f"--folds must be >= 2, got {folds}")
    if len(ids) < folds:
        raise ValueError(f"{len(ids)} images cannot make {folds} folds")
    if len(ids) - -(-len(ids) // folds) < 2:
        raise ValueError(f"{len(ids)} images in {folds} folds leave fewer than 2 images "
                         "to train and validate on")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    chunks = [tuple(str(x) for x in c) for c in np.array_split(np.array(order, object), folds)]
    result = []
    for f, test in enumerate(chunks):
        valid = chunks[(f + 1) % folds][0]
        train = tuple(i for i in order if i not in test and i != valid)
        result.append(Fold(f, test, valid, train))
    return result


def fold_dir(workdir: str, fold: Fold) -> str:
    return os.path.join(workdir, f"fold_{fold.index}")


def fold_config(config, fold: Fold):
    """`config` with the fold's split by image (valid_ids / test_ids of [preprocess])."""
    from tiled_vessel_seg.configs import config_file
    return config_file.with_overrides(config, {"preprocess.valid_ids": (fold.valid_id,),
                                               "preprocess.test_ids": fold.test_ids})


def _segment_files():
    from tiled_vessel_seg.inference.segment import segment_files
    return segment_files


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_fold(config, fold: Fold, stare_dir: str, workdir: str, pairs, options,
             say=print) -> dict:
    """Preprocess, train, segment and score one fold; returns its fold.json record."""
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.pipeline import run as run_lib
    from tiled_vessel_seg import model_info
    from tiled_vessel_seg.trainer import callbacks
    paths = run_lib.RunPaths(workdir=fold_dir(workdir, fold), stare_dir=stare_dir)
    record_path = os.path.join(paths.workdir, FOLD_FILE)
    if (not options.overwrite and os.path.exists(paths.metrics_csv)
            and os.path.exists(record_path)):
        say(f"skipped: {paths.metrics_csv} exists")
        with open(record_path, encoding="utf-8") as f:
            return json.load(f)
    os.makedirs(paths.workdir, exist_ok=True)
    config = fold_config(config, fold)
    say("preprocess: " + run_lib.stage_preprocess(config, paths, options))
    start, cpu = time.time(), _cpu_seconds()
    say("train: " + run_lib.stage_train(config, paths, options))
    train_seconds, train_cpu = time.time() - start, _cpu_seconds() - cpu
    tiled = config.tiledinfer
    predictor = predictor_lib.load_predictor(
        paths.model_dir, overlap=tiled.overlap, batch_size=tiled.batch_size,
        blend=tiled.blend, tta=tiled.tta, threshold=None, input_scale="native")
    if config.train.select_image_threshold:
        threshold, f1 = store_image_threshold(
            predictor, paths.model_dir, [p for p in pairs if p.image_id == fold.valid_id])
        say(f"threshold {threshold:.2f} maximises F1 inside the FOV of {fold.valid_id} "
            f"({f1:.4f})")
    held_out = [p for p in pairs if p.image_id in fold.test_ids]
    summary = _segment_files()(
        predictor, [p.image_path for p in held_out], paths.segment_dir, overlay=True,
        save_probabilities=True, truths={p.image_id: p.mask_path for p in held_out},
        overwrite=True, progress=False)
    if summary.failed:
        raise run_lib.StageError("could not segment " + "; ".join(
            f"{p}: {r}" for p, r in summary.failed))
    history = callbacks.read_history(os.path.join(paths.model_dir, callbacks.HISTORY_FILE))
    val_loss = history.get("val_loss", [])
    record = {**dataclasses.asdict(fold), "train_seconds": round(train_seconds, 1),
              "train_cpu_seconds": round(train_cpu, 1),
              "epochs": len(history.get("epoch", [])),
              "best_epoch": int(np.nanargmin(val_loss)) + 1 if val_loss else None,
              "threshold": model_info.read_model_info(paths.model_dir).threshold}
    storage.write_text_atomic(record_path, json.dumps(record, indent=2))
    say(f"segment: {len(summary.metrics)} held-out image(s) scored at threshold "
        f"{predictor.threshold:.2f} -> {paths.metrics_csv}")
    return record


def store_image_threshold(predictor, model_dir: str, valid_pairs) -> tuple[float, float]:
    """Segments the validation photos whole (the predictor's tiling and TTA, native size)
    and stores in model_info.json the threshold maximising F1 over their FOV pixels;
    sets it on `predictor` too. Returns (threshold, that F1)."""
    from tiled_vessel_seg import imaging, model_info
    from tiled_vessel_seg import fov
    from tiled_vessel_seg.trainer import metrics
    bins = metrics.THRESHOLD_BINS
    positives, negatives = np.zeros(bins, np.int64), np.zeros(bins, np.int64)
    for pair in valid_pairs:
        image = imaging.read_image(pair.image_path)
        truth = imaging.read_mask(pair.mask_path) > 0  # uint8 {0, 1} -> bool
        region = fov.fov_mask(image)
        probabilities = predictor(image)[0].numpy()
        index = np.minimum((probabilities[region] * bins).astype(np.int64), bins - 1)
        positives += np.bincount(index[truth[region]], minlength=bins)
        negatives += np.bincount(index[~truth[region]], minlength=bins)
    threshold, f1 = metrics.f1_by_threshold(positives, negatives)
    info = model_info.read_model_info(model_dir)
    model_info.write_model_info(model_dir, dataclasses.replace(info, threshold=threshold))
    predictor.threshold = threshold
    return threshold, f1


FINAL_DIR = "final"


def train_final(config, stare_dir: str, workdir: str, pairs, options, say=print) -> str:
    """The recipe trained on every image (the config's first valid_ids image validates,
    else the first id) into W/final/model, with the validation threshold; returns the
    model dir. Skipped when finished."""
    from tiled_vessel_seg import model_info
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.pipeline import run as run_lib
    ids = sorted(p.image_id for p in pairs)
    valid = next((i for i in config.preprocess.valid_ids if i in ids), ids[0])
    fold = Fold(-1, (), valid, tuple(i for i in ids if i != valid))
    paths = run_lib.RunPaths(workdir=os.path.join(workdir, FINAL_DIR), stare_dir=stare_dir)
    done = os.path.join(paths.workdir, FOLD_FILE)
    if os.path.exists(done) and not options.overwrite:
        say(f"skipped: {paths.model_dir} is finished")
        return paths.model_dir
    config = fold_config(config, fold)
    say("preprocess: " + run_lib.stage_preprocess(config, paths, options))
    start = time.time()
    say("train: " + run_lib.stage_train(config, paths, options))
    seconds = time.time() - start
    tiled = config.tiledinfer
    if config.train.select_image_threshold:
        predictor = predictor_lib.load_predictor(
            paths.model_dir, overlap=tiled.overlap, batch_size=tiled.batch_size,
            blend=tiled.blend, tta=tiled.tta, threshold=None, input_scale="native")
        threshold, f1 = store_image_threshold(predictor, paths.model_dir,
                                              [p for p in pairs if p.image_id == valid])
        say(f"threshold {threshold:.2f} maximises F1 inside the FOV of {valid} ({f1:.4f})")
    record = {**dataclasses.asdict(fold), "train_seconds": round(seconds, 1),
              "threshold": model_info.read_model_info(paths.model_dir).threshold}
    storage.write_text_atomic(done, json.dumps(record, indent=2))
    return paths.model_dir


def read_fold_rows(workdir: str, fold: Fold) -> list[dict]:
    """The fold's per-image metric rows from its segment/metrics.csv."""
    from tiled_vessel_seg.pipeline import report
    rows = report.read_metrics_csv(os.path.join(fold_dir(workdir, fold), "segment",
                                                "metrics.csv"))
    return [{"fold": fold.index, "image": image, **values}
            for image, values in rows.items() if image not in ("mean", "std")]


def metric_columns() -> list[str]:
    return [m for m in METRICS] + [f"fov_{m}" for m in METRICS]


def write_cv_metrics(path: str, rows: list[dict]) -> None:
    """fold,image,<metrics> per held-out image; then mean and std (over images) rows."""
    columns = metric_columns()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["fold", "image"] + columns)
    for row in rows:
        writer.writerow([row["fold"], row["image"]] + [f"{row[c]:.6f}" for c in columns])
    for name, fn in (("mean", np.nanmean), ("std", np.nanstd)):
        writer.writerow(["", name] + [f"{fn([r[c] for r in rows]):.6f}" for c in columns])
    storage.write_text_atomic(path, buf.getvalue())


def fold_means(rows: list[dict], folds: list[Fold]) -> dict[int, dict[str, float]]:
    """{fold: {metric: mean over its held-out images}}."""
    return {fold.index: {c: float(np.nanmean([r[c] for r in rows if r["fold"] == fold.index]))
                         for c in metric_columns()} for fold in folds}


def write_cv_report(path: str, rows: list[dict], folds: list[Fold], records: list[dict],
                    config, command: str) -> dict[str, tuple[float, float]]:
    """Markdown report; returns {metric: (mean, std) over folds}."""
    from tiled_vessel_seg.configs import to_dict
    per_fold = fold_means(rows, folds)
    overall = {c: (float(np.mean([per_fold[f.index][c] for f in folds])),
                   float(np.std([per_fold[f.index][c] for f in folds])))
               for c in metric_columns()}
    minutes = [r["train_seconds"] / 60 for r in records]
    lines = [
        f"# Cross-validation by image: {len(folds)} folds, {len(rows)} held-out images",
        "", f"Command: `{command}`", "",
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
            f"| {fold.index} | {' '.join(fold.test_ids)} | {fold.valid_id} | "
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
              "(model_info.json); the FOV is computed from the photo (tiled_vessel_seg/fov.py).",
              "", "## Config", "", "```ini"]
    for section, values in to_dict(config).items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {tuple(v) if isinstance(v, list) else v!r}"
                  for k, v in values.items()]
        lines.append("")
    lines.append("```")
    storage.write_text_atomic(path, "\n".join(lines) + "\n")
    return overall


def run_cv(config, stare_dir: str, workdir: str, folds: int, seed: int = 0,
           options=None, command: str = "vessel-cv", say=print, final: str = "no",
           robustness: bool = False) -> dict:
    """Runs every fold (skipping finished ones), writes cv_metrics.csv and cv_report.md;
    returns {metric: (mean, std) over folds}. final "also" / "only": (also) train the
    recipe on every image into W/final/model (train_final); "only" returns {}.
    robustness: also score every fold's held-out photos resized, recoloured and JPEG'd
    (pipeline/robustness.py) into W/cv_robustness.csv and a table in the report."""
    from tiled_vessel_seg.beam_jobs import inputs
    from tiled_vessel_seg.pipeline import run as run_lib
    options = options or run_lib.RunOptions()
    if not os.path.isdir(stare_dir):
        raise run_lib.StageError(f"--stare_dir {stare_dir}: not a folder")
    pairs, problems = inputs.discover_stare(stare_dir)
    for problem in problems:
        say(f"ignored: {problem}")
    os.makedirs(workdir, exist_ok=True)
    if final in ("also", "only"):
        model_dir = train_final(config, stare_dir, workdir, pairs, options,
                                say=lambda m: say(f"[final model] {m}"))
        say(f"[final model] {model_dir}")
        if final == "only":
            return {}
    assignment = assign_folds([p.image_id for p in pairs], folds, seed)
    records = []
    for fold in assignment:
        prefix = f"[fold {fold.index + 1}/{folds}: test {' '.join(fold.test_ids)}]"
        records.append(run_fold(config, fold, stare_dir, workdir, pairs, options,
                                say=lambda m: say(f"{prefix} {m}")))
    rows = [r for fold in assignment for r in read_fold_rows(workdir, fold)]
    write_cv_metrics(os.path.join(workdir, CV_METRICS), rows)
    overall = write_cv_report(os.path.join(workdir, CV_REPORT), rows, assignment, records,
                              config, command)
    if robustness:
        from tiled_vessel_seg.pipeline import robustness as robustness_lib
        say("[robustness] segmenting the held-out photos changed 4 ways")
        summary = robustness_lib.evaluate_folds(config, workdir, assignment, pairs)
        report = os.path.join(workdir, CV_REPORT)
        with open(report, encoding="utf-8") as f:
            text = f.read()
        table = ["## Robustness: held-out photos changed", "",
                 f"F1 inside the FOV, mean +- std over folds ({robustness_lib.ROBUSTNESS_CSV}; "
                 "pipeline/robustness.py says what each change is).", "",
                 "| " + " | ".join(robustness_lib.PERTURBATIONS) + " |",
                 "|" + "---|" * len(robustness_lib.PERTURBATIONS),
                 "| " + " | ".join(f"{summary[n][0]:.3f} +- {summary[n][1]:.3f}"
                                   for n in robustness_lib.PERTURBATIONS) + " |", ""]
        marker = "## Config"
        storage.write_text_atomic(report, text.replace(marker, "\n".join(table) + "\n" + marker, 1))
    return overall


def define_flags() -> None:
    """vessel-cv's own flags (--config, --set and --verbose come from cli_app)."""
    flags.DEFINE_string("stare_dir", None, "Photos + labels in STARE layout (stare-images/, "
                        "labels-ah/). Required.")
    flags.DEFINE_string("workdir", None, "Folder for the folds and reports. Required.")
    flags.DEFINE_integer("folds", 5, "K; K = number of images is leave-one-out.", lower_bound=2)
    flags.DEFINE_integer("seed", 0, "Seed of the fold assignment.")
    flags.DEFINE_bool("deterministic", False, "Seeded, ordered input and op determinism in "
                      "training (repeatable bit for bit).")
    flags.DEFINE_bool("overwrite", False, "Redo every fold even when its outputs exist.")
    flags.DEFINE_enum("final", "no", ["no", "also", "only"], "also / only: train the recipe on "
                      "every image (the config's valid_ids image validates) into "
                      "WORKDIR/final/model, first.")
    flags.DEFINE_bool("robustness", False, "Also score the held-out photos resized by 0.75 "
                      "and 1.5, recoloured and JPEG-compressed (quality 70) with their fold's "
                      "model: W/cv_robustness.csv and a table in the report.")
    flags.DEFINE_bool("quiet", False, "No per-epoch lines.")


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("config", "stare_dir", "workdir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    from tiled_vessel_seg.pipeline import run as run_lib
    from tiled_vessel_seg.tfrecords.dataset_info import DatasetError
    from tiled_vessel_seg.model_info import ModelDirError
    config = tool_config.load_config({"train.deterministic": FLAGS.deterministic or None})
    options = run_lib.RunOptions(overwrite=FLAGS.overwrite, verbose=0 if FLAGS.quiet else 2)
    command = " ".join(["vessel-cv"] + sys.argv[1:])
    start = time.time()
    try:
        overall = run_cv(config, FLAGS.stare_dir, FLAGS.workdir, FLAGS.folds, FLAGS.seed,
                         options, command, final=FLAGS.final, robustness=FLAGS.robustness)
    except (run_lib.StageError, DatasetError, ModelDirError, FileNotFoundError,
            ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    if not overall:
        print(f"vessel-cv: final model in {os.path.join(FLAGS.workdir, FINAL_DIR, 'model')} "
              f"({time.time() - start:.0f} s)")
        return 0
    print(f"vessel-cv: F1 inside the FOV {overall['fov_dice'][0]:.4f} +- "
          f"{overall['fov_dice'][1]:.4f} over {FLAGS.folds} folds; report: "
          f"{os.path.join(FLAGS.workdir, CV_REPORT)} ({time.time() - start:.0f} s)")
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

"""vessel-cv over several datasets (issue 17 section 2): per-dataset mean +- std and pooled
F1 in cv_metrics.csv and cv_report.md, CHASE_DB1's second observer as its own row, and a
tiny two-dataset cross-validation end to end (synthetic photos under STARE and CHASE_DB1
names)."""
import csv
import json
import os
import pathlib

import numpy as np
import pytest

from tiled_vessel_seg import datasets, fov, imaging, sources
from tiled_vessel_seg.pipeline import cv
from tiled_vessel_seg.synthetic import chase_layout, stare_layout

REAL_DATA = pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _row(fold, dataset, image, tp, fp, fn, tn, auc=0.9):
    """A per-image row as read_fold_rows returns it, metrics from the counts by hand."""
    dice = 2 * tp / (2 * tp + fp + fn)
    values = {"dice": dice, "iou": tp / (tp + fp + fn), "sensitivity": tp / (tp + fn),
              "specificity": tn / (tn + fp), "accuracy": (tp + tn) / (tp + fp + fn + tn),
              "auc": auc}
    counts = {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    return {"fold": fold, "dataset": dataset, "image": image, **values,
            **{f"fov_{k}": v for k, v in values.items()},
            "counts": counts, "fov_counts": counts}


ROWS = [_row(0, "stare", "im0001", 30, 10, 20, 940), _row(1, "stare", "im0002", 5, 5, 40, 950),
        _row(0, "chase_db1", "Image_01L", 60, 30, 10, 900),
        _row(1, "chase_db1", "Image_02R", 10, 0, 0, 990)]
OBSERVERS = [_row(0, "chase_db1 2nd observer", "Image_01L", 50, 20, 20, 910, auc=np.nan)]


def test_per_dataset_mean_std_and_pooled_f1_by_hand(tmp_path):
    path = tmp_path / cv.CV_METRICS
    cv.write_cv_metrics(str(path), ROWS, OBSERVERS)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    summary = {(r["dataset"], r["image"]): r for r in table if not r["fold"]}
    # stare: F1 60/90 and 10/55; pooled 2*35 / (2*35 + 15 + 60) = 70/145.
    f1 = np.array([60 / 90, 10 / 55])
    assert float(summary["stare", "mean"]["fov_dice"]) == pytest.approx(f1.mean(), abs=1e-6)
    assert float(summary["stare", "std"]["fov_dice"]) == pytest.approx(f1.std(), abs=1e-6)
    assert float(summary["stare", "pooled"]["fov_dice"]) == pytest.approx(70 / 145, abs=1e-6)
    assert summary["stare", "pooled"]["fov_auc"] == ""  # no pooled AUC from counts
    # chase_db1: pooled 2*70 / (140 + 30 + 10); all: every image of both datasets.
    assert float(summary["chase_db1", "pooled"]["dice"]) == pytest.approx(140 / 180, abs=1e-6)
    assert float(summary[cv.ALL, "pooled"]["dice"]) == pytest.approx(
        2 * 105 / (2 * 105 + 45 + 70), abs=1e-6)
    all_f1 = np.array([r["dice"] for r in ROWS])
    assert float(summary[cv.ALL, "mean"]["dice"]) == pytest.approx(all_f1.mean(), abs=1e-6)
    # The observer: its own summary rows and its per-image row, not in "all".
    assert float(summary["chase_db1 2nd observer", "pooled"]["fov_dice"]) == pytest.approx(
        100 / 140, abs=1e-6)
    assert [(r["dataset"], r["image"]) for r in table if r["fold"]] == [
        (r["dataset"], r["image"]) for r in ROWS + OBSERVERS]
    lines = cv.dataset_table(ROWS, OBSERVERS)
    stare = next(line for line in lines if line.startswith("| stare |"))
    assert f"| {f1.mean():.3f} +- {f1.std():.3f} | {70 / 145:.3f} |" in stare
    observer = next(line for line in lines if line.startswith("| chase_db1 2nd observer |"))
    assert observer.startswith("| chase_db1 2nd observer | 1 | 0.714 +- 0.000 | 0.714 |")
    assert "| n/a |" in observer  # a binary map has no AUC


def test_second_observer_scored_against_the_first_inside_the_fov(tmp_path):
    chase = tmp_path / "chase"
    # 3 children in 3 folds: one is held out, one validates (both eyes), one trains.
    chase_layout.write_synthetic_chase(str(chase), 3, width=64, height=56, seed=5)
    pairs, problems = sources.find_pairs(datasets.Source(root=str(chase), layout="chase_db1"))
    assert problems == []
    folds = cv.assign_folds([p.image_id for p in pairs], 3, 0,
                            {p.image_id: sources.subject_key(p) for p in pairs})
    rows = cv.observer_rows(pairs, folds)
    assert [r["image"] for r in rows] == [p.image_id for p in pairs]
    for row, pair in zip(rows, pairs):
        image = imaging.read_image(pair.image_path)
        first = imaging.read_mask(pair.mask_path) > 0
        second = imaging.read_mask(pair.second_mask_path) > 0
        region = fov.fov_mask(image)
        a, b = first[region], second[region]
        assert row["fov_dice"] == pytest.approx(2 * np.sum(a & b) / (a.sum() + b.sum()),
                                                abs=1e-9)
        assert row["dice"] == pytest.approx(
            2 * np.sum(first & second) / (first.sum() + second.sum()), abs=1e-9)
        assert row["dataset"] == "chase_db1 2nd observer"
        assert row["fold"] == next(f.index for f in folds if pair.image_id in f.test_ids)
        assert np.isnan(row["fov_auc"]) and np.isnan(row["auc"])
        assert row["fov_counts"] == {"tp": int(np.sum(a & b)), "fp": int(np.sum(b & ~a)),
                                     "fn": int(np.sum(a & ~b)), "tn": int(np.sum(~a & ~b))}


TINY = ["preprocess.scale=1", "preprocess.tile_size=32", "preprocess.tile_stride=32",
        "preprocess.augmentations=[]", "preprocess.shards=1",
        "model.base_filters=2", "model.num_layers=2", "model.base_kernels=(3,3)",
        "model.dilation=(1,1)", "model.dropout_rate=0.0", "model.learning_rate=0.01",
        "train.batch_size=4", "train.steps_per_epoch=2", "train.epochs=1",
        "train.validation_steps=1", 'train.dataset_weights={"stare": 0.5, "chase_db1": 0.5}',
        "tiledinfer.overlap=8", "tiledinfer.tta='none'"]


@pytest.mark.slow  # two folds trained and scored: ~2 min on the 2 loaded cores
def test_tiny_two_dataset_cross_validation(tmp_path):
    stare = tmp_path / "stare"
    stare_layout.write_synthetic_stare(str(stare), 4, width=64, height=56, seed=1)
    chase = tmp_path / "chase"
    # 3 children in 2 folds: the fold holding out one child validates on another (both
    # eyes) and trains on the third; the other fold has no CHASE_DB1 child left to train.
    chase_layout.write_synthetic_chase(str(chase), 3, width=64, height=56, seed=2)
    work = tmp_path / "cv"
    argv = ["--config", os.devnull, "--source", f"stare:{stare}", "--source",
            f"chase_db1:{chase}", "--workdir", str(work), "--folds", "2", "--quiet",
            "--deterministic"] + [a for item in TINY for a in ("--set", item)]
    assert cv.main(argv) == 0
    with open(work / cv.CV_METRICS, newline="") as f:
        table = list(csv.DictReader(f))
    images = [r for r in table if r["fold"] and "observer" not in r["dataset"]]
    held = {r["image"]: (r["dataset"], int(r["fold"])) for r in images}
    assert sorted(held) == ["Image_01L", "Image_01R", "Image_02L", "Image_02R", "Image_03L",
                            "Image_03R", "im0001", "im0002", "im0003", "im0004"]
    assert {held[i][0] for i in held if i.startswith("Image")} == {"chase_db1"}
    for child in ("01", "02", "03"):  # both eyes held out by the same fold
        assert held[f"Image_{child}L"][1] == held[f"Image_{child}R"][1]
    observers = [r for r in table if r["fold"] and r["dataset"] == "chase_db1 2nd observer"]
    assert len(observers) == 6
    summaries = {(r["dataset"], r["image"]) for r in table if not r["fold"]}
    for name in ("stare", "chase_db1", cv.ALL, "chase_db1 2nd observer"):
        assert {(name, k) for k in ("mean", "std", "pooled")} <= summaries
    # Each dataset scored in its own folder; the per-dataset mean is over its images.
    for fold in (0, 1):
        assert (work / f"fold_{fold}" / "segment" / "stare").is_dir()
    stare_f1 = [float(r["fov_dice"]) for r in images if r["dataset"] == "stare"]
    mean = next(float(r["fov_dice"]) for r in table
                if (r["dataset"], r["image"]) == ("stare", "mean"))
    assert mean == pytest.approx(np.mean(stare_f1), abs=1e-6)
    report = (work / cv.CV_REPORT).read_text()
    assert "## Per dataset" in report and "| chase_db1 2nd observer | 6 |" in report
    from tiled_vessel_seg.tfrecords import dataset_info
    one_child = next(f for f in (0, 1)
                     if sum(held[i] == ("chase_db1", f) for i in held) == 2)
    fold = json.loads((work / f"fold_{one_child}" / cv.FOLD_FILE).read_text())
    left, right = sorted(i for i in fold["valid_ids"] if i.startswith("Image"))
    assert (left[:-1], left[-1], right[-1]) == (right[:-1], "L", "R")  # one child, both eyes
    info = dataset_info.read_dataset_info(str(work / f"fold_{one_child}" / "data"))
    assert sorted(info.splits["valid"].datasets) == ["chase_db1", "stare"]
    assert sorted(info.splits["train"].datasets) == ["chase_db1", "stare"]


@pytest.mark.real_data
def test_real_stare_and_chase_db1_sources_folds_and_observer():
    stare, chase = REAL_DATA / "stare", REAL_DATA / "chase_db1"
    if not (stare / "stare-images").is_dir() or not any(chase.glob("Image_*.jpg")):
        pytest.skip(f"real STARE / CHASE_DB1 samples not found under {REAL_DATA}")
    ignored: list = []
    pairs, problems = sources.find_pairs(
        [sources.parse_source(f"stare:{stare}"), sources.parse_source(f"chase_db1:{chase}")],
        ignored)
    assert problems == [] and len(pairs) == 27
    assert {os.path.basename(i.path) for i in ignored} >= {"README.md", "SHA256SUMS"}
    subjects = {p.image_id: sources.subject_key(p) for p in pairs}
    assert len(set(subjects.values())) == 7 + 10
    folds = cv.assign_folds([p.image_id for p in pairs], 5, 0, subjects,
                            {p.image_id: p.dataset for p in pairs})
    for fold in folds:
        held = {subjects[i] for i in fold.test_ids}
        assert not held & {subjects[i] for i in fold.train_ids + fold.valid_ids}
        assert 5 <= len(fold.test_ids) <= 6
    one = [p for p in pairs if p.image_id == "Image_01L"]
    row = cv.observer_rows(one, folds)[0]
    assert 0.6 < row["fov_dice"] < 0.9  # two annotators agree at about 0.77-0.80


@pytest.mark.real_data
@pytest.mark.slow  # the Beam job over 27 real photographs: ~1 min
def test_real_vessel_preprocess_with_two_sources(tmp_path):
    stare, chase = REAL_DATA / "stare", REAL_DATA / "chase_db1"
    if not (stare / "stare-images").is_dir() or not any(chase.glob("Image_*.jpg")):
        pytest.skip(f"real STARE / CHASE_DB1 samples not found under {REAL_DATA}")
    from tiled_vessel_seg.beam_jobs import cli
    from tiled_vessel_seg.tfrecords import dataset_info
    out = tmp_path / "out"
    assert cli.main(["--source", f"stare:{stare}", "--source", f"chase_db1:{chase}",
                     "--output_dir", str(out), "--config", os.devnull,
                     "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=256",
                     "--set", "preprocess.tile_stride=256", "--augment", "none",
                     "--set", "preprocess.min_vessel_fraction=0.05",
                     "--set", "preprocess.shards=1",
                     "--direct_running_mode", "in_memory", "--direct_num_workers", "1"]) == 0
    info = dataset_info.read_dataset_info(str(out))
    totals = {}
    for split_info in info.splits.values():
        for name, counts in split_info.datasets.items():
            totals[name] = totals.get(name, 0) + counts["images"]
    assert totals == {"chase_db1": 20, "stare": 7}
    assignment = info.parameters.split_assignment
    for child in range(1, 11):
        assert assignment[f"Image_{child:02d}L"] == assignment[f"Image_{child:02d}R"]

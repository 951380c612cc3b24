"""vessel-cv: fold assignment by image, and a tiny end-to-end cross-validation."""
import csv
import itertools
import os

import numpy as np
import pytest

from tiled_vessel_seg.pipeline import cv

IDS = [f"im{n:04d}" for n in (1, 2, 3, 4, 5, 44, 77)]


@pytest.mark.parametrize("n, k", [(7, 7), (7, 3), (4, 2), (10, 5), (5, 4)])
def test_every_image_held_out_once_and_in_one_role_per_fold(n, k):
    ids = IDS[:n] if n <= len(IDS) else [f"x{i}" for i in range(n)]
    folds = cv.assign_folds(ids, k, seed=3)
    assert len(folds) == k
    held_out = [i for f in folds for i in f.test_ids]
    assert sorted(held_out) == sorted(ids)  # each exactly once
    for fold in folds:
        roles = [set(fold.test_ids), {fold.valid_id}, set(fold.train_ids)]
        for a, b in itertools.combinations(roles, 2):
            assert not a & b, fold
        assert set().union(*roles) == set(ids)
        assert fold.train_ids and fold.test_ids
    sizes = [len(f.test_ids) for f in folds]
    assert max(sizes) - min(sizes) <= 1


def test_deterministic_for_a_seed_and_different_between_seeds():
    assert cv.assign_folds(IDS, 7, seed=0) == cv.assign_folds(list(reversed(IDS)), 7, seed=0)
    orders = {tuple(f.test_ids[0] for f in cv.assign_folds(IDS, 7, seed=s)) for s in range(5)}
    assert len(orders) > 1
    # Leave-one-out: every image also validates exactly once.
    assert sorted(f.valid_id for f in cv.assign_folds(IDS, 7, seed=0)) == sorted(IDS)


@pytest.mark.parametrize("ids, k, match", [
    (IDS[:3], 4, "cannot make"), (IDS[:3], 1, ">= 2"), (IDS[:2], 2, "leave none to train on"),
    (["a", "a", "b", "c"], 2, "unique")])
def test_refuses_impossible_assignments(ids, k, match):
    with pytest.raises(ValueError, match=match):
        cv.assign_folds(ids, k)


def test_perturbations_by_hand():
    from tiled_vessel_seg.pipeline import robustness
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    truth = np.zeros((40, 60), bool)
    truth[:, 20:24] = True  # a 4 px vertical vessel
    same = robustness.perturb("as is", image, truth)
    assert same[0] is image and same[1] is truth
    small, small_truth = robustness.perturb("scale 0.75", image, truth)
    assert small.shape == (30, 45, 3) and small_truth.shape == (30, 45)
    assert small_truth[:, 15:18].all() and small_truth.sum() == 30 * 3
    big, big_truth = robustness.perturb("scale 1.5", image, truth)
    assert big.shape == (60, 90, 3) and big_truth[:, 31:35].all()
    colour, colour_truth = robustness.perturb("colour", image, truth)
    expected = np.round(np.clip(image / 255.0 * np.array([1.08, 0.92, 0.80]), 0, 1) ** 1.2
                        * 255)
    assert np.abs(colour.astype(int) - expected).max() <= 1 and colour_truth is truth
    jpeg, _ = robustness.perturb("jpeg 70", image, truth)
    assert jpeg.shape == image.shape and 0 < np.abs(jpeg.astype(int) - image).mean() < 60
    with pytest.raises(ValueError, match="unknown perturbation"):
        robustness.perturb("blur", image, truth)


TINY = ["preprocess.scale=1", "preprocess.tile_size=32", "preprocess.tile_stride=32",
        "preprocess.augmentations=['hflip']", "preprocess.shards=1",
        "model.image_height=32", "model.image_width=32", "model.base_filters=2",
        "model.num_layers=2", "model.base_kernels=(3,3)", "model.dilation=(1,1)",
        "model.dropout_rate=0.0", "model.learning_rate=0.01", "model.architecture='wnet'",
        "train.batch_size=4", "train.steps_per_epoch=3", "train.epochs=1",
        "train.select_image_threshold=True", "tiledinfer.overlap=8", "tiledinfer.tta='none'"]


@pytest.mark.slow  # a whole vessel-cv: preprocess, train and score every fold
def test_tiny_cross_validation_end_to_end_and_resume(tmp_path, capsys):
    from tiled_vessel_seg.synthetic import stare_layout
    stare = tmp_path / "stare"
    stare_layout.write_synthetic_stare(str(stare), 4, width=64, height=56, seed=1)
    work = tmp_path / "cv"
    argv = ["--config", os.devnull, "--stare_dir", str(stare), "--workdir", str(work),
            "--folds", "2", "--quiet", "--deterministic", "--final", "also",
            "--robustness"] + [
                a for item in TINY for a in ("--set", item)]
    assert cv.main(argv) == 0
    folds = cv.assign_folds([f"im{n:04d}" for n in range(1, 5)], 2, seed=0)
    with open(work / cv.CV_METRICS, newline="") as f:
        rows = list(csv.DictReader(f))
    images = [r for r in rows if r["image"] not in ("mean", "std", "pooled")]
    assert {r["dataset"] for r in images} == {"stare"}
    assert sorted(r["image"] for r in images) == [f"im{n:04d}" for n in range(1, 5)]
    for r in images:  # scored in the fold that held it out
        assert r["image"] in folds[int(r["fold"])].test_ids
    f1 = np.array([float(r["fov_dice"]) for r in images])
    # One dataset: its summary rows and those of all images agree.
    for name in ("stare", cv.ALL):
        summary = {r["image"]: r for r in rows if r["dataset"] == name and not r["fold"]}
        assert float(summary["mean"]["fov_dice"]) == pytest.approx(f1.mean(), abs=1e-6)
        assert float(summary["std"]["fov_dice"]) == pytest.approx(f1.std(), abs=1e-6)
    # Each fold's model never saw its held-out images.
    from tiled_vessel_seg.tfrecords import dataset_info
    for fold in folds:
        info = dataset_info.read_dataset_info(str(work / f"fold_{fold.index}" / "data"))
        assert set(info.splits["test"].image_ids) == set(fold.test_ids)
        assert set(info.splits["train"].image_ids) == set(fold.train_ids)
        assert set(info.splits["valid"].image_ids) == {fold.valid_id}
    # The final model: every image, the first validates; its threshold is the one that
    # maximises F1 inside the FOV of that photo (checked against the fold record).
    final = work / "final"
    info = dataset_info.read_dataset_info(str(final / "data"))
    assert set(info.splits["valid"].image_ids) == {"im0001"}
    assert set(info.splits["train"].image_ids) == {"im0002", "im0003", "im0004"}
    from tiled_vessel_seg import model_info
    import json
    threshold = json.loads((final / cv.FOLD_FILE).read_text())["threshold"]
    assert model_info.read_model_info(str(final / "model")).threshold == threshold
    assert 0 < threshold < 1
    report = (work / cv.CV_REPORT).read_text()
    assert "## Robustness" in report and "jpeg 70" in report
    with open(work / "cv_robustness.csv", newline="") as f:
        robust = {r["image"]: r for r in csv.DictReader(f)}
    # "as is" is the plain held-out figure.
    for r in images:
        assert float(robust[r["image"]]["as is"]) == pytest.approx(float(r["fov_dice"]),
                                                                 abs=1e-5)
    assert "F1 inside the FOV" in report and "[model]" in report and "| 1 |" in report
    # A rerun skips both finished folds and rewrites the same figures.
    before = (work / cv.CV_METRICS).read_text()
    capsys.readouterr()
    assert cv.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("skipped:") == 3 and (work / cv.CV_METRICS).read_text() == before
    # --only_folds: with fold 1's record lost, fold 0 alone writes no reports; the run
    # that finishes fold 1 writes them, with the same figures.
    (work / "fold_1" / cv.FOLD_FILE).unlink()
    (work / cv.CV_METRICS).unlink()
    assert cv.main(argv + ["--only_folds", "0"]) == 0
    out = capsys.readouterr().out
    assert "folds 1 not finished" in out and not (work / cv.CV_METRICS).exists()
    assert cv.main(argv + ["--only_folds", "1"]) == 0
    assert (work / cv.CV_METRICS).read_text() == before
    # Fold 1's model was trained by the first run: its training time is that run's epochs'.
    record = json.loads((work / "fold_1" / cv.FOLD_FILE).read_text())
    history = json.loads((work / "fold_1" / "model" / "history.json").read_text())
    assert record["carried_epochs"] == record["epochs"] == len(history["epoch"])
    assert record["train_seconds"] >= round(sum(history["epoch_seconds"]), 1) > 0
    assert (f"(fold 1, {record['epochs']} of its {record['epochs']} epochs)"
            in (work / cv.CV_REPORT).read_text())
    # Its report names the whole run's command, not the last part's.
    command = next(line for line in (work / cv.CV_REPORT).read_text().splitlines()
                   if line.startswith("Command:"))
    assert command == ("Command: `vessel-cv " + " ".join(argv) + "` (its folds run in parts "
                       "with `--only_folds`)")
    assert cv.main(argv + ["--only_folds", "2"]) == 2  # a usage error
    assert "--only_folds 2: the folds are 0-1" in capsys.readouterr().err

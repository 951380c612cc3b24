"""vessel-segment's issue-12 outputs end to end on a fake DRIVE tree (synthetic pixels under
DRIVE's file names): the per-image auto scale decision, FOV masks from files, error maps,
8-bit previews, metrics.json against metrics.csv and numpy; and a manifest run."""
from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("keras")

from tiled_vessel_seg import imaging  # noqa: E402
from tiled_vessel_seg.inference import metrics, metrics_json  # noqa: E402

TILE, OVERLAP, SCALE = 32, 8, 2
W, H = 160, 140  # conftest's synthetic STARE size: the "training photos" of the model


@pytest.fixture(scope="module")
def model_dir(make_tiny_model_dir):
    return pathlib.Path(make_tiny_model_dir(TILE, OVERLAP, scale=SCALE, hidden=4,
                                            source_sizes=[[W, H]]))


def _gif(path, mask01):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask01 * 255).astype(np.uint8)).save(str(path), format="GIF")


def _tif(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(str(path), format="TIFF")


@pytest.fixture(scope="module")
def drive_tree(synthetic_stare_dir, tmp_path_factory):
    """DRIVE/test with 01_test, 02_test at the training size and 03_test enlarged x2."""
    import cv2
    root = tmp_path_factory.mktemp("DRIVE") / "test"
    for n, image_id in ((1, "im0001"), (2, "im0002"), (3, "im0003")):
        photo = imaging.read_image(str(synthetic_stare_dir / "stare-images" / f"{image_id}.ppm.gz"))
        truth = imaging.read_mask(str(synthetic_stare_dir / "labels-ah" / f"{image_id}.ah.ppm.gz"))
        if n == 3:  # already enlarged by the model's scale: auto must not enlarge it again
            photo = imaging.enlarge_image(photo, SCALE)
            truth = cv2.resize(truth, (W * SCALE, H * SCALE), interpolation=cv2.INTER_NEAREST)
        fov = np.zeros(truth.shape, np.uint8)  # a FOV unlike the computed disc
        fov[5:-5, 10:-30] = 1
        _tif(root / "images" / f"{n:02d}_test.tif", photo)
        _gif(root / "1st_manual" / f"{n:02d}_manual1.gif", truth)
        _gif(root / "mask" / f"{n:02d}_test_mask.gif", fov)
    return root


@pytest.fixture(scope="module")
def segment_run(drive_tree, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("segmented")
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.inference.cli", "--model_dir", model_dir,
         "--output_dir", out, "--input", drive_tree / "images", "--masks_dir",
         drive_tree / "1st_manual", "--fov_dir", drive_tree / "mask", "--layout", "drive",
         "--error_map", "--save_probabilities"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def _read_csv(path):
    with open(path, newline="") as f:
        return {row["image"]: {k: float(v) for k, v in row.items() if k != "image"}
                for row in csv.DictReader(f)}


def _truth(drive_tree, n):
    return imaging.read_mask(str(drive_tree / "1st_manual" / f"{n:02d}_manual1.gif")).astype(bool)


def _fov(drive_tree, n):
    return imaging.read_mask(str(drive_tree / "mask" / f"{n:02d}_test_mask.gif")).astype(bool)


def test_auto_scale_is_decided_per_image_and_said(segment_run):
    out, result = segment_run
    assert "01_test: 160x140, input native, x2 in the graph" in result.stderr
    assert "03_test: 320x280, input enlarged (training photos 160x140 x2 = 320x280)" in result.stderr
    assert "fits neither" not in result.stderr
    mask = imaging.read_mask(str(out / "03_test.png"))
    assert mask.shape == (H * SCALE, W * SCALE)  # segmented as it is, not enlarged again


def test_error_maps_and_previews(segment_run, drive_tree):
    out, _ = segment_run
    for n in (1, 2, 3):
        stem = f"{n:02d}_test"
        predicted = imaging.read_mask(str(out / f"{stem}.png"))
        truth = _truth(drive_tree, n) > 0
        # the documented colours painted by hand: white TP, red FP, blue FN, black TN
        expected = np.zeros(truth.shape + (3,), np.uint8)
        expected[(predicted > 0) & truth] = (255, 255, 255)
        expected[(predicted > 0) & ~truth] = (255, 0, 0)
        expected[(predicted == 0) & truth] = (0, 0, 255)
        np.testing.assert_array_equal(imaging.read_image(str(out / f"{stem}_errors.png")), expected)
        p16 = np.asarray(Image.open(out / f"{stem}_probabilities.png"), np.float64) / 65535
        preview = np.asarray(Image.open(out / f"{stem}_probabilities_preview.png"))
        assert preview.dtype == np.uint8
        assert np.abs(preview - p16 * 255).max() <= 0.51


def test_metrics_json_agrees_with_metrics_csv_and_numpy(segment_run, drive_tree, model_dir):
    out, _ = segment_run
    rows = _read_csv(out / "metrics.csv")
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["threshold"] == 0.5 and doc["fov_source"] == "files"
    assert doc["model"]["model_dir"] == str(model_dir)
    assert doc["model"]["input_scale"] == "auto"
    columns = doc["columns"]
    assert [r["image"] for r in doc["images"]] == ["01_test", "02_test", "03_test"]
    for entry in doc["images"]:
        for c in columns:
            assert entry[c] == pytest.approx(rows[entry["image"]][c], abs=1e-6), c
        assert entry["fov"].endswith(f"{entry['image'][:2]}_test_mask.gif")
    for stat in ("mean", "std"):
        for c in columns:
            assert doc["summary"][stat][c] == pytest.approx(rows[stat][c], abs=1e-6), (stat, c)
    # Independently: the FOV-masked Dice from the written masks, the FOV files and numpy,
    # and the pooled F1 over every pixel of every image.
    preds, truths, fov_p, fov_t = [], [], [], []
    for n in (1, 2, 3):
        p = imaging.read_mask(str(out / f"{n:02d}_test.png")).astype(bool)
        t, region = _truth(drive_tree, n), _fov(drive_tree, n)
        inside = 2 * np.sum(p[region] & t[region]) / (p[region].sum() + t[region].sum())
        assert rows[f"{n:02d}_test"]["fov_dice"] == pytest.approx(inside, abs=1e-6)
        preds.append(p.ravel()); truths.append(t.ravel())
        fov_p.append(p[region]); fov_t.append(t[region])
    p, t = np.concatenate(preds), np.concatenate(truths)
    assert doc["summary"]["pooled"]["dice"] == pytest.approx(2 * np.sum(p & t) / (p.sum() + t.sum()))
    p, t = np.concatenate(fov_p), np.concatenate(fov_t)
    assert doc["summary"]["pooled"]["fov_dice"] == pytest.approx(
        2 * np.sum(p & t) / (p.sum() + t.sum()))


def test_manifest_run_with_fov_column(drive_tree, model_dir, tmp_path):
    from tiled_vessel_seg import datasets
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.inference import segment
    manifest = drive_tree / "pairs.csv"
    manifest.write_text("image,mask,fov\n"
                        "images/01_test.tif,1st_manual/01_manual1.gif,mask/01_test_mask.gif\n"
                        "images/02_test.tif,1st_manual/02_manual1.gif,\n"
                        "images/04_test.tif,1st_manual/04_manual1.gif,\n")
    pairs, problems = datasets.read_manifest(str(manifest))
    assert [p.image_id for p in pairs] == ["01_test", "02_test"]
    assert len(problems) == 1 and problems[0].reason.startswith("row 4: image file")
    predictor = predictor_lib.load_predictor(str(model_dir), input_scale="auto")
    summary = segment.segment_files(predictor, [p.image_path for p in pairs], str(tmp_path),
                                    truths={p.image_id: p for p in pairs}, progress=False)
    assert summary.scales == {"01_test": "native", "02_test": "native"}
    assert summary.fov_source == "files for 1 of 2 images, computed otherwise"
    doc = metrics_json.read_metrics_json(str(tmp_path / "metrics.json"))
    assert [r["fov"] for r in doc["images"]][1] == "computed"
    assert not (tmp_path / "01_test_errors.png").exists()  # error maps only when asked

"""What vessel-segment and the run report say about their own figures (issue 18 items 12
and 13): photographs the model was trained or validated on are marked and named, and a
(nearly) empty mask over non-empty probabilities gets a hint (train longer, or a lower
threshold); the report's montage shows the probabilities."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest

from tiled_vessel_seg.inference import mask_hints


# ------------------------------------------------------------------ the pure functions

def test_training_splits_and_output_stems():
    splits = mask_hints.training_splits({"train": ["im0001", "im0002"], "valid": ["im0005"],
                                         "test": ["im0044"]})
    assert splits == {"im0001": "train", "im0002": "train", "im0005": "valid"}
    assert mask_hints.used_split("im0005", splits) == "valid"
    assert mask_hints.used_split("im0001.ah", splits) == "train"   # STARE label names
    assert mask_hints.used_split("im0044", splits) is None
    assert mask_hints.training_splits({}) == {} == mask_hints.training_splits(None)


def test_hint_for_an_empty_mask_over_probabilities_below_the_threshold():
    probabilities = np.linspace(0.0, 0.45, 10_000, dtype=np.float64).reshape(100, 100)
    mask = probabilities > 0.5
    hint = mask_hints.empty_mask_hint(probabilities, mask, 0.5)
    # the 90 % quantile of a ramp 0..0.45 is 0.405 (hand-worked): rounded down, 0.40
    assert "0.00 % of the pixels above threshold 0.5" in hint
    assert "above 0.405" in hint and "--threshold 0.4 " in hint and "train longer" in hint
    # with the truth's own vessel share (5 %): the 95 % quantile, 0.4275 -> 0.42
    hint = mask_hints.empty_mask_hint(probabilities, mask, 0.5, truth_fraction=0.05)
    assert "--threshold 0.42 " in hint and "about 5 %" in hint


def test_hint_when_the_probabilities_are_empty_too_and_none_when_not_needed():
    zeros = np.zeros((50, 60), np.float32)
    hint = mask_hints.empty_mask_hint(zeros, zeros > 0.5, 0.5)
    assert "has not learnt vessels" in hint and "--threshold" not in hint
    ramp = np.linspace(0, 1, 3000).reshape(50, 60)
    assert mask_hints.empty_mask_hint(ramp, ramp > 0.5, 0.5) is None     # half marked
    # a truth with almost no vessels: an empty mask is right, no hint
    assert mask_hints.empty_mask_hint(ramp * 0.3, ramp > 2, 0.5, truth_fraction=0.001) is None


# ----------------------------------------------------------------- vessel-segment run

@pytest.fixture(scope="module")
def low_model_dir(tmp_path_factory):
    """A tiny model whose probabilities sit near sigmoid(-1.5) = 0.18, below threshold
    0.5, trained (says model_info.json) on im0001 and validated on im0002."""
    keras = pytest.importorskip("keras")
    from tiled_vessel_seg.model_info import ModelInfo, write_model_info
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Conv2D(
        1, 3, padding="same", activation="sigmoid",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.3, seed=1),
        bias_initializer=keras.initializers.Constant(-1.5))(inp)
    path = tmp_path_factory.mktemp("model")
    keras.Model(inp, out).save(str(path / "best_model.keras"))
    write_model_info(str(path), ModelInfo(
        tile_size=32, scale=1, overlap=8, threshold=0.5,
        data_ids={"train": ["im0001"], "valid": ["im0002"], "test": ["im0003", "im0004"]}))
    return path


@pytest.fixture(scope="module")
def segment_run(synthetic_stare_dir, low_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.inference.cli", "--model", str(low_model_dir),
         "--input", str(synthetic_stare_dir / "stare-images"), "--output_dir", str(out),
         "--masks_dir", str(synthetic_stare_dir / "labels-ah"), "--input_scale", "native",
         "--save_probabilities"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return out, result


def test_rows_of_training_photographs_are_marked(segment_run):
    out, result = segment_run
    with open(out / "metrics.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    assert {k: rows[k]["used_in_training"] for k in rows} == {
        "im0001": "train", "im0002": "valid", "im0003": "", "im0004": "", "mean": "",
        "std": ""}
    document = json.loads((out / "metrics.json").read_text())
    assert {r["image"]: r.get("used_in_training") for r in document["images"]} == {
        "im0001": "train", "im0002": "valid", "im0003": None, "im0004": None}
    assert document["summary"]["used_in_training"] == {"train": ["im0001"],
                                                       "valid": ["im0002"]}
    summary = next(l for l in result.stdout.splitlines() if "metrics over" in l)
    assert "2 of them seen in training, so NOT test scores" in summary
    assert "im0001 train" in summary and "im0002 valid" in summary
    held = np.mean([float(rows[k]["dice"]) for k in ("im0003", "im0004")])
    line = next(l for l in result.stdout.splitlines() if "never saw" in l)
    assert f"dice {held:.4f}" in line


def test_nearly_empty_masks_get_a_hint_with_a_threshold_that_marks_vessels(segment_run):
    out, result = segment_run
    hints = {l.split(":")[0].strip(): l for l in result.stdout.splitlines()
             if "mask nearly empty" in l}
    assert sorted(hints) == ["im0001", "im0002", "im0003", "im0004"]
    for stem, line in hints.items():
        mask = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        assert np.count_nonzero(mask) / mask.size < 0.002
        probabilities = cv2.imread(str(out / f"{stem}_probabilities.png"),
                                   cv2.IMREAD_UNCHANGED) / 65535.0
        suggested = float(line.split("--threshold ")[1].split()[0])
        # the suggested threshold marks about 10 % of the pixels, and 0.01 more would
        # mark fewer: checked on the probabilities the run wrote
        assert np.mean(probabilities > suggested - 1e-4) >= 0.10
        assert np.mean(probabilities > suggested + 0.01 + 1e-4) <= 0.10
        assert "train longer" in line


# ------------------------------------------------------------------------- the report

def test_report_shows_the_probabilities_and_the_hint(tmp_path, monkeypatch):
    from tiled_vessel_seg import model_info as model_info_lib
    from tiled_vessel_seg.inference import segment
    from tiled_vessel_seg.pipeline import report
    from tiled_vessel_seg.tfrecords import dataset_info
    from tiled_vessel_seg.trainer import callbacks
    h, w = 64, 80
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    truth = (rng.random((h, w)) > 0.9).astype(np.uint8) * 255
    probabilities = np.tile(np.linspace(0, 0.4, w), (h, 1))
    seg = tmp_path / "segment"
    seg.mkdir()
    cv2.imwrite(str(tmp_path / "im0001.png"), photo[..., ::-1])
    cv2.imwrite(str(tmp_path / "truth.png"), truth)
    cv2.imwrite(str(seg / "im0001.png"), np.zeros((h, w), np.uint8))
    cv2.imwrite(str(seg / "im0001_probabilities.png"),
                np.round(probabilities * 65535).astype(np.uint16))
    row = {c: 0.0 for c in segment.metric_columns()}
    segment.write_metrics_csv(str(seg / "metrics.csv"), [{"image": "im0001", **row}])
    split = types.SimpleNamespace(image_ids=["im0001"], tiles=1, augmented_tiles=0)
    monkeypatch.setattr(dataset_info, "read_dataset_info",
                        lambda d: types.SimpleNamespace(splits={"test": split}))
    monkeypatch.setattr(model_info_lib, "read_model_info", lambda d: types.SimpleNamespace(
        tile_size=32, scale=1, precision="float32", threshold=0.5, config={}))
    monkeypatch.setattr(callbacks, "read_history", lambda p: {})
    pair = types.SimpleNamespace(image_id="im0001", image_path=str(tmp_path / "im0001.png"),
                                 mask_path=str(tmp_path / "truth.png"), fov_path=None,
                                 second_mask_path=None)
    work = tmp_path / "w"
    work.mkdir()
    path = report.write_report(str(work), "src", "data", "model", str(seg), [pair])
    text = open(path).read()
    assert "Nearly empty predictions" in text and "- im0001: mask nearly empty" in text
    assert "--threshold" in text and "probability (black 0, white 1)" in text
    # the full-resolution row: the third panel is the probability map, 0..255
    row_image = cv2.imread(str(work / "report_images" / "im0001.png"))[..., ::-1]
    band = int(round(34 * max(0.7, w / 500)))
    x = report.GAP + 2 * (w + report.GAP)
    panel = row_image[2 * band:2 * band + h, x:x + w]
    expected = np.round(np.round(probabilities * 65535) / 65535 * 255).astype(np.uint8)
    np.testing.assert_array_equal(panel[..., 0], expected)
    assert report.COLUMN_TITLES.index("probability") == 2
    montage = cv2.imread(str(work / report.MONTAGE_FILE))
    assert montage.shape[1] == 5 * report.MONTAGE_PANEL_WIDTH + 6 * report.GAP
    assert math.isclose(float(np.mean(truth > 0)), 0.1, abs_tol=0.02)

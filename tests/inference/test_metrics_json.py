"""metrics.json: summary statistics and pooled figures against numpy; FOV-masked metrics."""
import json
import math

import numpy as np
import pytest

from tiled_vessel_seg.inference import metrics, metrics_json

COLUMNS = ["dice", "sensitivity", "fov_dice"]


def _images(seed=0):
    """Three images of different sizes: probabilities, truth, FOV region."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in ((12, 15), (20, 9), (7, 7)):
        probs = rng.random((h, w)).astype(np.float32)
        truth = rng.random((h, w)) < 0.3
        region = np.zeros((h, w), bool)
        region[1:-1, 2:] = True
        out.append((probs, truth, region))
    return out


def _rows(images, threshold):
    rows = []
    for i, (probs, truth, region) in enumerate(images):
        whole = metrics.segmentation_metrics(probs, truth, threshold)
        inside = metrics.segmentation_metrics(probs, truth, threshold, region)
        rows.append({"image": f"im{i}", "dice": whole["dice"],
                     "sensitivity": whole["sensitivity"], "fov_dice": inside["dice"],
                     "counts": metrics.confusion_counts(probs > threshold, truth),
                     "fov_counts": metrics.confusion_counts(probs[region] > threshold,
                                                            truth[region])})
    return rows


def test_fov_masked_metrics_against_numpy():
    probs, truth, region = _images()[0]
    m = metrics.segmentation_metrics(probs, truth, 0.6, region)
    p, t = probs[region] > 0.6, truth[region]
    tp, fp, fn = np.sum(p & t), np.sum(p & ~t), np.sum(~p & t)
    tn = p.size - tp - fp - fn
    assert m["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["accuracy"] == pytest.approx((tp + tn) / p.size)


def test_summary_mean_std_and_pooled_f1_against_numpy():
    images = _images()
    rows = _rows(images, 0.6)
    doc = metrics_json.metrics_document(rows, COLUMNS, threshold=0.6, fov_source="files",
                                        model={"model_dir": "m", "scale": 5})
    dice = np.array([r["dice"] for r in rows])
    assert doc["summary"]["mean"]["dice"] == pytest.approx(dice.mean())
    assert doc["summary"]["std"]["dice"] == pytest.approx(dice.std())
    # Pooled F1: every pixel of every image at once.
    p = np.concatenate([(pr > 0.6).ravel() for pr, _, _ in images])
    t = np.concatenate([tr.ravel() for _, tr, _ in images])
    f1 = 2 * np.sum(p & t) / (np.sum(p) + np.sum(t))
    assert doc["summary"]["pooled"]["dice"] == pytest.approx(f1)
    pf = np.concatenate([(pr[rg] > 0.6) for pr, _, rg in images])
    tf_ = np.concatenate([tr[rg] for _, tr, rg in images])
    assert doc["summary"]["pooled"]["fov_dice"] == pytest.approx(
        2 * np.sum(pf & tf_) / (np.sum(pf) + np.sum(tf_)))
    assert doc["summary"]["pooled"]["fov_sensitivity"] == pytest.approx(
        np.sum(pf & tf_) / np.sum(tf_))
    assert doc["threshold"] == 0.6 and doc["fov_source"] == "files"
    assert doc["model"] == {"model_dir": "m", "scale": 5}
    assert [r["image"] for r in doc["images"]] == ["im0", "im1", "im2"]
    assert doc["images"][1]["counts"] == rows[1]["counts"]


def test_nan_is_written_as_null_and_read_back_as_nan(tmp_path):
    rows = _rows(_images(), 0.5)
    rows[0]["sensitivity"] = float("nan")
    path = metrics_json.write_metrics_json(str(tmp_path / "metrics.json"), rows, COLUMNS,
                                           threshold=0.5, fov_source="computed")
    raw = json.loads(open(path).read())  # strict JSON: no NaN tokens
    assert raw["images"][0]["sensitivity"] is None
    back = metrics_json.read_metrics_json(path)
    assert math.isnan(back["images"][0]["sensitivity"])
    values = np.array([r["sensitivity"] for r in rows[1:]])
    assert back["summary"]["mean"]["sensitivity"] == pytest.approx(values.mean())

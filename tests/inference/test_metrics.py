"""Metrics and FOV mask against hand-worked and brute-force numpy values."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tiled_vessel_seg import fov
from tiled_vessel_seg.inference import metrics


def brute_force_auc(scores, truth):
    pos, neg = scores[truth][:, None], scores[~truth][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def test_binary_metrics_hand_worked():
    prediction = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    truth = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)
    # TP 2, FP 1, FN 1, TN 4
    m = metrics.binary_metrics(prediction, truth)
    assert m["dice"] == pytest.approx(4 / 6)
    assert m["iou"] == pytest.approx(2 / 4)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(4 / 5)
    assert m["accuracy"] == pytest.approx(6 / 8)


def test_binary_metrics_empty_cases():
    empty = np.zeros((3, 3), bool)
    m = metrics.binary_metrics(empty, empty)
    assert m["dice"] == 1.0 and m["iou"] == 1.0 and math.isnan(m["sensitivity"])
    assert m["specificity"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_matches_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.random(3000), 2).astype(np.float32)  # many ties
    truth = rng.random(3000) < 0.1 + 0.3 * scores
    expected = brute_force_auc(scores, truth)
    assert metrics.roc_auc(scores, truth) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_edge_cases():
    assert metrics.roc_auc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert metrics.roc_auc(np.array([0.1, 0.9]), np.array([True, False])) == 0.0
    assert metrics.roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert math.isnan(metrics.roc_auc(np.array([0.1, 0.2]), np.array([True, True])))


def test_segmentation_metrics_in_region():
    rng = np.random.default_rng(0)
    probs = rng.random((20, 30)).astype(np.float32)
    truth = rng.random((20, 30)) < 0.3
    region = np.zeros((20, 30), bool)
    region[5:15, 3:25] = True
    m = metrics.segmentation_metrics(probs, truth, 0.4, region)
    p, t = probs[5:15, 3:25], truth[5:15, 3:25]
    tp = np.sum((p > 0.4) & t)
    assert m["dice"] == pytest.approx(2 * tp / (np.sum(p > 0.4) + np.sum(t)))
    assert m["auc"] == pytest.approx(brute_force_auc(p.ravel(), t.ravel()))
    with pytest.raises(ValueError, match="shape"):
        metrics.segmentation_metrics(probs, truth[:5], 0.5)


def test_summarize_ignores_nan():
    rows = [{"a": 1.0}, {"a": 3.0}, {"a": float("nan")}]
    assert metrics.summarize(rows, ["a"]) == {"a": (2.0, 1.0)}


def fundus_like(h, w, seed=0):
    """Dark noisy border, a bright red disc with dark 'vessels' and a dark lesion inside,
    and one bright speck outside. Returns (image, disc)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 20, (h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.42 * min(h, w)) ** 2
    image[disc] = (170, 80, 40)
    image[(np.abs(yy - xx) < 2) & disc] = (30, 10, 5)        # a dark vessel
    image[(yy - h / 2) ** 2 + (xx - w / 2 - 10) ** 2 < 36] = (5, 2, 1)  # a dark lesion
    image[2:5, 2:5] = 255                                       # a bright speck
    return image, disc


@pytest.mark.parametrize("h,w", [(140, 160), (1100, 1200)])
def test_fov_mask_recovers_the_disc(h, w):
    image, disc = fundus_like(h, w)
    mask = fov.fov_mask(image)
    assert mask.shape == (h, w) and mask.dtype == bool
    iou = np.sum(mask & disc) / np.sum(mask | disc)
    assert iou > 0.98, iou
    assert not mask[:6, :6].any()                     # the speck is gone
    assert mask[h // 2, w // 2 + 10]                  # the lesion hole is filled

"""Per-image segmentation metrics in numpy (vectorised, exact).

Conventions: undefined ratios (e.g. sensitivity of an image without vessels) are NaN,
except Dice and IoU of an empty prediction against an empty truth, which are 1.
"""
from __future__ import annotations

import numpy as np

METRIC_NAMES = ("dice", "iou", "sensitivity", "specificity", "accuracy", "auc")


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


COUNT_NAMES = ("tp", "fp", "fn", "tn")


def confusion_counts(prediction: np.ndarray, truth: np.ndarray) -> dict[str, int]:
    """{"tp", "fp", "fn", "tn"}: pixel counts of two bool arrays of one shape."""
    prediction = np.asarray(prediction, bool).ravel()
    truth = np.asarray(truth, bool).ravel()
    tp = int(np.count_nonzero(prediction & truth))
    fp = int(np.count_nonzero(prediction & ~truth))
    fn = int(np.count_nonzero(~prediction & truth))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": prediction.size - tp - fp - fn}


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dice (= F1), IoU, sensitivity, specificity, accuracy from pixel counts (one image,
    or summed over many for the pooled figures)."""
    return {
        "dice": _ratio(2 * tp, 2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "iou": _ratio(tp, tp + fp + fn) if tp + fp + fn else 1.0,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def binary_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice (= F1), IoU, sensitivity, specificity, accuracy of bool arrays of one shape."""
    return metrics_from_counts(**confusion_counts(prediction, truth))


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative),
    ties counting 1/2 (the Mann-Whitney statistic from mid-ranks), from one sort. NaN if
    one class is absent. scores: float array; truth: bool array of the same size.
    """
    scores = np.asarray(scores, np.float32).ravel()
    truth = np.asarray(truth, bool).ravel()
    positives = int(np.count_nonzero(truth))
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    if not np.all(np.isfinite(scores)):
        raise ValueError("roc_auc needs finite scores")
    # Mid-ranks (1-based) of the positives among all scores; ties share their mean rank.
    ordered = np.sort(scores)
    pos = np.sort(scores[truth])
    below = np.searchsorted(ordered, pos, side="left").astype(np.float64)
    up_to = np.searchsorted(ordered, pos, side="right").astype(np.float64)
    rank_sum = np.sum(below + 1.0 + up_to) / 2.0
    return float((rank_sum - positives * (positives + 1) / 2.0)
                 / (float(positives) * float(negatives)))


def segmentation_metrics(probabilities: np.ndarray, truth: np.ndarray, threshold: float,
                         region: np.ndarray | None = None) -> dict[str, float]:
    """All METRIC_NAMES for one image: probabilities float [H, W], truth bool [H, W],
    prediction = probabilities > threshold; restricted to `region` (bool [H, W]) if given."""
    probabilities = np.asarray(probabilities, np.float32)
    truth = np.asarray(truth, bool)
    if probabilities.shape != truth.shape:
        raise ValueError(f"probabilities {probabilities.shape} and truth {truth.shape} "
                         "differ in shape")
    if region is not None:
        probabilities, truth = probabilities[region], truth[region]
    out = binary_metrics(probabilities > threshold, truth)
    out["auc"] = roc_auc(probabilities, truth)
    return out


def summarize(rows: list[dict[str, float]], keys) -> dict[str, tuple[float, float]]:
    """{key: (mean, std)} over rows, ignoring NaN; (nan, nan) when no value."""
    out = {}
    for k in keys:
        v = np.array([r[k] for r in rows], np.float64)
        v = v[np.isfinite(v)]
        out[k] = (float(v.mean()), float(v.std())) if v.size else (float("nan"), float("nan"))
    return out

"""Stateful segmentation metrics over every pixel seen since the last reset.

Each metric accumulates true/false positive/negative pixel counts (float64, summed over
batches and - being Keras "on read, sum" variables - over replicas) with the prediction
thresholded at `threshold` (p > threshold is vessel) and the label at 0.5:

    dice (F1)    2 TP / (2 TP + FP + FN)
    iou          TP / (TP + FP + FN)
    sensitivity  TP / (TP + FN)
    specificity  TN / (TN + FP)
    accuracy     (TP + TN) / all

With label planes [..., 2] (vessels, field of view; trainer.losses.split_labels) only the
pixels inside the FOV count, in every metric here.

A ratio whose denominator is 0 is 1.0: nothing to find and nothing found (e.g. Dice on
all-background tiles predicted all background) is a perfect score, not a division error.
ROC AUC is Keras' `AUC` (200 thresholds). `DiceCoef` logs the reference's `dice_coef`
(smoothed Dice of probabilities, `trainer.losses.dice_coef`) averaged over batches.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from tiled_vessel_seg.trainer import losses
# Registers the learning-rate schedule a compiled .keras file may name, with the losses
# and metrics (whoever can load a compiled model imports this module).
from tiled_vessel_seg.trainer import schedules  # noqa: F401

PACKAGE = losses.PACKAGE


def final_output(y_pred):
    """The served prediction [..., 1]: the last channel (a W-Net's training model stacks
    its two U-Nets' outputs; metrics score the second, the one inference uses)."""
    return y_pred[..., -1:]


def _ratio(numerator, denominator):
    return tf.where(denominator > 0, numerator / tf.maximum(denominator, 1.0),
                    tf.ones_like(numerator))


class ConfusionMetric(keras.metrics.Metric):
    """Base: accumulates pixel TP, FP, FN, TN; subclasses define `score(tp, fp, fn, tn)`."""

    def __init__(self, name: str, threshold: float = 0.5, dtype=None):
        super().__init__(name=name, dtype=dtype or "float32")
        self.threshold = threshold
        self.counts = [self.add_variable(shape=(), initializer="zeros", dtype="float64",
                                         name=n) for n in ("tp", "fp", "fn", "tn")]

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{self.name}: sample weights are not supported")
        vessels, fov = losses.split_labels(y_true)
        truth = vessels >= 0.5
        predicted = tf.cast(final_output(y_pred), tf.float32) > self.threshold
        cells = [tf.logical_and(predicted, truth),
                 tf.logical_and(predicted, tf.logical_not(truth)),
                 tf.logical_and(tf.logical_not(predicted), truth),
                 tf.logical_and(tf.logical_not(predicted), tf.logical_not(truth))]
        if fov is not None:
            cells = [tf.logical_and(cell, fov >= 0.5) for cell in cells]
        for variable, cell in zip(self.counts, cells):
            variable.assign_add(tf.reduce_sum(tf.cast(cell, tf.float64)))

    def reset_state(self):
        for variable in self.counts:
            variable.assign(tf.zeros((), tf.float64))

    def result(self):
        tp, fp, fn, tn = (tf.convert_to_tensor(v) for v in self.counts)
        return tf.cast(self.score(tp, fp, fn, tn), tf.float32)

    def score(self, tp, fp, fn, tn):
        raise TypeError(f"{type(self).__name__} must define score()")

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Dice(ConfusionMetric):
    """Dice / F1 of the thresholded mask: 2 TP / (2 TP + FP + FN)."""

    def __init__(self, name: str = "dice", threshold: float = 0.5, dtype=None):
        super().__init__(name=name, threshold=threshold, dtype=dtype)

    def score(self, tp, fp, fn, tn):
        return _ratio(2.0 * tp, 2.0 * tp + fp + fn)


@keras.saving.register_keras_serializable(package=PACKAGE)
class IoU(ConfusionMetric):
    """Jaccard index of the thresholded mask: TP / (TP + FP + FN)."""

    def __init__(self, name: str = "iou", threshold: float = 0.5, dtype=None):
        super().__init__(name=name, threshold=threshold, dtype=dtype)

    def score(self, tp, fp, fn, tn):
        return _ratio(tp, tp + fp + fn)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Sensitivity(ConfusionMetric):
    """Recall of vessel pixels: TP / (TP + FN)."""

    def __init__(self, name: str = "sensitivity", threshold: float = 0.5, dtype=None):
        super().__init__(name=name, threshold=threshold, dtype=dtype)

    def score(self, tp, fp, fn, tn):
        return _ratio(tp, tp + fn)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Specificity(ConfusionMetric):
    """Recall of background pixels: TN / (TN + FP)."""

    def __init__(self, name: str = "specificity", threshold: float = 0.5, dtype=None):
        super().__init__(name=name, threshold=threshold, dtype=dtype)

    def score(self, tp, fp, fn, tn):
        return _ratio(tn, tn + fp)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PixelAccuracy(ConfusionMetric):
    """Share of pixels classified right: (TP + TN) / all."""

    def __init__(self, name: str = "accuracy", threshold: float = 0.5, dtype=None):
        super().__init__(name=name, threshold=threshold, dtype=dtype)

    def score(self, tp, fp, fn, tn):
        return _ratio(tp + tn, tp + fp + fn + tn)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiceCoef(keras.metrics.Mean):
    """The reference's `dice_coef` (smoothed Dice of probabilities over the global batch),
    averaged over steps, each (global) batch counting once.

    Unlike `MeanMetricWrapper(dice_coef)`, whose constant per-batch count is added once
    more in the step where a finite dataset runs out, the count here depends on the batch.
    """

    def __init__(self, name: str = "dice_coef", dtype=None):
        super().__init__(name=name, dtype=dtype or "float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{self.name}: sample weights are not supported")
        value = losses.dice_coef(y_true, final_output(y_pred))
        # Each step counts 1 in all, shared by the replicas that got data (the last batch
        # of a pass may leave a replica empty). Computed from the batch: a constant count
        # could also run in the step whose iterator is exhausted (nothing orders it after).
        has_data = tf.cast(tf.shape(y_true)[0] > 0, tf.float32)
        replicas_with_data = losses.global_sums([has_data])[0]
        weight = has_data / tf.maximum(replicas_with_data, 1.0)
        return super().update_state(value, sample_weight=weight)


def segmentation_metrics(threshold: float = 0.5) -> list:
    """Fresh instances of every metric the trainer logs and the evaluator reports.

    Names in logs: dice_coef, dice, iou, sensitivity, specificity, accuracy, auc.
    """
    return [DiceCoef(), Dice(threshold=threshold), IoU(threshold=threshold),
            Sensitivity(threshold=threshold), Specificity(threshold=threshold),
            PixelAccuracy(threshold=threshold), FinalOutputAUC()]


@keras.saving.register_keras_serializable(package=PACKAGE)
class FinalOutputAUC(keras.metrics.AUC):
    """Keras' ROC AUC (200 thresholds) of the last output channel (see final_output),
    over the FOV pixels (weight 0 outside) when the labels carry a FOV plane."""

    def __init__(self, name: str = "auc", num_thresholds: int = 200, curve: str = "ROC",
                 **kwargs):
        super().__init__(name=name, num_thresholds=num_thresholds, curve=curve, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        vessels, fov = losses.split_labels(y_true)
        if fov is not None:
            sample_weight = fov if sample_weight is None else sample_weight * fov
        return super().update_state(vessels, final_output(y_pred), sample_weight)


def f1_by_threshold(positive_counts, negative_counts) -> tuple[float, float]:
    """(threshold, F1) maximising F1 from score histograms over THRESHOLD_BINS equal bins
    of [0, 1]: positive_counts[i] / negative_counts[i] = vessel / background pixels whose
    probability falls in bin i. Threshold t_k = k / bins (k = 1 .. bins-1) predicts the
    pixels of bins >= k as vessel (p >= t_k, up to the bin width). numpy in, floats out.
    """
    import numpy as np
    pos = np.asarray(positive_counts, np.float64)
    neg = np.asarray(negative_counts, np.float64)
    bins = pos.size
    tp = np.cumsum(pos[::-1])[::-1][1:]   # predicted vessel at t_k, k = 1 .. bins-1
    fp = np.cumsum(neg[::-1])[::-1][1:]
    fn = pos.sum() - tp
    denominator = 2 * tp + fp + fn
    f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1e-12), 0.0)
    k = int(np.argmax(f1))
    return (k + 1) / bins, float(f1[k])


THRESHOLD_BINS = 100


def score_histograms(model, dataset, bins: int = THRESHOLD_BINS):
    """Histograms (vessel, background) of the model's final-output probabilities over
    a dataset of (image [b, H, W, 3], mask [b, H, W, 1]) batches; two int64 [bins].
    Masks [b, H, W, 2] (vessels, FOV) count the pixels inside the FOV only."""
    import numpy as np
    pos = np.zeros(bins, np.int64)
    neg = np.zeros(bins, np.int64)

    @tf.function
    def step(image, mask):
        p = tf.cast(final_output(model(image, training=False)), tf.float32)
        index = tf.clip_by_value(tf.cast(p * bins, tf.int32), 0, bins - 1)
        vessels, fov = losses.split_labels(mask)
        truth = vessels >= 0.5
        counted = tf.ones_like(truth) if fov is None else fov >= 0.5
        return (tf.math.bincount(tf.boolean_mask(index, truth & counted), minlength=bins,
                                 maxlength=bins, dtype=tf.int64),
                tf.math.bincount(tf.boolean_mask(index, ~truth & counted), minlength=bins,
                                 maxlength=bins, dtype=tf.int64))

    for image, mask in dataset:
        p, n = step(image, mask)
        pos += p.numpy()
        neg += n.numpy()
    return pos, neg


METRIC_NAMES = ("dice_coef", "dice", "iou", "sensitivity", "specificity", "accuracy", "auc")

"""The metrics the trainer logs and the evaluator reports, and the threshold chosen from
score histograms.

The metric classes (pixel Dice, IoU, sensitivity, specificity, accuracy, AUC and the
reference's dice_coef, all inside the FOV when the labels carry one) are defined with
the other custom Keras objects in tiled_vessel_seg/keras_objects.py, because a saved
compiled model names them and must load without the trainer.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tiled_vessel_seg import keras_objects


def segmentation_metrics(threshold: float = 0.5) -> list:
    """Fresh instances of every metric the trainer logs and the evaluator reports.

    Names in logs: dice_coef, dice, iou, sensitivity, specificity, accuracy, auc.
    """
    k = keras_objects
    return [k.DiceCoef(), k.Dice(threshold=threshold), k.IoU(threshold=threshold),
            k.Sensitivity(threshold=threshold), k.Specificity(threshold=threshold),
            k.PixelAccuracy(threshold=threshold), k.FinalOutputAUC()]


def f1_by_threshold(positive_counts, negative_counts) -> tuple[float, float]:
    """(threshold, F1) maximising F1 from score histograms over THRESHOLD_BINS equal bins
    of [0, 1]: positive_counts[i] / negative_counts[i] = vessel / background pixels whose
    probability falls in bin i. Threshold t_k = k / bins (k = 1 .. bins-1) predicts the
    pixels of bins >= k as vessel (p >= t_k, up to the bin width). numpy in, floats out.
    """
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
    pos = np.zeros(bins, np.int64)
    neg = np.zeros(bins, np.int64)

    @tf.function
    def step(image, mask):
        p = tf.cast(keras_objects.final_output(model(image, training=False)), tf.float32)
        index = tf.clip_by_value(tf.cast(p * bins, tf.int32), 0, bins - 1)
        vessels, fov = keras_objects.split_labels(mask)
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

"""The custom Keras objects a saved model file names: loss, metrics, learning-rate schedule.

A compiled `.keras` file records each of them by its registered name ("vessel>BceDiceLoss",
"vessel>BalancedBceDiceLoss", "vessel>Dice", "vessel>CosineCycles", ...), and Keras finds
a custom class only through that registry (in safe_mode it imports no module named in the
file). So these definitions live on the ground floor: `import tiled_vessel_seg` registers
them as soon as Keras is imported (tiled_vessel_seg/__init__.py), and plain
`keras.models.load_model` restores a compiled model without any stage imported. The
trainer builds on them (trainer/losses.py chooses the loss by name, trainer/metrics.py
lists the metrics it logs and picks thresholds, trainer/schedules.py builds the schedule
from the config).

Loss (the reference's, in float32 over the whole GLOBAL batch): `dice_coef` is
(2 * sum(t * p) + 1) / (sum(t) + sum(p) + 1) over every pixel of the batch, and
`bce_dice_loss` is (BCE + 1 - dice_coef) / 2. Under a MirroredStrategy each replica sees
only its slice of the batch, so the sums are all-reduced across replicas (the
all-reduce is differentiable): N replicas with a global batch B compute the same loss
and the same gradients as one replica with batch B.

`balanced_bce_dice_loss` (`[model] loss = "balanced_bce_dice_loss"`) replaces the BCE by a
class-balanced one (lwnet, binseg): with P vessel pixels among the N counted pixels of the
global batch, each vessel pixel's BCE is weighted by N / (2 P) and each background pixel's
by N / (2 (N - P)), so

    balanced BCE = sum_vessel(BCE) / (2 P) + sum_background(BCE) / (2 (N - P)),

the mean of the two classes' mean BCEs: vessels (~10 % of a fundus) weigh as much as the
background. A batch with no vessel pixel or no background pixel (P = 0 or P = N) has
plain BCE. The Dice term is unchanged.

Labels (y_true) are [B, H, W, 1] vessels, or [B, H, W, 2] vessels then field of view
(`[train] loss_mask = "fov"`, the reader's `with_fov`; `split_labels`). With a FOV plane
only pixels inside it count: BCE is averaged over the FOV pixels of the global batch and
every Dice sum runs over them, so what the model predicts outside the FOV changes
nothing. An all-ones FOV gives exactly the unmasked values. The same holds for every
metric here.

Metrics are stateful over every pixel seen since the last reset: true/false
positive/negative pixel counts (float64, summed over batches and - being Keras "on read,
sum" variables - over replicas) with the prediction thresholded at `threshold` (p >
threshold is vessel) and the label at 0.5:

    dice (F1)    2 TP / (2 TP + FP + FN)
    iou          TP / (TP + FP + FN)
    sensitivity  TP / (TP + FN)
    specificity  TN / (TN + FP)
    accuracy     (TP + TN) / all

A ratio whose denominator is 0 is 1.0: nothing to find and nothing found (e.g. Dice on
all-background tiles predicted all background) is a perfect score, not a division error.
ROC AUC is Keras' `AUC` (200 thresholds). `DiceCoef` logs the reference's `dice_coef`
averaged over batches.

Schedule `CosineCycles` ("cosine", lwnet): per step

    lr(step) = min_lr + (max_lr - min_lr) * (1 + cos(pi * (step mod C) / C)) / 2,

a function of the optimizer's iteration count, so a run resumed by BackupAndRestore
continues on the same curve.
"""
from __future__ import annotations

import math
from typing import Optional

import keras
import tensorflow as tf

from tiled_vessel_seg import names

PACKAGE = names.KERAS_PACKAGE
SMOOTH = 1.0


def global_sums(values: list[tf.Tensor]) -> list[tf.Tensor]:
    """Sums scalars over the replicas of the current strategy (identity on one replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return list(context.all_reduce(tf.distribute.ReduceOp.SUM, values))


def split_labels(y_true) -> tuple[tf.Tensor, Optional[tf.Tensor]]:
    """Label planes [..., 1] (vessels) or [..., 2] (vessels, FOV; static channel count) ->
    (vessels float32 [..., 1], FOV float32 [..., 1] in {0, 1} or None)."""
    y_true = tf.cast(y_true, tf.float32)
    if y_true.shape[-1] == 2:
        return y_true[..., :1], y_true[..., 1:]
    return y_true, None


def _as_float32(y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
    """(vessels, probabilities) as float32, both zeroed outside the FOV when y_true has one
    (the Dice sums then run over the FOV only)."""
    vessels, fov = split_labels(y_true)
    y_pred = tf.cast(y_pred, tf.float32)
    if fov is None:
        return vessels, y_pred
    return vessels * fov, y_pred * fov


@keras.saving.register_keras_serializable(package=PACKAGE)
def dice_coef(y_true, y_pred):
    """Smoothed Dice of probabilities over the whole (global) batch, inside the FOV when
    y_true carries one; float32 scalar."""
    y_true, y_pred = _as_float32(y_true, y_pred)
    intersection, true_sum, pred_sum = global_sums([
        tf.reduce_sum(y_true * y_pred), tf.reduce_sum(y_true), tf.reduce_sum(y_pred)])
    return (2.0 * intersection + SMOOTH) / (true_sum + pred_sum + SMOOTH)


def _bce_and_dice(y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean BCE, smoothed Dice) over the global batch, inside the FOV when y_true has
    one; float32 scalars. y_pred: probabilities [B, H, W, 1]."""
    vessels, fov = split_labels(y_true)
    # Keras' per-pixel BCE (clipped to [eps, 1 - eps]) summed, then averaged globally.
    bce = keras.losses.binary_crossentropy(vessels, tf.cast(y_pred, tf.float32))  # [B, H, W]
    if fov is None:
        bce_sum, count = tf.reduce_sum(bce), tf.cast(tf.size(bce), tf.float32)
    else:
        bce_sum, count = tf.reduce_sum(bce * fov[..., 0]), tf.reduce_sum(fov)
    y_true, y_pred = _as_float32(y_true, y_pred)
    bce_sum, count, intersection, true_sum, pred_sum = global_sums([
        bce_sum, count,
        tf.reduce_sum(y_true * y_pred), tf.reduce_sum(y_true), tf.reduce_sum(y_pred)])
    dice = (2.0 * intersection + SMOOTH) / (true_sum + pred_sum + SMOOTH)
    return bce_sum / tf.maximum(count, 1.0), dice


def _balanced_bce_and_dice(y_true, y_pred) -> tuple[tf.Tensor, tf.Tensor]:
    """(class-balanced BCE, smoothed Dice) over the global batch, inside the FOV when
    y_true has one (module docstring); float32 scalars. y_pred: probabilities
    [B, H, W, 1]."""
    vessels, fov = split_labels(y_true)
    bce = keras.losses.binary_crossentropy(vessels, tf.cast(y_pred, tf.float32))  # [B, H, W]
    counted = tf.ones_like(bce) if fov is None else fov[..., 0]
    positive = vessels[..., 0] * counted
    negative = (1.0 - vessels[..., 0]) * counted
    y_true, y_pred = _as_float32(y_true, y_pred)
    # The class counts are label sums, constants for the gradient: the weights only
    # rescale each class's BCE sum.
    bce_positive, bce_negative, p, n, intersection, true_sum, pred_sum = global_sums([
        tf.reduce_sum(bce * positive), tf.reduce_sum(bce * negative),
        tf.reduce_sum(positive), tf.reduce_sum(counted),
        tf.reduce_sum(y_true * y_pred), tf.reduce_sum(y_true), tf.reduce_sum(y_pred)])
    both_classes = tf.logical_and(p > 0.0, p < n)
    balanced = (bce_positive / (2.0 * tf.maximum(p, 1.0))
                + bce_negative / (2.0 * tf.maximum(n - p, 1.0)))
    plain = (bce_positive + bce_negative) / tf.maximum(n, 1.0)
    dice = (2.0 * intersection + SMOOTH) / (true_sum + pred_sum + SMOOTH)
    return tf.where(both_classes, balanced, plain), dice


@keras.saving.register_keras_serializable(package=PACKAGE)
class BceDiceLoss(keras.losses.Loss):
    """(mean binary cross-entropy + 1 - dice_coef) / 2 over the global batch.

    y_true: float {0, 1} [B, H, W, 1], or [B, H, W, 2] vessels and FOV (only pixels
    inside the FOV count; module docstring); y_pred: probabilities [B, H, W, C] (any
    float dtype); with C > 1 the loss is the mean over the C channels, each against the
    vessels.
    `call` returns the global value repeated per sample ([B]): Keras then averages over
    the local batch and divides by the number of replicas before the gradients are
    summed, which gives exactly the gradient of the global loss.
    """

    def __init__(self, name: str = "bce_dice_loss", reduction: str = "sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")

    @staticmethod
    def single_output(y_true, y_pred):
        """The loss of one output channel y_pred [B, H, W, 1]; float32 scalar."""
        return bce_dice_loss(y_true, y_pred)

    def call(self, y_true, y_pred):
        # Several output channels are the outputs of a deeply supervised model (a W-Net's
        # two U-Nets, trainer/model.py): each is scored against the one label, then averaged.
        channels = y_pred.shape[-1] or 1
        loss = tf.add_n([self.single_output(y_true, y_pred[..., c:c + 1])
                         for c in range(channels)]) / float(channels)
        return tf.fill(tf.shape(y_pred)[:1], loss)


def bce_dice_loss(y_true, y_pred):
    """Functional form of `BceDiceLoss` (a float32 scalar), for numpy checks and tools."""
    bce, dice = _bce_and_dice(y_true, y_pred)
    return (bce + 1.0 - dice) / 2.0


@keras.saving.register_keras_serializable(package=PACKAGE)
class BalancedBceDiceLoss(BceDiceLoss):
    """(class-balanced BCE + 1 - dice_coef) / 2 over the global batch (module docstring):
    vessel and background pixels weigh equally in the BCE, whatever their numbers.

    Labels, predictions, several output channels and the returned [B] (the global value
    repeated per sample, so the gradient is the global loss's under any strategy) are as
    in `BceDiceLoss`.
    """

    def __init__(self, name: str = "balanced_bce_dice_loss",
                 reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    @staticmethod
    def single_output(y_true, y_pred):
        return balanced_bce_dice_loss(y_true, y_pred)


def balanced_bce_dice_loss(y_true, y_pred):
    """Functional form of `BalancedBceDiceLoss` (a float32 scalar), for numpy checks."""
    bce, dice = _balanced_bce_and_dice(y_true, y_pred)
    return (bce + 1.0 - dice) / 2.0


# Metrics


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
        vessels, fov = split_labels(y_true)
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
        value = dice_coef(y_true, final_output(y_pred))
        # Each step counts 1 in all, shared by the replicas that got data (the last batch
        # of a pass may leave a replica empty). Computed from the batch: a constant count
        # could also run in the step whose iterator is exhausted (nothing orders it after).
        has_data = tf.cast(tf.shape(y_true)[0] > 0, tf.float32)
        replicas_with_data = global_sums([has_data])[0]
        weight = has_data / tf.maximum(replicas_with_data, 1.0)
        return super().update_state(value, sample_weight=weight)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FinalOutputAUC(keras.metrics.AUC):
    """Keras' ROC AUC (200 thresholds) of the last output channel (see final_output),
    over the FOV pixels (weight 0 outside) when the labels carry a FOV plane."""

    def __init__(self, name: str = "auc", num_thresholds: int = 200, curve: str = "ROC",
                 **kwargs):
        super().__init__(name=name, num_thresholds=num_thresholds, curve=curve, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        vessels, fov = split_labels(y_true)
        if fov is not None:
            sample_weight = fov if sample_weight is None else sample_weight * fov
        return super().update_state(vessels, final_output(y_pred), sample_weight)


# Learning-rate schedule


@keras.saving.register_keras_serializable(package=PACKAGE)
class CosineCycles(keras.optimizers.schedules.LearningRateSchedule):
    """max_lr -> min_lr along half a cosine every `cycle_steps` steps, then restart."""

    def __init__(self, max_lr: float, min_lr: float, cycle_steps: int):
        if cycle_steps < 1:
            raise ValueError(f"cycle_steps must be >= 1, got {cycle_steps}")
        if not 0 <= min_lr <= max_lr:
            raise ValueError(f"need 0 <= min_lr <= max_lr, got {min_lr} and {max_lr}")
        self.max_lr = float(max_lr)
        self.min_lr = float(min_lr)
        self.cycle_steps = int(cycle_steps)

    def __call__(self, step):
        position = tf.cast(tf.math.floormod(tf.cast(step, tf.int64), self.cycle_steps),
                           tf.float32) / float(self.cycle_steps)
        return self.min_lr + (self.max_lr - self.min_lr) * 0.5 * (
            1.0 + tf.cos(math.pi * position))

    def get_config(self):
        return {"max_lr": self.max_lr, "min_lr": self.min_lr, "cycle_steps": self.cycle_steps}

"""The reference losses, computed in float32 over the whole GLOBAL batch.

`dice_coef` is (2 * sum(t * p) + 1) / (sum(t) + sum(p) + 1) over every pixel of the batch,
and `bce_dice_loss` is (BCE + 1 - dice_coef) / 2, as in the reference. Under a
MirroredStrategy each replica sees only its slice of the batch, so the sums are
all-reduced across replicas (the all-reduce is differentiable): N replicas with a
global batch B compute the same loss and the same gradients as one replica with batch B.

Labels (y_true) are [B, H, W, 1] vessels, or [B, H, W, 2] vessels then field of view
(`[train] loss_mask = "fov"`, the reader's `with_fov`; `split_labels`). With a FOV plane
only pixels inside it count: BCE is averaged over the FOV pixels of the global batch and
every Dice sum runs over them, so what the model predicts outside the FOV changes
nothing. An all-ones FOV gives exactly the unmasked values.
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

PACKAGE = "vessel"
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

    def call(self, y_true, y_pred):
        # Several output channels are the outputs of a deeply supervised model (a W-Net's
        # two U-Nets, trainer/model.py): each is scored against the one label, then averaged.
        channels = y_pred.shape[-1] or 1
        loss = tf.add_n([bce_dice_loss(y_true, y_pred[..., c:c + 1])
                         for c in range(channels)]) / float(channels)
        return tf.fill(tf.shape(y_pred)[:1], loss)


def bce_dice_loss(y_true, y_pred):
    """Functional form of `BceDiceLoss` (a float32 scalar), for numpy checks and tools."""
    bce, dice = _bce_and_dice(y_true, y_pred)
    return (bce + 1.0 - dice) / 2.0


LOSSES = {"bce_dice_loss": BceDiceLoss}


def get_loss(name: str) -> keras.losses.Loss:
    """The loss named in `[model] loss`; a clear error for unknown names."""
    if name not in LOSSES:
        raise ValueError(f"[model] loss {name!r} is not available; known: {', '.join(LOSSES)}")
    return LOSSES[name]()

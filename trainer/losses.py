"""The losses `[model] loss` names.

The losses themselves are defined with the other custom Keras objects in
tiled_vessel_seg/keras_objects.py, because a saved model names its loss and must load
without the trainer:

    bce_dice_loss            BceDiceLoss: the reference's (BCE + 1 - Dice) / 2
    balanced_bce_dice_loss   BalancedBceDiceLoss: (class-balanced BCE + 1 - Dice) / 2, the
                             BCE of vessel and background pixels weighted to count equally

both over the global batch, inside the FOV when the labels carry one. The names a config
may give are configs/schema.py's LOSS_NAMES (checked when the config is read).
"""
from __future__ import annotations

import keras

from tiled_vessel_seg import keras_objects

LOSSES = {"bce_dice_loss": keras_objects.BceDiceLoss,
          "balanced_bce_dice_loss": keras_objects.BalancedBceDiceLoss}


def get_loss(name: str) -> keras.losses.Loss:
    """The loss named in `[model] loss`; a clear error for unknown names."""
    if name not in LOSSES:
        raise ValueError(f"[model] loss {name!r} is not available; known: {', '.join(LOSSES)}")
    return LOSSES[name]()

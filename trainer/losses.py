"""The loss `[model] loss` names.

The loss itself (BceDiceLoss: the reference's (BCE + 1 - Dice) / 2 over the global
batch, inside the FOV when the labels carry one) is defined with the other custom Keras
objects in tiled_vessel_seg/keras_objects.py, because a saved model names it and must
load without the trainer.
"""
from __future__ import annotations

import keras

from tiled_vessel_seg import keras_objects

LOSSES = {"bce_dice_loss": keras_objects.BceDiceLoss}


def get_loss(name: str) -> keras.losses.Loss:
    """The loss named in `[model] loss`; a clear error for unknown names."""
    if name not in LOSSES:
        raise ValueError(f"[model] loss {name!r} is not available; known: {', '.join(LOSSES)}")
    return LOSSES[name]()

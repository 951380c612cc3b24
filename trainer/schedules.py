"""Learning-rate schedules selected by `[train] lr_schedule`.

"plateau": the constant `[model] learning_rate`, cut by ReduceLROnPlateau (the reference).
"cosine":  cosine cycles with warm restarts (lwnet: Adam from 1e-2 down to 1e-8), per step

    lr(step) = min_lr + (max_lr - min_lr) * (1 + cos(pi * (step mod C) / C)) / 2,

with C = cosine_cycle_epochs x steps_per_epoch: max_lr at the first step of every cycle,
min_lr approached at its last. The schedule is a function of the optimizer's iteration
count, so a run resumed by BackupAndRestore continues on the same curve.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from tiled_vessel_seg.trainer import losses


@keras.saving.register_keras_serializable(package=losses.PACKAGE)
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


def learning_rate(config, steps_per_epoch: int):
    """What the optimizer's `learning_rate` is for `config`: a float (plateau) or a schedule."""
    if config.train.lr_schedule == "cosine":
        return CosineCycles(config.model.learning_rate, config.train.min_learning_rate,
                            config.train.cosine_cycle_epochs * steps_per_epoch)
    return config.model.learning_rate


def uses_plateau_reduction(config) -> bool:
    """ReduceLROnPlateau runs only on a constant rate (Keras cannot set a schedule)."""
    return config.train.learning_rate_reducer and config.train.lr_schedule == "plateau"

"""Learning-rate schedules selected by `[train] lr_schedule`.

"plateau": the constant `[model] learning_rate`, cut by ReduceLROnPlateau (the reference).
"cosine":  cosine cycles with warm restarts (lwnet: Adam from 1e-2 down to 1e-8), per step

    lr(step) = min_lr + (max_lr - min_lr) * (1 + cos(pi * (step mod C) / C)) / 2,

with C = cosine_cycle_epochs x steps_per_epoch: max_lr at the first step of every cycle,
min_lr approached at its last. The schedule is a function of the optimizer's iteration
count, so a run resumed by BackupAndRestore continues on the same curve. `CosineCycles`
is defined with the other custom Keras objects in tiled_vessel_seg/keras_objects.py
(a saved compiled model names it).
"""
from __future__ import annotations

from tiled_vessel_seg.configs.schema import Config
from tiled_vessel_seg.keras_objects import CosineCycles


def learning_rate(config: Config, steps_per_epoch: int) -> float | CosineCycles:
    """What the optimizer's `learning_rate` is for `config`: a float (plateau) or a schedule."""
    if config.train.lr_schedule == "cosine":
        return CosineCycles(config.model.learning_rate, config.train.min_learning_rate,
                            config.train.cosine_cycle_epochs * steps_per_epoch)
    return config.model.learning_rate


def uses_plateau_reduction(config: Config) -> bool:
    """ReduceLROnPlateau runs only on a constant rate (Keras cannot set a schedule)."""
    return config.train.learning_rate_reducer and config.train.lr_schedule == "plateau"

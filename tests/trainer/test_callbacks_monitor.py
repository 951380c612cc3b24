"""The resumable monitors of trainer/callbacks.py in both directions ([train] monitor):
`_replay` by hand, against Keras' own callbacks fed the same values, and a resumed
EarlyStopping / ReduceLROnPlateau that continues from the replayed best and wait."""
import math
import types

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.trainer import callbacks as callbacks_lib  # noqa: E402

DICE = [0.5, 0.6, 0.55, 0.58, 0.61, 0.6]  # a val_dice curve: higher is better


def test_replay_max_mode_by_hand():
    assert callbacks_lib._replay(DICE, 0.0, mode="max") == (0.61, 1)
    # min_delta 0.02: after 0.6 only a value above 0.62 improves.
    assert callbacks_lib._replay(DICE, 0.02, mode="max") == (0.6, 4)
    # A LR reduction every 2 epochs without improvement zeroes the count.
    assert callbacks_lib._replay(DICE, 0.02, reset_after=2, mode="max") == (0.6, 0)
    assert callbacks_lib._replay(DICE, 0.02, reset_after=3, mode="max") == (0.6, 1)
    # Missing (None) and nan values never improve; they count as epochs without one.
    assert callbacks_lib._replay([None, 0.3, math.nan, 0.2], 0.0, mode="max") == (0.3, 2)
    assert callbacks_lib._replay([None], 0.0, mode="max") == (-math.inf, 1)


def test_replay_min_mode_is_unchanged():
    assert callbacks_lib._replay([0.5, 0.4, 0.45], 0.0) == (0.4, 1)
    assert callbacks_lib._replay([0.5, 0.4, 0.45], 0.0, mode="min") == (0.4, 1)
    # The max replay of a curve is the min replay of its negation.
    best, wait = callbacks_lib._replay([-v for v in DICE], 0.02, reset_after=3)
    assert (-best, wait) == callbacks_lib._replay(DICE, 0.02, reset_after=3, mode="max")


def fake_model(learning_rate=0.1):
    """What EarlyStopping and ReduceLROnPlateau touch: stop_training and an optimizer."""
    return types.SimpleNamespace(stop_training=False,
                                 optimizer=keras.optimizers.Adam(learning_rate))


def run_keras(callback, values):
    callback.set_model(fake_model())
    callback.on_train_begin()
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {"val_dice": value})
    return callback


@pytest.mark.parametrize("mode", ["min", "max"])
def test_replay_reaches_the_state_keras_reaches(mode):
    values = list(np.random.default_rng(4).random(12) * 0.1 + np.linspace(0.5, 0.6, 12))
    stopping = run_keras(keras.callbacks.EarlyStopping(
        monitor="val_dice", mode=mode, patience=100, min_delta=0.005), values)
    assert callbacks_lib._replay(values, 0.005, mode=mode) == (stopping.best, stopping.wait)
    plateau = run_keras(keras.callbacks.ReduceLROnPlateau(
        monitor="val_dice", mode=mode, patience=2, min_delta=0.005), values)
    assert callbacks_lib._replay(values, 0.005, reset_after=2, mode=mode) == (
        plateau.best, plateau.wait)


def test_resumed_early_stopping_in_max_mode_continues_from_the_past():
    stopping = callbacks_lib.ResumableEarlyStopping(
        past_values=[0.5, 0.7, 0.6], monitor="val_dice", mode="max", patience=3)
    model = fake_model()
    stopping.set_model(model)
    stopping.on_train_begin()
    assert (stopping.best, stopping.wait) == (0.7, 1)
    stopping.on_epoch_end(3, {"val_dice": 0.65})
    assert stopping.wait == 2 and not model.stop_training
    stopping.on_epoch_end(4, {"val_dice": 0.69})  # 3 epochs without beating 0.7
    assert stopping.wait == 3 and model.stop_training
    # A higher value is an improvement (in mode "min" it would not be).
    again = callbacks_lib.ResumableEarlyStopping(
        past_values=[0.5, 0.7, 0.6], monitor="val_dice", mode="max", patience=3)
    again.set_model(fake_model())
    again.on_train_begin()
    again.on_epoch_end(3, {"val_dice": 0.71})
    assert (again.best, again.wait) == (0.71, 0)


def test_resumed_plateau_reduction_in_max_mode_continues_from_the_past():
    plateau = callbacks_lib.ResumableReduceLROnPlateau(
        past_values=[0.5, 0.7, 0.6, 0.65], monitor="val_dice", mode="max", patience=2,
        factor=0.5)
    model = fake_model(0.1)
    plateau.set_model(model)
    plateau.on_train_begin()
    # The rate was cut after epoch 3 (2 epochs below 0.7): the count restarted there.
    assert (plateau.best, plateau.wait) == (0.7, 0)
    plateau.on_epoch_end(4, {"val_dice": 0.66})
    assert plateau.wait == 1
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)
    plateau.on_epoch_end(5, {"val_dice": 0.68})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_best_epoch_follows_the_monitor():
    history = {"epoch": [0, 1, 2, 3], "val_loss": [0.4, 0.3, 0.35, 0.32],
               "val_dice": [0.6, 0.65, 0.7, None], "val_auc": [0.9, 0.95, 0.94, math.nan]}
    assert callbacks_lib.best_epoch_number(history) == 2  # Keras numbers from 1
    assert callbacks_lib.best_epoch_number(history, "val_dice") == 3
    assert callbacks_lib.best_epoch_number(history, "val_auc") == 2
    assert callbacks_lib.best_epoch_number({"epoch": [0], "val_dice": [None]},
                                           "val_dice") is None

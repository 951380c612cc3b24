"""[train] monitor: the callbacks `make_callbacks` builds watch it in its direction, and
a resumed run starts them from the monitor's past values in history.json."""
import json
import math
import os

import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import ConfigError, load_config, schema  # noqa: E402
from tiled_vessel_seg.trainer import callbacks as callbacks_lib  # noqa: E402
from tiled_vessel_seg.trainer import model as model_lib  # noqa: E402
from tiled_vessel_seg.trainer import train as train_lib  # noqa: E402

HISTORY = {"epoch": [0, 1, 2, 3, 4],
           "val_loss": [0.40, 0.30, 0.35, 0.33, 0.20],
           "val_dice": [0.60, 0.72, 0.70, 0.71, 0.90],
           "val_auc": [0.90, 0.93, 0.95, math.nan, 0.99]}


def by_type(callbacks):
    found = {}
    for callback in callbacks:
        for kind in (callbacks_lib.EpochLogs, model_lib.InferenceCheckpoint,
                     callbacks_lib.ResumableEarlyStopping,
                     callbacks_lib.ResumableReduceLROnPlateau):
            if isinstance(callback, kind):
                found[kind] = callback
    return found


@pytest.mark.parametrize("monitor, mode", [("val_loss", "min"), ("val_dice", "max"),
                                           ("val_auc", "max")])
def test_the_callbacks_watch_the_monitor(tmp_path, monitor, mode):
    config = load_config(None, [f"train.monitor={monitor!r}"])
    assert config.train.monitor_mode == mode
    found = by_type(train_lib.make_callbacks(config, str(tmp_path), 0))
    assert len(found) == 4  # the default config cuts the rate on a plateau
    assert found[callbacks_lib.EpochLogs].monitor == monitor
    for kind in (model_lib.InferenceCheckpoint, callbacks_lib.ResumableEarlyStopping,
                 callbacks_lib.ResumableReduceLROnPlateau):
        assert (found[kind].monitor, found[kind].mode) == (monitor, mode), kind.__name__
    assert found[model_lib.InferenceCheckpoint].best is None  # a fresh run
    assert found[callbacks_lib.ResumableEarlyStopping].past_values == []


def test_the_default_is_val_loss():
    assert schema.TrainConfig().monitor == "val_loss"
    assert load_config(None, []).train.monitor_mode == "min"
    with pytest.raises(ConfigError, match=r"\[train\] monitor must be val_loss, val_dice "
                                          r"or val_auc, got 'val_iou'"):
        load_config(None, ["train.monitor='val_iou'"])


def resumed(tmp_path, monitor, resume_epoch=4):
    """The callbacks of a run resumed at `resume_epoch` with HISTORY on disk, started."""
    with open(os.path.join(tmp_path, callbacks_lib.HISTORY_FILE), "w") as f:
        json.dump(HISTORY, f)
    config = load_config(None, [f"train.monitor={monitor!r}", "train.patience=5",
                                "train.reducer_patience=2"])
    found = by_type(train_lib.make_callbacks(config, str(tmp_path), resume_epoch))
    for kind in (callbacks_lib.ResumableEarlyStopping,
                 callbacks_lib.ResumableReduceLROnPlateau):
        found[kind].on_train_begin()
    return found


def test_a_resumed_run_in_max_mode_starts_from_the_past_best(tmp_path):
    # Epochs 0-3 came before the restart (epoch 4 is redone): val_dice best 0.72 at epoch
    # 1, then 2 epochs without beating it.
    found = resumed(tmp_path, "val_dice")
    assert found[model_lib.InferenceCheckpoint].best == pytest.approx(0.72)
    stopping = found[callbacks_lib.ResumableEarlyStopping]
    assert (stopping.best, stopping.wait) == (pytest.approx(0.72), 2)
    plateau = found[callbacks_lib.ResumableReduceLROnPlateau]
    assert (plateau.best, plateau.wait) == (pytest.approx(0.72), 0)  # cut after epoch 3
    # The checkpoint saves a value above the past best only.
    checkpoint = found[model_lib.InferenceCheckpoint]
    checkpoint._set_monitor_op()
    assert not checkpoint._should_save_model(4, None, {"val_dice": 0.71}, "unused")
    assert checkpoint._should_save_model(4, None, {"val_dice": 0.73}, "unused")


def test_a_resumed_run_skips_nan_and_later_epochs(tmp_path):
    found = resumed(tmp_path, "val_auc")  # epoch 3's nan is no best; epoch 4 is redone
    assert found[model_lib.InferenceCheckpoint].best == pytest.approx(0.95)
    stopping = found[callbacks_lib.ResumableEarlyStopping]
    assert (stopping.best, stopping.wait) == (pytest.approx(0.95), 1)


def test_a_resumed_run_in_min_mode_is_as_before(tmp_path):
    found = resumed(tmp_path, "val_loss")
    assert found[model_lib.InferenceCheckpoint].best == pytest.approx(0.30)
    stopping = found[callbacks_lib.ResumableEarlyStopping]
    assert (stopping.best, stopping.wait) == (pytest.approx(0.30), 2)

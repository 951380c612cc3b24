"""history.json records each epoch's time, and a resumed run counts the epochs it kept from
the stopped run (`callbacks.carried_epochs`), so vessel-cv's training time covers both."""
import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.pipeline import stages  # noqa: E402
from tiled_vessel_seg.trainer import callbacks  # noqa: E402


def test_carried_epochs_by_hand():
    before = {"epoch": [0, 1, 2], "loss": [0.5, 0.4, 0.3], "val_auc": [float("nan")] * 3,
              "epoch_seconds": [10.0, 11.0, 12.0], "epoch_cpu_seconds": [19.0, 20.0, 21.0]}
    # The resumed run went back to epoch 2 (its backup was from before it) and went on to 3.
    after = {"epoch": [0, 1, 2, 3], "loss": [0.5, 0.4, 0.3, 0.2], "val_auc": [float("nan")] * 4,
             "epoch_seconds": [10.0, 11.0, 9.5, 9.0],
             "epoch_cpu_seconds": [19.0, 20.0, 18.0, 17.0]}
    carried = callbacks.carried_epochs(before, after)
    assert carried == callbacks.CarriedEpochs(2, 21.0, 39.0, True)
    assert stages.resumed_note(carried) == " (resumed: 2 epochs from a stopped run, 21 s more)"
    assert callbacks.carried_epochs({}, after) == callbacks.CarriedEpochs()
    assert stages.resumed_note(callbacks.CarriedEpochs()) == ""
    # A history.json from before epoch times were recorded: the epochs, time unknown.
    old = {"epoch": [0, 1], "loss": [0.5, 0.4]}
    carried = callbacks.carried_epochs(old, {"epoch": [0, 1, 2], "loss": [0.5, 0.4, 0.3],
                                             "epoch_seconds": [None, None, 9.0]})
    assert (carried.epochs, carried.seconds, carried.timed) == (2, 0.0, False)
    assert stages.resumed_note(carried).endswith("their time unknown)")


def test_a_resumed_fit_keeps_the_first_runs_epoch_times(tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def fit(initial_epoch, epochs):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        model.fit(x, y, epochs=epochs, initial_epoch=initial_epoch, verbose=0,
                  callbacks=[callbacks.EpochLogs(str(tmp_path), metrics=("loss", "loss"))])
        return json.loads((tmp_path / callbacks.HISTORY_FILE).read_text())

    first = fit(0, 2)
    assert first["epoch"] == [0, 1]
    assert all(s >= 0 for s in first["epoch_seconds"] + first["epoch_cpu_seconds"])
    # Killed during epoch 1 with a backup from epoch 0: the next run trains epochs 1-2.
    resumed = fit(1, 3)
    assert resumed["epoch"] == [0, 1, 2]
    assert resumed["epoch_seconds"][0] == first["epoch_seconds"][0]
    carried = callbacks.carried_epochs(first, resumed)
    assert carried.epochs == 1 and carried.timed
    assert carried.seconds == first["epoch_seconds"][0]
    assert carried.cpu_seconds == first["epoch_cpu_seconds"][0]

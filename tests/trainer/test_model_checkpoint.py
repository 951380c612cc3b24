"""best_model.keras is replaced atomically (issue 18.3): a save that fails half-way leaves the
previous best model whole and loadable, and no temporary file."""
import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import load_config  # noqa: E402
from tiled_vessel_seg.trainer import model as model_lib  # noqa: E402

TINY = ["preprocess.tile_size=16", "model.base_filters=2", "model.num_layers=2",
        "model.base_kernels=(3,3)", "model.dilation=(1,1)"]


class HalfWritten(Exception):
    pass


@pytest.fixture
def model():
    built = model_lib.build_model(load_config(None, TINY).model)
    built.compile(optimizer="adam", loss="binary_crossentropy")
    return built


def _fail_half_way(monkeypatch):
    """Makes Keras stop after it has opened the archive and written its config, as a kill
    or a full disk in the middle of the weights would."""
    from keras.src.saving import saving_lib

    def broken(*args, **kwargs):
        raise HalfWritten("no space left on device")
    monkeypatch.setattr(saving_lib, "_save_state", broken)


def test_a_save_failing_half_way_keeps_the_previous_best_model(model, tmp_path, monkeypatch):
    path = str(tmp_path / "best_model.keras")
    checkpoint = model_lib.InferenceCheckpoint(path, monitor="val_loss", save_best_only=True)
    checkpoint.set_model(model)
    checkpoint.on_epoch_begin(0)
    checkpoint.on_epoch_end(0, {"val_loss": 1.0})
    first = [np.array(w) for w in model.get_weights()]
    first_bytes = open(path, "rb").read()

    model.set_weights([w + 1.0 for w in first])  # epoch 1 changes the weights ...
    _fail_half_way(monkeypatch)
    checkpoint.on_epoch_begin(1)
    with pytest.raises(HalfWritten):  # ... and improves, but the save fails half-way
        checkpoint.on_epoch_end(1, {"val_loss": 0.5})
    monkeypatch.undo()

    assert open(path, "rb").read() == first_bytes
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    for saved, expected in zip(loaded.get_weights(), first):
        np.testing.assert_array_equal(saved, expected)
    assert os.listdir(tmp_path) == ["best_model.keras"]  # no temporary file left


def test_an_improvement_replaces_the_file_with_the_new_weights(model, tmp_path):
    path = str(tmp_path / "best_model.keras")
    checkpoint = model_lib.InferenceCheckpoint(path, monitor="val_loss", save_best_only=True)
    checkpoint.set_model(model)
    checkpoint.on_epoch_end(0, {"val_loss": 1.0})
    changed = [np.array(w) + 0.5 for w in model.get_weights()]
    model.set_weights(changed)
    checkpoint.on_epoch_end(1, {"val_loss": 2.0})  # worse: the file keeps epoch 0
    model.set_weights([w * 3.0 for w in changed])
    checkpoint.on_epoch_end(2, {"val_loss": 0.1})  # better: the file holds epoch 2
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    for saved, expected in zip(loaded.get_weights(), [w * 3.0 for w in changed]):
        np.testing.assert_array_equal(saved, expected)
    assert os.listdir(tmp_path) == ["best_model.keras"]


def test_a_temporary_file_of_a_killed_save_is_removed_when_training_starts(model, tmp_path):
    path = str(tmp_path / "best_model.keras")
    leftover = tmp_path / "best_model.keras.tmp-123-abcdef01.keras"
    leftover.write_bytes(b"PK\x03\x04 half an archive")
    checkpoint = model_lib.InferenceCheckpoint(path, monitor="val_loss", save_best_only=True)
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    assert not leftover.exists()

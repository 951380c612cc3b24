"""best_model.keras as a symbolic link to a file outside the model dir is refused, as a
model_file path outside it is (issue 18, minor)."""
from __future__ import annotations

import os
import shutil

import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg import model_info as model_info_lib  # noqa: E402
from tiled_vessel_seg import model_loading  # noqa: E402


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)
    path = tmp_path_factory.mktemp("elsewhere") / "other.keras"
    keras.Model(inp, out).save(str(path))
    return path


def _model_dir(folder):
    folder.mkdir()
    model_info_lib.write_model_info(str(folder), model_info_lib.ModelInfo(
        tile_size=16, scale=1, overlap=4, threshold=0.5))
    return folder


def test_a_link_to_a_file_outside_the_model_dir_is_refused(keras_file, tmp_path):
    model_dir = _model_dir(tmp_path / "model")
    os.symlink(keras_file, model_dir / "best_model.keras")
    with pytest.raises(model_info_lib.ModelDirError, match="outside the model dir"):
        model_loading.load_model(str(model_dir))


def test_a_link_inside_the_model_dir_and_a_linked_model_dir_still_load(keras_file, tmp_path):
    model_dir = _model_dir(tmp_path / "model")
    shutil.copy(keras_file, model_dir / "epoch_7.keras")
    os.symlink("epoch_7.keras", model_dir / "best_model.keras")
    model, _ = model_loading.load_model(str(model_dir))
    assert model.input_shape == (None, 16, 16, 3)
    os.symlink(model_dir, tmp_path / "link_to_model")
    assert model_loading.load_model(str(tmp_path / "link_to_model"))[0] is not None

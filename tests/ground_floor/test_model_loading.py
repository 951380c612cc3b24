"""model_loading, the one model loader: a .keras file loaded member by member from disk (not
read whole into memory), with Keras' own loader and safe_mode; model dirs local or remote."""
import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg import model_info  # noqa: E402
from tiled_vessel_seg import model_loading  # noqa: E402


def _small_model():
    keras.utils.set_random_seed(3)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    return keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))


def test_loads_the_saved_weights_and_outputs(tmp_path):
    model = _small_model()
    path = tmp_path / "best_model.keras"
    model.save(path)
    loaded = model_loading.load_keras_file(str(path))
    for saved, got in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(saved, got)
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)


def test_code_in_a_keras_file_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    marker_path = str(marker)
    inp = keras.Input((8, 8, 3))
    out = keras.layers.Lambda(lambda x: x[..., :1] + float(open(marker_path, "w").close() or 0))(inp)
    keras.Model(inp, out).save(tmp_path / "best_model.keras")
    marker.unlink()
    model_info.write_model_info(str(tmp_path), model_info.ModelInfo(tile_size=8, scale=1))
    with pytest.raises(model_info.ModelDirError, match="(?i)lambda|safe_mode"):
        model_loading.load_model(str(tmp_path))
    assert not marker.exists()


def test_a_member_that_inflates_like_a_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "best_model.keras"
    _small_model().save(path)
    real_infolist = zipfile.ZipFile.infolist

    def inflated(self):
        infos = real_infolist(self)
        for info in infos:
            if info.filename == "model.weights.h5":
                info.file_size = 5 << 30  # as a forged header would declare
        return infos
    monkeypatch.setattr(zipfile.ZipFile, "infolist", inflated)
    with pytest.raises(ValueError, match="inflates"):
        model_loading.load_keras_file(str(path))


def test_not_a_zip_is_a_model_dir_error(tmp_path):
    (tmp_path / "best_model.keras").write_bytes(b"not a zip")
    (tmp_path / "model_info.json").write_text(json.dumps({"tile_size": 8, "scale": 1}))
    with pytest.raises(model_info.ModelDirError, match="cannot load the model"):
        model_loading.load_model(str(tmp_path))

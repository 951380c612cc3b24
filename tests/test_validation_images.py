"""The per-epoch TensorBoard images of a validation photo: tags, steps and pixels against
the tiled predictor and the numpy error map."""
import glob

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg.inference import error_map  # noqa: E402
from tiled_vessel_seg.inference.predictor import TiledPredictor  # noqa: E402
from tiled_vessel_seg.inference.validation_images import ValidationImageSummary  # noqa: E402


def _events(log_dir):
    out = {}
    for path in glob.glob(f"{log_dir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                out[(value.tag, event.step)] = tf.make_ndarray(value.tensor)
    return out


def test_probability_and_error_map_each_epoch(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same",
                                                 activation="sigmoid")(inp))
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    truth = (rng.random((30, 41)) > 0.7).astype(np.uint8) * 255
    callback = ValidationImageSummary("im0005", photo, truth, str(tmp_path / "val"),
                                      tile_size=16, overlap=4, scale=1)
    callback.set_model(model)
    callback.on_epoch_end(0)
    callback.on_epoch_end(1)
    events = _events(tmp_path / "val")
    assert {k for k in events} == {(f"validation/im0005/{n}", s)
                                   for n in ("probability", "errors") for s in (1, 2)}
    _, mask = TiledPredictor(model, overlap=4)(photo)
    expected = error_map.error_map(mask.numpy(), truth)
    # Image summaries hold [width, height, PNG bytes].
    png = events[("validation/im0005/errors", 2)][2]
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), expected)
    probability = tf.io.decode_png(events[("validation/im0005/probability", 1)][2]).numpy()
    assert probability.shape == (30, 41, 1)


def test_a_failure_is_logged_once_and_training_goes_on(tmp_path):
    callback = ValidationImageSummary("x", np.zeros((8, 8, 3), np.uint8), np.zeros((9, 9)),
                                      str(tmp_path), tile_size=16, overlap=4, scale=1)
    inp = keras.Input((16, 16, 3))
    callback.set_model(keras.Model(inp, keras.layers.Conv2D(1, 1)(inp)))
    callback.on_epoch_end(0)  # shapes differ: the error map fails, nothing raises
    callback.on_epoch_end(1)
    assert callback._failed  # pylint: disable=protected-access

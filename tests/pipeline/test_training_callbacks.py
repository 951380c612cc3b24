"""The per-epoch TensorBoard images of a validation photo: tags, steps and pixels against
the tiled predictor and the numpy error map."""
import glob
import logging

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg.inference.predictor import TiledPredictor  # noqa: E402
from tiled_vessel_seg.pipeline.training_callbacks import ValidationImageSummary  # noqa: E402


def _expected_error_map(predicted, truth):
    """The documented colours, painted by hand: white TP, red FP, blue FN, black TN."""
    p, t = np.asarray(predicted) > 0, np.asarray(truth) > 0
    out = np.zeros(p.shape + (3,), np.uint8)
    out[p & t] = (255, 255, 255)
    out[p & ~t] = (255, 0, 0)
    out[~p & t] = (0, 0, 255)
    return out


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
    expected = _expected_error_map(mask.numpy(), truth)
    assert 0 < np.count_nonzero(expected.any(-1)) < expected.shape[0] * expected.shape[1]
    # Image summaries hold [width, height, PNG bytes].
    png = events[("validation/im0005/errors", 2)][2]
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), expected)
    probability = tf.io.decode_png(events[("validation/im0005/probability", 1)][2]).numpy()
    assert probability.shape == (30, 41, 1)


def test_a_failure_is_logged_once_and_training_goes_on(tmp_path, caplog):
    # the truth's shape differs from the photo's: the error map fails in every epoch
    callback = ValidationImageSummary("x", np.zeros((8, 8, 3), np.uint8), np.zeros((9, 9)),
                                      str(tmp_path), tile_size=16, overlap=4, scale=1)
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(inp))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((4, 16, 16, 3), np.float32), np.zeros((4, 16, 16, 1), np.float32)
    with caplog.at_level(logging.WARNING):
        history = model.fit(x, y, epochs=3, batch_size=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 3  # every epoch ran
    disabled = [r.getMessage() for r in caplog.records
                if "validation image for TensorBoard disabled" in r.getMessage()]
    assert len(disabled) == 1, disabled  # said once, not every epoch
    assert "(8, 8)" in disabled[0] and "(9, 9)" in disabled[0]  # with the reason

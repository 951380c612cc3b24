"""[model] loss = "balanced_bce_dice_loss": (class-balanced BCE + 1 - Dice) / 2 against
numpy, with and without a FOV plane, with a W-Net's two output channels, the one-class
fallback, the global value under MirroredStrategy and a safe_mode save/load round trip.

The numpy reference weights every counted pixel as the definition says (vessels
N / (2 P), background N / (2 (N - P)), P and N counted inside the FOV over the whole
batch) and averages over the N pixels; BCE is clipped at 1e-7 as Keras clips it.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.helpers import loss_on_two_replicas  # noqa: E402
from tiled_vessel_seg import keras_objects  # noqa: E402
from tiled_vessel_seg.configs import schema  # noqa: E402
from tiled_vessel_seg.trainer import losses  # noqa: E402

EPS = 1e-7


def np_balanced_loss(t, p, fov=None):
    """(class-balanced BCE + 1 - smoothed Dice) / 2 over the pixels inside `fov`
    (every pixel when None); numpy float64. One class only: plain BCE."""
    inside = np.ones(t.shape, bool) if fov is None else fov > 0.5
    t, p = t[inside].astype(np.float64), p[inside].astype(np.float64)
    q = np.clip(p, EPS, 1 - EPS)
    bce = -(t * np.log(q) + (1 - t) * np.log(1 - q))
    n, positives = t.size, t.sum()
    if 0 < positives < n:
        weights = np.where(t > 0.5, n / (2 * positives), n / (2 * (n - positives)))
    else:
        weights = np.ones_like(t)
    dice = (2 * np.sum(t * p) + 1) / (np.sum(t) + np.sum(p) + 1)
    return (np.mean(weights * bce) + 1 - dice) / 2


def labels(t, fov):
    return np.concatenate([t, fov], axis=-1)


@pytest.fixture(scope="module")
def example():
    """2 tiles of 6x6 with ~20 % vessels, a disc-like FOV (corners outside) and
    predictions in (0, 1) correlated with the vessels."""
    rng = np.random.default_rng(21)
    yy, xx = np.mgrid[:6, :6]
    disc = ((yy - 2.5) ** 2 + (xx - 2.5) ** 2 <= 9).astype(np.float32)
    fov = np.stack([disc, np.roll(disc, 1, axis=0)])[..., None]
    t = (rng.random((2, 6, 6, 1)) < 0.2).astype(np.float32)
    p = np.clip(0.5 * t + 0.5 * rng.random(t.shape), 0.02, 0.98).astype(np.float32)
    return t, p, fov


def test_hand_worked_value():
    # 1 vessel among 4 pixels: w+ = 4 / 2 = 2, w- = 4 / 6; BCE -ln 0.8 on the first three
    # pixels, -ln 0.4 on the last: balanced BCE = (2 (-ln 0.8) + (2 (-ln 0.8) - ln 0.4)
    # 2 / 3) / 4; Dice = (2 * 0.8 + 1) / (1 + 1.8 + 1).
    t = np.array([1, 0, 0, 0], np.float32).reshape(1, 2, 2, 1)
    p = np.array([0.8, 0.2, 0.2, 0.6], np.float32).reshape(1, 2, 2, 1)
    bce = (2 * -np.log(0.8) + (2 * -np.log(0.8) - np.log(0.4)) * 2 / 3) / 4
    expected = (bce + 1 - 2.6 / 3.8) / 2
    assert float(keras_objects.balanced_bce_dice_loss(t, p)) == pytest.approx(expected,
                                                                               rel=1e-6)
    assert np_balanced_loss(t, p) == pytest.approx(expected, rel=1e-6)  # p is float32
    # Plain BCE weighs the one vessel pixel a quarter: the balanced loss is not it.
    assert abs(float(keras_objects.bce_dice_loss(t, p)) - expected) > 1e-2


def test_matches_numpy_without_a_fov_plane(example):
    t, p, _ = example
    expected = np_balanced_loss(t, p)
    assert float(keras_objects.balanced_bce_dice_loss(t, p)) == pytest.approx(expected,
                                                                               rel=1e-5)
    got = keras_objects.BalancedBceDiceLoss()(tf.constant(t), tf.constant(p))
    assert got.dtype == tf.float32 and float(got) == pytest.approx(expected, rel=1e-5)


def test_matches_numpy_inside_the_fov(example):
    t, p, fov = example
    expected = np_balanced_loss(t, p, fov)
    assert float(keras_objects.balanced_bce_dice_loss(labels(t, fov), p)) == pytest.approx(
        expected, rel=1e-5)
    assert abs(expected - np_balanced_loss(t, p)) > 1e-3  # the mask does something
    # Labels and predictions outside the FOV change nothing (P and N included).
    outside = fov == 0
    t2 = np.where(outside, 1.0 - t, t).astype(np.float32)
    p2 = np.where(outside, 0.5, p).astype(np.float32)
    assert float(keras_objects.BalancedBceDiceLoss()(labels(t2, fov), p2)) == pytest.approx(
        expected, rel=1e-5)
    # An all-ones FOV is the unmasked loss.
    ones = np.ones_like(t)
    assert float(keras_objects.balanced_bce_dice_loss(labels(t, ones), p)) == pytest.approx(
        float(keras_objects.balanced_bce_dice_loss(t, p)), rel=1e-6)


def test_two_output_channels_are_each_scored_then_averaged(example):
    t, p, fov = example
    first = np.clip(p[::-1] * 0.7 + 0.1, 0.0, 1.0).astype(np.float32)
    stacked = np.concatenate([first, p], axis=-1)  # a W-Net's two outputs
    loss = keras_objects.BalancedBceDiceLoss()
    expected = (np_balanced_loss(t, first, fov) + np_balanced_loss(t, p, fov)) / 2
    got = loss(tf.constant(labels(t, fov)), tf.constant(stacked))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    expected = (np_balanced_loss(t, first) + np_balanced_loss(t, p)) / 2
    assert float(loss(tf.constant(t), tf.constant(stacked))) == pytest.approx(expected,
                                                                              rel=1e-5)
    # BceDiceLoss (which it subclasses) still scores each channel with the plain loss.
    plain = keras_objects.BceDiceLoss()(tf.constant(t), tf.constant(stacked))
    assert float(plain) == pytest.approx(np.mean([
        float(keras_objects.bce_dice_loss(t, c)) for c in (first, p)]), rel=1e-6)
    # call() returns the global value once per sample (BceDiceLoss's contract).
    per_sample = loss.call(tf.constant(t), tf.constant(stacked))
    assert per_sample.shape == (2,)
    np.testing.assert_allclose(per_sample.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("case", ["all background", "all vessels", "vessels only outside"])
def test_one_class_batches_fall_back_to_plain_bce(example, case):
    _, p, fov = example
    if case == "all background":
        t, y = np.zeros_like(p), np.zeros_like(p)
    elif case == "all vessels":
        t, y = np.ones_like(p), np.ones_like(p)
    else:  # every vessel pixel outside the FOV: P = 0 among the counted pixels
        t = (fov == 0).astype(np.float32)
        y = labels(t, fov)
    got = keras_objects.balanced_bce_dice_loss(y, p)
    assert np.isfinite(float(got))
    assert float(got) == pytest.approx(float(keras_objects.bce_dice_loss(y, p)), rel=1e-6)
    counted = None if y.shape[-1] == 1 else fov
    assert float(got) == pytest.approx(np_balanced_loss(t, p, counted), rel=1e-5)
    # The gradient is finite too (no 0/0 in the branch tf.where does not take).
    pred = tf.Variable(p)
    with tf.GradientTape() as tape:
        value = keras_objects.BalancedBceDiceLoss()(tf.constant(y), pred)
    assert np.isfinite(tape.gradient(value, pred).numpy()).all()


def test_the_config_name_builds_it():
    assert set(losses.LOSSES) == set(schema.LOSS_NAMES)
    assert isinstance(losses.get_loss("balanced_bce_dice_loss"),
                      keras_objects.BalancedBceDiceLoss)
    assert schema.ModelConfig(loss="balanced_bce_dice_loss").loss == "balanced_bce_dice_loss"
    with pytest.raises(ValueError, match=r"\[model\] loss must be bce_dice_loss or "
                                         r"balanced_bce_dice_loss, got 'focal'"):
        schema.ModelConfig(loss="focal")


def test_the_value_is_global_under_mirrored_strategy():
    rng = np.random.default_rng(9)
    t = (rng.random((4, 6, 6, 1)) < 0.3).astype(np.float32)
    t[2:] = (rng.random((2, 6, 6, 1)) < 0.05)  # the second replica: few vessels
    fov = (rng.random((4, 6, 6, 1)) < 0.8).astype(np.float32)
    p = np.clip(0.5 * t + 0.5 * rng.random(t.shape), 0.02, 0.98).astype(np.float32)
    replicas = loss_on_two_replicas("balanced_bce_dice_loss", labels(t, fov), p)
    expected = np_balanced_loss(t, p, fov)
    assert replicas == [pytest.approx(expected, rel=1e-5)] * 2
    halves = [np_balanced_loss(t[s], p[s], fov[s]) for s in (slice(0, 2), slice(2, 4))]
    assert min(abs(h - expected) for h in halves) > 1e-3


# Plain Keras in a fresh interpreter, no stage imported: the file names the loss as
# "vessel>BalancedBceDiceLoss" and safe_mode finds it through `import tiled_vessel_seg`.
LOAD_SCRIPT = """
import json, sys
import numpy as np
import tiled_vessel_seg
import keras
path = sys.argv[1]
model = keras.models.load_model(path, safe_mode=True)
x, y = np.load(path + '.x.npy'), np.load(path + '.y.npy')
print(json.dumps({"loss_class": type(model.loss).__name__,
                  "registered": keras.saving.get_registered_name(type(model.loss)),
                  "stages": sorted(m for m in sys.modules
                                   if m.startswith("tiled_vessel_seg.trainer")),
                  "loss": float(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])}))
"""


def test_a_compiled_model_saves_and_loads_in_safe_mode(tmp_path):
    import keras
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss=losses.get_loss("balanced_bce_dice_loss"))
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    y = (x[..., :1] > 0.7).astype(np.float32)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "best_model.keras")
    model.save(path)
    np.save(path + ".x.npy", x)
    np.save(path + ".y.npy", y)
    expected = float(model.evaluate(x, y, verbose=0, return_dict=True)["loss"])
    assert expected == pytest.approx(np_balanced_loss(y, model.predict(x, verbose=0)),
                                     rel=1e-4)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, path], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loss_class"] == "BalancedBceDiceLoss"
    assert report["registered"] == "vessel>BalancedBceDiceLoss"
    assert report["stages"] == []
    assert report["loss"] == pytest.approx(expected, abs=1e-6)

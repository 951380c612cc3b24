"""[train] loss_mask = "fov": the loss and metrics over FOV pixels only, against numpy.

Labels carry the FOV as a second plane ([B, H, W, 2]: vessels, FOV); only pixels inside
it may count. References are computed here from the definitions (BCE clipped at 1e-7,
smoothed Dice with 1), on the FOV pixels selected by numpy boolean indexing.
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tests.helpers import loss_on_two_replicas  # noqa: E402
from tiled_vessel_seg import keras_objects  # noqa: E402
from tiled_vessel_seg.trainer import metrics  # noqa: E402

EPS = 1e-7


def np_masked_loss(t, p, fov):
    """(BCE mean over FOV pixels + 1 - smoothed Dice over FOV pixels) / 2, numpy float64."""
    inside = fov > 0.5
    t, p = t[inside].astype(np.float64), np.clip(p[inside].astype(np.float64), EPS, 1 - EPS)
    bce = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    dice = (2 * np.sum(t * p) + 1) / (np.sum(t) + np.sum(p) + 1)
    return (bce + 1 - dice) / 2


@pytest.fixture(scope="module")
def example():
    """2 tiles of 6x6: a disc-like FOV (corners outside), vessels, predictions in (0, 1)."""
    rng = np.random.default_rng(12)
    yy, xx = np.mgrid[:6, :6]
    disc = ((yy - 2.5) ** 2 + (xx - 2.5) ** 2 <= 9).astype(np.float32)
    fov = np.stack([disc, np.roll(disc, 1, axis=1)])[..., None]
    t = (rng.random((2, 6, 6, 1)) < 0.35).astype(np.float32)
    p = np.clip(0.5 * t + 0.5 * rng.random(t.shape), 0.02, 0.98).astype(np.float32)
    return t, p, fov


def labels(t, fov):
    return np.concatenate([t, fov], axis=-1)


def test_hand_worked_masked_dice():
    # 1x2x2: FOV keeps pixels 0 and 2. Inside: t = (1, 0), p = (1, 1) -> (2*1+1)/(1+2+1).
    t = np.array([1, 1, 0, 0], np.float32).reshape(1, 2, 2, 1)
    p = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
    fov = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
    assert float(keras_objects.dice_coef(labels(t, fov), p)) == pytest.approx(0.75)


def test_masked_loss_matches_numpy(example):
    t, p, fov = example
    got = float(keras_objects.bce_dice_loss(labels(t, fov), p))
    assert got == pytest.approx(np_masked_loss(t, p, fov), rel=1e-5)
    # Differs from the unmasked loss on this example (the mask does something).
    assert abs(got - float(keras_objects.bce_dice_loss(t, p))) > 1e-3


def test_pixels_outside_the_fov_change_nothing(example):
    t, p, fov = example
    rng = np.random.default_rng(5)
    outside = fov == 0
    t2 = np.where(outside, 1.0 - t, t).astype(np.float32)
    p2 = np.where(outside, rng.random(p.shape), p).astype(np.float32)
    loss = keras_objects.BceDiceLoss()
    assert float(loss(labels(t2, fov), p2)) == pytest.approx(float(loss(labels(t, fov), p)),
                                                             rel=1e-6)


def test_all_ones_fov_is_the_unmasked_loss(example):
    t, p, _ = example
    ones = np.ones_like(t)
    assert float(keras_objects.bce_dice_loss(labels(t, ones), p)) == pytest.approx(
        float(keras_objects.bce_dice_loss(t, p)), rel=1e-6)
    assert float(keras_objects.dice_coef(labels(t, ones), p)) == pytest.approx(
        float(keras_objects.dice_coef(t, p)), rel=1e-6)


def test_wnet_outputs_are_each_scored_inside_the_fov(example):
    t, p, fov = example
    first = np.clip(p[::-1] * 0.7 + 0.1, 0.0, 1.0).astype(np.float32)
    stacked = np.concatenate([first, p], axis=-1)  # a W-Net's two outputs
    expected = (np_masked_loss(t, first, fov) + np_masked_loss(t, p, fov)) / 2
    assert float(keras_objects.BceDiceLoss()(labels(t, fov), stacked)) == pytest.approx(expected,
                                                                                  rel=1e-5)


def test_metrics_count_fov_pixels_only(example):
    t, p, fov = example
    inside = fov > 0.5
    truth, pred = t[inside] >= 0.5, p[inside] > 0.5
    tp, fp = np.sum(pred & truth), np.sum(pred & ~truth)
    fn, tn = np.sum(~pred & truth), np.sum(~pred & ~truth)
    expected = {"dice": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn),
                "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
                "accuracy": (tp + tn) / inside.sum()}
    for metric in metrics.segmentation_metrics(0.5):
        metric.update_state(labels(t, fov), p)
        if metric.name in expected:
            assert float(metric.result()) == pytest.approx(expected[metric.name], rel=1e-6), \
                metric.name
        elif metric.name == "dice_coef":
            tin, pin = t[inside], p[inside].astype(np.float64)
            assert float(metric.result()) == pytest.approx(
                (2 * np.sum(tin * pin) + 1) / (np.sum(tin) + np.sum(pin) + 1), rel=1e-5)
        else:  # auc: exact ROC AUC over the FOV pixels (Keras' 200 thresholds ~ 1e-2)
            pos, neg = p[inside][t[inside] > 0.5], p[inside][t[inside] <= 0.5]
            auc = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()
                   ) / (len(pos) * len(neg))
            assert float(metric.result()) == pytest.approx(auc, abs=0.02)


def test_threshold_histograms_count_fov_pixels_only(example):
    t, p, fov = example
    model = tf.keras.Sequential([tf.keras.layers.Input((6, 6, 1)),
                                 tf.keras.layers.Lambda(lambda x: x)])
    data = tf.data.Dataset.from_tensors((p, labels(t, fov)))
    pos, neg = metrics.score_histograms(model, data, bins=10)
    inside = fov > 0.5
    index = np.clip((p * 10).astype(int), 0, 9)
    np.testing.assert_array_equal(pos, np.bincount(index[inside & (t > 0.5)], minlength=10))
    np.testing.assert_array_equal(neg, np.bincount(index[inside & (t <= 0.5)], minlength=10))


def test_masked_loss_is_global_under_mirrored_strategy():
    rng = np.random.default_rng(8)
    t = (rng.random((4, 6, 6, 1)) < 0.3).astype(np.float32)
    fov = (rng.random((4, 6, 6, 1)) < 0.7).astype(np.float32)
    fov[2:] = 1.0  # the second replica's tiles lie wholly inside: unequal FOV counts
    p = np.clip(0.5 * t + 0.5 * rng.random(t.shape), 0.02, 0.98).astype(np.float32)
    replicas = loss_on_two_replicas("bce_dice_loss", labels(t, fov), p)
    assert len(replicas) == 2
    for value in replicas:
        assert value == pytest.approx(np_masked_loss(t, p, fov), rel=1e-5)
    # A replica scoring its own half alone would differ.
    halves = [np_masked_loss(t[s], p[s], fov[s]) for s in (slice(0, 2), slice(2, 4))]
    assert min(abs(h - np_masked_loss(t, p, fov)) for h in halves) > 1e-3

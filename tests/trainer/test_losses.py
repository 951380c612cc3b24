"""Loss and metrics against numpy on hand-made arrays (including all-zero masks)."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tiled_vessel_seg import keras_objects  # noqa: E402
from tiled_vessel_seg.trainer import losses, metrics  # noqa: E402

EPS = 1e-7


def np_bce(t, p):
    p = np.clip(p, EPS, 1 - EPS)
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


def np_dice_coef(t, p):
    return float((2 * np.sum(t * p) + 1) / (np.sum(t) + np.sum(p) + 1))


def np_confusion(t, p, threshold=0.5):
    truth, pred = t >= 0.5, p > threshold
    return (np.sum(pred & truth), np.sum(pred & ~truth), np.sum(~pred & truth),
            np.sum(~pred & ~truth))


def ratio(a, b):
    return 1.0 if b == 0 else a / b


def np_scores(t, p):
    tp, fp, fn, tn = (float(x) for x in np_confusion(t, p))
    return {"dice": ratio(2 * tp, 2 * tp + fp + fn), "iou": ratio(tp, tp + fp + fn),
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "accuracy": (tp + tn) / (tp + fp + fn + tn)}


def np_roc_auc(t, p):
    """Exact ROC AUC (Mann-Whitney U with ties as 1/2)."""
    pos, neg = p[t > 0.5], p[t <= 0.5]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def arrays():
    rng = np.random.default_rng(3)
    t = (rng.random((3, 8, 8, 1)) < 0.3).astype(np.float32)
    # Predictions correlated with the truth, strictly inside (0, 1).
    p = np.clip(0.6 * t + 0.4 * rng.random(t.shape), 0.01, 0.99).astype(np.float32)
    return t, p


def test_hand_worked_dice_coef():
    t = np.array([1, 1, 0, 0], np.float32).reshape(1, 2, 2, 1)
    p = np.array([1, 0, 1, 0], np.float32).reshape(1, 2, 2, 1)
    # (2 * 1 + 1) / (2 + 2 + 1) = 0.6
    assert float(keras_objects.dice_coef(t, p)) == pytest.approx(0.6)


def test_loss_and_dice_coef_match_numpy(arrays):
    t, p = arrays
    assert float(keras_objects.dice_coef(t, p)) == pytest.approx(np_dice_coef(t, p), rel=1e-6)
    expected = (np_bce(t, p) + 1 - np_dice_coef(t, p)) / 2
    assert float(keras_objects.bce_dice_loss(t, p)) == pytest.approx(expected, rel=1e-5)
    assert float(keras_objects.BceDiceLoss()(t, p)) == pytest.approx(expected, rel=1e-5)


def test_all_zero_masks():
    t = np.zeros((2, 4, 4, 1), np.float32)
    p = np.full_like(t, 0.2)
    # dice_coef = 1 / (0 + 0.2 * 32 + 1)
    assert float(keras_objects.dice_coef(t, p)) == pytest.approx(1 / (6.4 + 1), rel=1e-6)
    assert float(keras_objects.dice_coef(t, np.zeros_like(t))) == pytest.approx(1.0)
    expected = (np_bce(t, p) + 1 - 1 / 7.4) / 2
    assert float(keras_objects.bce_dice_loss(t, p)) == pytest.approx(expected, rel=1e-5)
    # Nothing to find, nothing found: thresholded scores are perfect, not NaN.
    for metric in metrics.segmentation_metrics()[1:6]:  # the thresholded ones
        metric.update_state(t, p)
        assert float(metric.result()) == pytest.approx(1.0), metric.name


def test_stateful_metrics_accumulate_over_batches(arrays):
    t, p = arrays
    by_name = {m.name: m for m in metrics.segmentation_metrics()[1:]}
    for i in range(len(t)):  # one sample per update
        for m in by_name.values():
            m.update_state(t[i:i + 1], p[i:i + 1])
    for name, value in np_scores(t, p).items():
        assert float(by_name[name].result()) == pytest.approx(value, rel=1e-6), name
    assert float(by_name["auc"].result()) == pytest.approx(np_roc_auc(t, p), abs=1e-2)
    by_name["dice"].reset_state()
    by_name["dice"].update_state(t[:1], p[:1])
    assert float(by_name["dice"].result()) == pytest.approx(np_scores(t[:1], p[:1])["dice"])


def test_metrics_are_float32_under_bfloat16_inputs(arrays):
    t, p = arrays
    p16 = tf.cast(p, tf.bfloat16)
    assert keras_objects.BceDiceLoss()(t, p16).dtype == tf.float32
    dice = keras_objects.Dice()
    dice.update_state(t, p16)
    assert dice.result().dtype == tf.float32


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="bce_dice_loss"):
        losses.get_loss("focal")


def test_loss_of_stacked_outputs_is_the_mean_over_outputs(arrays):
    t, p = arrays
    q = np.clip(1.0 - p, 0.01, 0.99).astype(np.float32)
    stacked = np.concatenate([p, q], axis=-1)
    expected = 0.5 * ((np_bce(t, p) + 1 - np_dice_coef(t, p)) / 2
                      + (np_bce(t, q) + 1 - np_dice_coef(t, q)) / 2)
    got = keras_objects.BceDiceLoss()(tf.constant(t), tf.constant(stacked))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # Metrics score the last output (the one inference serves).
    dice = keras_objects.Dice()
    dice.update_state(t, stacked)
    assert float(dice.result()) == pytest.approx(np_scores(t, q)["dice"], rel=1e-6)
    auc = keras_objects.FinalOutputAUC()
    auc.update_state(t, stacked)
    assert float(auc.result()) == pytest.approx(np_roc_auc(t, q), abs=0.02)


def test_f1_threshold_matches_a_brute_force_search():
    rng = np.random.default_rng(5)
    truth = rng.random(5000) < 0.2
    scores = np.clip(0.35 * truth + 0.6 * rng.random(5000), 0, 0.9999).astype(np.float32)
    bins = metrics.THRESHOLD_BINS
    index = (scores * bins).astype(int)
    pos = np.bincount(index[truth], minlength=bins)
    neg = np.bincount(index[~truth], minlength=bins)
    threshold, f1 = metrics.f1_by_threshold(pos, neg)
    best = max(((2 * np.sum((scores >= k / bins) & truth)
                 / (np.sum(scores >= k / bins) + np.sum(truth))), k / bins)
               for k in range(1, bins))
    assert f1 == pytest.approx(best[0], rel=1e-9) and threshold == pytest.approx(best[1])


def test_score_histograms_count_every_pixel_of_the_last_output():
    rng = np.random.default_rng(6)
    x = rng.random((4, 8, 8, 2)).astype(np.float32)
    y = (rng.random((4, 8, 8, 1)) < 0.3).astype(np.float32)
    identity = tf.keras.Sequential([tf.keras.layers.Input((8, 8, 2)),
                                    tf.keras.layers.Activation("linear")])
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    pos, neg = metrics.score_histograms(identity, data, bins=10)
    index = np.minimum((x[..., 1:] * 10).astype(int), 9)
    np.testing.assert_array_equal(pos, np.bincount(index[y > 0.5], minlength=10))
    np.testing.assert_array_equal(neg, np.bincount(index[y <= 0.5], minlength=10))

"""The online robustness augmentation (zoom, blur, gamma, gains, JPEG) against numpy."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tiled_vessel_seg.configs import config_file  # noqa: E402
from tiled_vessel_seg.tfrecords import reader  # noqa: E402
from tiled_vessel_seg.tfrecords import robust_augment as ra  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402


def _tile(size=9, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((size, size, 3)).astype(np.float32)
    mask = (rng.random((size, size, 1)) > 0.5).astype(np.float32)
    return image, mask


def _zoom(image, mask, factor, offset=(0.0, 0.0)):
    out = ra.zoom(tf.constant(image), tf.constant(mask), tf.constant(factor, tf.float32),
                  tf.constant(offset, tf.float32))
    return out[0].numpy(), out[1].numpy()


def test_zoom_1_is_the_identity():
    image, mask = _tile()
    got_image, got_mask = _zoom(image, mask, 1.0, (0.3, 0.8))
    np.testing.assert_allclose(got_image, image, atol=1e-6)
    np.testing.assert_array_equal(got_mask, mask)


def test_zoom_2_from_the_corner_interpolates_halfway_between_pixels():
    image, mask = _tile()
    got_image, got_mask = _zoom(image, mask, 2.0)
    # output pixel i samples input row i / 2: even rows copy, odd rows average neighbours
    rows = np.arange(9) / 2.0
    lo, frac = np.floor(rows).astype(int), rows - np.floor(rows)
    hi = np.minimum(lo + 1, 8)
    along_rows = image[lo] * (1 - frac)[:, None, None] + image[hi] * frac[:, None, None]
    want = along_rows[:, lo] * (1 - frac)[None, :, None] + along_rows[:, hi] * frac[None, :, None]
    np.testing.assert_allclose(got_image, want, atol=1e-5)
    np.testing.assert_array_equal(got_mask[::2, ::2], mask[:5, :5])  # exact samples


def test_zoom_half_shrinks_into_a_black_unlabelled_border():
    image, mask = _tile()
    got_image, got_mask = _zoom(image, mask, 0.5)
    # output pixel i samples input 2 i; beyond the tile: image 0, label 0
    np.testing.assert_allclose(got_image[:5, :5], image[::2, ::2], atol=1e-6)
    np.testing.assert_array_equal(got_mask[:5, :5], mask[::2, ::2])
    assert not got_image[5:].any() and not got_image[:, 5:].any() and not got_mask[5:].any()


def test_random_zoom_moves_label_planes_with_the_image():
    rng = np.random.default_rng(1)
    planes = (rng.random((32, 32, 2)) > 0.5).astype(np.float32)
    image = np.concatenate([planes, planes[..., :1]], -1)  # the image carries the labels
    spec = ra.RobustAugmentation(zoom_range=(0.6, 1.7))
    factors = set()
    for seed in range(12):
        out_image, out_planes = ra.robust_augment(tf.constant(image), tf.constant(planes),
                                                  tf.constant([seed, 3]), spec)
        assert out_planes.shape == (32, 32, 2)
        assert set(np.unique(out_planes.numpy())) <= {0.0, 1.0}
        np.testing.assert_array_equal(out_image.numpy()[..., :2] >= 0.5, out_planes.numpy() == 1)
        factors.add(round(float(out_planes.numpy().mean()), 3))
    assert len(factors) > 6  # a different zoom per seed


def _numpy_blur(image, sigma, radius):
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-x ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    padded = np.pad(image, [(radius, radius), (radius, radius), (0, 0)], mode="reflect")
    rows = sum(w * padded[i:i + image.shape[0]] for i, w in enumerate(weights))
    return sum(w * rows[:, i:i + image.shape[1]] for i, w in enumerate(weights))


def test_gaussian_blur_matches_numpy_with_reflected_borders():
    image, _ = _tile(12)
    got = ra.gaussian_blur(tf.constant(image), tf.constant(1.3), radius=4).numpy()
    np.testing.assert_allclose(got, _numpy_blur(image, 1.3, 4), atol=1e-5)
    still = ra.gaussian_blur(tf.constant(image), tf.constant(0.0), radius=4).numpy()
    np.testing.assert_allclose(still, image, atol=1e-6)


def test_gamma_and_gains_are_one_power_and_one_gain_per_channel():
    image, mask = _tile(16)
    image = 0.1 + 0.5 * image  # no clipping at gain 1.3
    spec = ra.RobustAugmentation(channel_gain=0.3, gamma_range=(0.7, 1.4))
    for seed in range(6):
        got, got_mask = ra.robust_augment(tf.constant(image), tf.constant(mask),
                                          tf.constant([seed, 0]), spec)
        got = got.numpy().astype(np.float64)
        np.testing.assert_array_equal(got_mask.numpy(), mask)
        # log y = gamma log x + log gain_c: one slope for all channels, one offset each
        slopes, offsets = zip(*(np.polyfit(np.log(image[..., c]).ravel(),
                                           np.log(got[..., c]).ravel(), 1) for c in range(3)))
        assert np.ptp(slopes) < 1e-3 and 0.7 - 1e-4 <= slopes[0] <= 1.4 + 1e-4
        assert all(0.7 - 1e-4 <= np.exp(o) <= 1.3 + 1e-4 for o in offsets)


def test_jpeg_and_blur_touch_about_half_the_tiles_and_keep_the_shape():
    image, mask = _tile(32)
    spec = ra.RobustAugmentation(blur_sigma=1.0, jpeg_quality=60)
    changed = 0
    for seed in range(20):
        got, got_mask = ra.robust_augment(tf.constant(image), tf.constant(mask),
                                          tf.constant([seed, 1]), spec)
        assert got.shape == image.shape and got.dtype == tf.float32
        np.testing.assert_array_equal(got_mask.numpy(), mask)
        changed += not np.allclose(got.numpy(), image, atol=1e-6)
    assert 8 <= changed <= 19  # each of blur and JPEG on half the tiles: ~3/4 changed


def test_same_seed_same_tile():
    image, mask = _tile(16)
    spec = ra.RobustAugmentation(zoom_range=(0.8, 1.3), channel_gain=0.1, blur_sigma=1.0,
                                 gamma_range=(0.8, 1.2), jpeg_quality=70)
    a = ra.robust_augment(tf.constant(image), tf.constant(mask), tf.constant([5, 5]), spec)
    b = ra.robust_augment(tf.constant(image), tf.constant(mask), tf.constant([5, 5]), spec)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    # stateless: the same seed gives the same tile inside a tf.data map (graph mode, as
    # training runs it); another seed gives another tile; labels stay binary
    mapped = next(iter(tf.data.Dataset.from_tensors((image, mask)).map(
        lambda i, m: ra.robust_augment(i, m, tf.constant([5, 5], tf.int64), spec))))
    np.testing.assert_array_equal(mapped[0].numpy(), a[0].numpy())
    np.testing.assert_array_equal(mapped[1].numpy(), a[1].numpy())
    other = ra.robust_augment(tf.constant(image), tf.constant(mask), tf.constant([5, 6]), spec)
    assert not np.allclose(other[0].numpy(), a[0].numpy())
    assert set(np.unique(a[1].numpy())) <= {0.0, 1.0}
    assert 0.0 <= a[0].numpy().min() and a[0].numpy().max() <= 1.0


def test_identity_spec_and_bad_values():
    assert ra.RobustAugmentation().is_identity
    with pytest.raises(ValueError, match="zoom_range"):
        ra.RobustAugmentation(zoom_range=(1.5, 0.7))
    with pytest.raises(ValueError, match="jpeg_quality"):
        ra.RobustAugmentation(jpeg_quality=0)


def test_config_keys_are_read_and_checked():
    config = config_file.load_config(None, ["train.augment_zoom=(0.7, 1.5)",
                                            "train.augment_blur_sigma=1.0"])
    assert config.train.augment_zoom == (0.7, 1.5) and config.train.augment_blur_sigma == 1.0
    with pytest.raises(config_file.ConfigError, match=r"\[train\] augment_gamma"):
        config_file.load_config(None, ["train.augment_gamma=(0.0, 1.0)"])


def test_training_stream_with_symmetries_and_robust_augmentation(tmp_path):
    write_fake_dataset(str(tmp_path), tile_size=16, tiles={"train": 6, "valid": 2}, shards=2)
    spec = ra.RobustAugmentation(zoom_range=(0.7, 1.5), channel_gain=0.2,
                                 gamma_range=(0.7, 1.4), blur_sigma=1.0, jpeg_quality=70)
    image, mask = next(iter(reader.make_dataset(str(tmp_path), reader.InputConfig(
        "train", 4, training=True, augment=True, robust=spec, seed=0))))
    assert tuple(image.shape) == (4, 16, 16, 3) and tuple(mask.shape) == (4, 16, 16, 1)
    assert set(np.unique(mask.numpy())) <= {0.0, 1.0}
    assert 0.0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 1.0

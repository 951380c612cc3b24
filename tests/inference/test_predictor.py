"""TiledPredictor against independent references: whole-image application of pointwise
and conv models, numpy reflect padding / overlap-add, TTA, input scales."""
from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg.inference import blend, tiling  # noqa: E402
from tiled_vessel_seg.inference.predictor import TiledPredictor  # noqa: E402


@pytest.fixture(scope="module")
def pointwise_model():
    """Per-pixel function (1x1 convs), any input size."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(6, 1, activation="tanh")(inp)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def conv_model():
    """Small random conv net with a 9x9 receptive field, any input size."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inp, out)


def whole_image(model, image):
    return model(image[None].astype(np.float32) / 255.0)[0, ..., 0].numpy()


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- graph pieces

@pytest.mark.parametrize("size,before,after", [(5, 3, 4), (5, 13, 9), (1, 4, 2), (2, 5, 0)])
def test_reflect_indices_match_numpy_reflect(size, before, after):
    x = np.arange(size)
    # numpy reflect applied in steps (it cannot pad more than size - 1 at once either).
    expected = x
    b, a = before, after
    while b or a:
        limit = len(expected) - 1 if size > 1 else max(b, a)
        step_b, step_a = min(b, limit), min(a, limit)
        expected = np.pad(expected, (step_b, step_a), mode="reflect" if size > 1 else "edge")
        b, a = b - step_b, a - step_a
    got = tiling.reflect_indices(tf.constant(size), tf.constant(before), tf.constant(after))
    np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("tile,overlap,n", [(8, 3, 4), (8, 6, 3), (8, 0, 2), (5, 4, 3)])
def test_overlap_add_matches_loop(tile, overlap, n):
    rng = np.random.default_rng(0)
    ny, nx = n, n + 1
    tiles = rng.random((ny * nx, tile, tile)).astype(np.float32)
    stride = tile - overlap
    expected = np.zeros(((ny - 1) * stride + tile, (nx - 1) * stride + tile), np.float32)
    for k, t in enumerate(tiles):
        i, j = divmod(k, nx)
        expected[i * stride:i * stride + tile, j * stride:j * stride + tile] += t
    got = tiling.overlap_add(tf.constant(tiles), (ny, nx), overlap).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_extract_tiles_positions_and_dtype():
    image = random_image(20, 27)
    tiles = tiling.extract_tiles(tf.constant(image), 8, 3)
    assert tiles.dtype == tf.uint8
    nx = (27 - 8) // 5 + 1
    np.testing.assert_array_equal(tiles[nx + 2].numpy(), image[5:13, 10:18])


def test_gather_tiles_equals_extract_patches():
    image = tf.constant(random_image(30, 41))
    tiles = tiling.extract_tiles(image, 12, 5)
    offsets = tiling.tile_offsets((3, 5), 12, 5)
    np.testing.assert_array_equal(tiling.gather_tiles(image, offsets, 12).numpy(), tiles.numpy())


def test_blend_profiles():
    g = blend.blend_profile(64, 16, "gaussian")
    assert g.max() == pytest.approx(1.0) and g.min() > 0
    i = np.arange(64)
    np.testing.assert_allclose(g, np.exp(-((i - 31.5) ** 2) / (2 * 8.0 ** 2)) / np.exp(-0.25 / 128),
                               rtol=1e-5)
    lin = blend.blend_profile(10, 3, "linear")
    np.testing.assert_allclose(lin, [.25, .5, .75, 1, 1, 1, 1, .75, .5, .25])
    # Two neighbouring ramps at stride 7 sum to 1 over their 3 shared pixels.
    np.testing.assert_allclose(lin[7:] + lin[:3], 1.0)
    assert (blend.blend_window(8, 2, "none") == 1).all()
    with pytest.raises(ValueError, match="overlap"):
        blend.blend_profile(8, 8, "linear")


# ---------------------------------------------------------------- predictor

SIZES = [(1, 1), (37, 53), (511, 513), (512, 512), (605, 700)]


def assert_matches_whole_image(model, predictor, sizes):
    for size in sizes:
        image = random_image(*size, seed=size[0])
        probabilities, mask = predictor(image)
        expected = whole_image(model, image)
        assert probabilities.shape == size and probabilities.dtype == tf.float32
        np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5,
                                   err_msg=f"size {size}")
        np.testing.assert_array_equal(mask.numpy(), np.where(expected > 0.5, 255, 0))


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("blend_name", ["gaussian", "linear", "none"])
def test_pointwise_model_tiled_equals_whole_image(pointwise_model, batch_size, blend_name):
    # Small tiles (64, overlap 16) make every size span many tiles, quickly.
    predictor = TiledPredictor(pointwise_model, tile_size=64, overlap=16,
                               batch_size=batch_size, blend=blend_name)
    assert_matches_whole_image(pointwise_model, predictor, SIZES)


def test_pointwise_model_tiled_equals_whole_image_at_tile_512(pointwise_model):
    predictor = TiledPredictor(pointwise_model, tile_size=512, overlap=64, batch_size=3)
    assert_matches_whole_image(pointwise_model, predictor, SIZES)


def test_constant_model_gives_constant_map():
    # A 1x1 conv with zero kernel: sigmoid(bias) everywhere, whatever the pixels.
    inp = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    conv.set_weights([np.zeros((1, 1, 3, 1), np.float32), np.array([-0.5], np.float32)])
    for blend_name in ("gaussian", "linear", "none"):
        probabilities, _ = TiledPredictor(model, overlap=10, batch_size=3, blend=blend_name)(
            random_image(100, 77))
        np.testing.assert_allclose(probabilities.numpy(), 1 / (1 + np.exp(0.5)), atol=1e-6)


def test_conv_net_gaussian_close_to_whole_image_away_from_borders(conv_model):
    image = random_image(150, 170, seed=3)
    expected = whole_image(conv_model, image)
    got, _ = TiledPredictor(conv_model, tile_size=48, overlap=24, batch_size=4,
                            blend="gaussian")(image)
    err = np.abs(got.numpy() - expected)
    # Tile borders see reflect instead of true context; gaussian weights make them count
    # little, so the interior stays close to the whole-image result.
    assert err[8:-8, 8:-8].max() < 2e-3, err[8:-8, 8:-8].max()
    assert np.median(err) < 1e-5


def test_flip_equivariant_model_same_with_and_without_tta():
    # A 3x3 conv with a D4-symmetric kernel is equivariant to flips and rotations.
    inp = keras.Input((32, 32, 3))
    conv = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")
    model = keras.Model(inp, conv(inp))
    k = np.array([[0.1, 0.3, 0.1], [0.3, -0.9, 0.3], [0.1, 0.3, 0.1]], np.float32)
    conv.set_weights([np.stack([k, -k, 0.5 * k], -1)[..., None], np.array([0.05], np.float32)])
    image = random_image(40, 50, seed=4)
    plain, _ = TiledPredictor(model, overlap=8, tta="none")(image)
    for tta in ("flips", "d4"):
        got, _ = TiledPredictor(model, overlap=8, tta=tta)(image)
        np.testing.assert_allclose(got.numpy(), plain.numpy(), atol=1e-5)


def test_tta_differs_for_asymmetric_model(conv_model):
    image = random_image(40, 40)
    plain, _ = TiledPredictor(conv_model, tile_size=32, overlap=8)(image)
    d4, _ = TiledPredictor(conv_model, tile_size=32, overlap=8, tta="d4")(image)
    assert np.abs(plain.numpy() - d4.numpy()).max() > 1e-4


@pytest.mark.parametrize("input_scale", ["native", "enlarged"])
def test_input_scales_keep_the_input_size(pointwise_model, input_scale):
    image = random_image(35, 42)
    predictor = TiledPredictor(pointwise_model, tile_size=32, overlap=8, scale=3,
                               input_scale=input_scale)
    probabilities, mask = predictor(image)
    assert probabilities.shape == (35, 42) and mask.shape == (35, 42)
    if input_scale == "native":
        # Reference: enlarge (the Beam job's kernel, tests/ground_floor/test_imaging.py), apply
        # pointwise, average 3x3 blocks.
        from tiled_vessel_seg import imaging
        big = imaging.enlarge_image_graph(image, 3).numpy()
        expected = whole_image(pointwise_model, big).reshape(35, 3, 42, 3).mean((1, 3))
    else:
        expected = whole_image(pointwise_model, image)
    np.testing.assert_allclose(probabilities.numpy(), expected, atol=1e-5)


def test_tile_size_comes_from_the_model_and_is_checked(pointwise_model):
    inp = keras.Input((24, 24, 3))
    fixed = keras.Model(inp, keras.layers.Conv2D(1, 1)(inp))
    assert TiledPredictor(fixed, overlap=4).tile_size == 24
    with pytest.raises(ValueError, match="tile_size"):
        TiledPredictor(fixed, tile_size=32, overlap=4)
    with pytest.raises(ValueError, match="pass tile_size"):
        TiledPredictor(pointwise_model)


def test_mixed_precision_model_outputs_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inp = keras.Input((16, 16, 3))
        out = keras.layers.Conv2D(1, 1, activation="sigmoid")(inp)
        model = keras.Model(inp, out)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    probabilities, _ = TiledPredictor(model, overlap=4)(random_image(20, 30))
    assert probabilities.dtype == tf.float32 and probabilities.shape == (20, 30)


# ---------------------------------------------------------------- fitted grids, tilers

@pytest.mark.parametrize("size", [1, 37, 512, 513, 3025, 3500])
@pytest.mark.parametrize("tile,min_overlap", [(512, 8), (512, 64), (64, 16), (64, 0)])
def test_fitted_grid_is_the_smallest_with_enough_overlap(size, tile, min_overlap):
    stride = tile - min_overlap
    # independent: the first count whose tiles at this stride cover the axis
    count = next(n for n in range(1, 10_000) if (n - 1) * stride + tile >= size)
    got_count, before, after = (int(v) for v in tiling.fitted_grid(tf.constant(size), tile,
                                                                    min_overlap))
    assert got_count == count
    assert before + size + after == (count - 1) * stride + tile and 0 <= after - before <= 1
    assert after < stride or count == 1  # never a whole tile of padding


def test_reference_size_takes_42_fitted_tiles_instead_of_56():
    def tiles(grid, overlap):
        return int(grid(tf.constant(3025), 512, overlap)[0]) * int(grid(tf.constant(3500), 512, overlap)[0])
    assert tiles(tiling.tile_grid, 64) == 56
    assert tiles(tiling.fitted_grid, 8) == 42  # = ceil(3025/512) x ceil(3500/512)
    assert tiles(tiling.fitted_grid, 64) == 56


def numpy_tiled(model, image, tile, overlap, blend_name, fitted):
    """The tiling and blending written out in numpy, one model call per tile."""
    def grid(size):
        if fitted:
            stride = tile - overlap
            n = next(k for k in range(1, 10_000) if (k - 1) * stride + tile >= size)
            pad = (n - 1) * stride + tile - size
            return n, pad // 2, pad - pad // 2
        margin, stride = overlap // 2, tile - overlap
        n = next(k for k in range(1, 10_000) if (k - 1) * stride + tile >= size + 2 * margin)
        extra = (n - 1) * stride + tile - size - 2 * margin
        return n, margin + extra // 2, margin + extra - extra // 2
    (ny, top, bottom), (nx, left, right) = grid(image.shape[0]), grid(image.shape[1])
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)),
                    mode="reflect" if min(image.shape[:2]) > 1 else "edge")
    window = blend.blend_window(tile, overlap, blend_name).astype(np.float64)
    canvas = np.zeros(padded.shape[:2])
    weights = np.zeros(padded.shape[:2])
    stride = tile - overlap
    for i in range(ny):
        for j in range(nx):
            y, x = i * stride, j * stride
            crop = padded[y:y + tile, x:x + tile][None].astype(np.float32) / 255.0
            canvas[y:y + tile, x:x + tile] += model(crop)[0, ..., 0].numpy() * window
            weights[y:y + tile, x:x + tile] += window
    h, w = image.shape[:2]
    return (canvas / weights)[top:top + h, left:left + w]


@pytest.mark.parametrize("fitted", [False, True])
@pytest.mark.parametrize("blend_name", ["gaussian", "linear"])
def test_conv_net_tiling_and_blending_equal_numpy_reference(conv_model, fitted, blend_name):
    """With a model that sees tile borders (zero-padded 3x3 convs), the predictor's seams
    are exactly those of the numpy tiling + blending: the weights are normalised, every
    tile lands where it was cut, and the fitted grid needs fewer tiles."""
    image = random_image(101, 150, seed=7)
    overlap = 8 if fitted else 16
    predictor = TiledPredictor(conv_model, tile_size=48, batch_size=4, blend=blend_name,
                               **({"min_overlap": overlap} if fitted else {"overlap": overlap}))
    got, _ = predictor(image)
    expected = numpy_tiled(conv_model, image, 48, overlap, blend_name, fitted)
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-6)
    # no seam: across any tile boundary, the map is as smooth as the whole-image one
    whole = whole_image(conv_model, image)
    jump = lambda a: max(np.abs(np.diff(a, axis=0)).max(), np.abs(np.diff(a, axis=1)).max())  # noqa: E731
    assert jump(got.numpy()) <= 1.05 * jump(whole) + 1e-3


def test_fitted_grid_pointwise_model_equals_whole_image(pointwise_model):
    predictor = TiledPredictor(pointwise_model, tile_size=64, min_overlap=8, batch_size=3)
    assert_matches_whole_image(pointwise_model, predictor, SIZES)


@pytest.mark.parametrize("fitted", [False, True])
def test_tilers_give_identical_probabilities(conv_model, fitted):
    image = random_image(90, 131, seed=9)
    grid = {"min_overlap": 8} if fitted else {"overlap": 12}
    outputs = [TiledPredictor(conv_model, tile_size=40, batch_size=3, tta="flips", tiler=t,
                              **grid)(image)[0].numpy() for t in ("slices", "extract_patches")]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_auto_tiler_slices_on_a_cpu(conv_model):
    from tiled_vessel_seg.inference import predictor as predictor_lib
    assert not tf.config.list_logical_devices("GPU")
    assert TiledPredictor(conv_model, tile_size=32, overlap=4).tiler == "slices"
    assert predictor_lib.resolve_tiler("extract_patches") == "extract_patches"
    with pytest.raises(ValueError, match="tiler"):
        predictor_lib.resolve_tiler("scissors")

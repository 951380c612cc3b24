"""vessel-segment, vessel-export and load_predictor against a numpy tiling written here.

The model dir's model_info.json says threshold 0.3 (not 0.5), so a tool that ignores it
writes different masks. The reference cuts the tiles, applies the test-time
augmentations, blends and thresholds with numpy, calling the Keras model only as the
per-tile oracle.
"""
from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg import imaging  # noqa: E402
from tiled_vessel_seg.inference.predictor import load_predictor  # noqa: E402
from tiled_vessel_seg.model_info import ModelInfo, write_model_info  # noqa: E402

TILE, OVERLAP, SCALE, THRESHOLD = 32, 8, 2, 0.3


def _vessel_like_model():
    """3x3 conv of the red channel, then a sigmoid: probabilities spread over (0.1, 0.9)
    and depend on the neighbourhood, so tile borders and blending matter."""
    inp = keras.Input((TILE, TILE, 3))
    conv = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")
    out = conv(inp)
    model = keras.Model(inp, out)
    kernel = np.zeros((3, 3, 3, 1), np.float32)
    kernel[..., 0, 0] = [[0.2, 0.5, 0.1], [0.7, 1.0, 0.3], [0.4, 0.6, 0.2]]  # asymmetric
    kernel[1, 1, 1, 0] = -0.8  # green
    conv.set_weights([kernel * 1.6, np.array([-2.2], np.float32)])
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("model_t03")
    _vessel_like_model().save(str(out / "best_model.keras"))
    write_model_info(str(out), ModelInfo(tile_size=TILE, scale=SCALE, overlap=OVERLAP,
                                         threshold=THRESHOLD))
    return out


@pytest.fixture(scope="module")
def oracle(model_dir):
    """The saved model, loaded once: float32 [B, T, T, 3] -> [B, T, T]."""
    model = keras.models.load_model(str(model_dir / "best_model.keras"), compile=False)
    return lambda tiles: model(tiles.astype(np.float32), training=False).numpy()[..., 0]


def _photo(h, w, seed):
    """Smooth random RGB uint8 [h, w, 3] (vessel-like red structures at a few scales)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(h, w, 3)).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0) + 0.3 * noise
    return np.clip(128 + 90 * smooth / smooth.std(), 0, 255).astype(np.uint8)


def _numpy_d4():
    """(forward, inverse) pairs on [B, T, T] / [B, T, T, C] arrays, the 8 square symmetries."""
    rot = lambda k: lambda a: np.rot90(a, k, axes=(1, 2))  # noqa: E731
    flip = lambda a: a[:, :, ::-1]  # noqa: E731
    pairs = [(rot(k), rot(-k)) for k in range(4)]
    pairs += [(lambda a, k=k: rot(k)(flip(a)), lambda a, k=k: flip(rot(-k)(a)))
              for k in range(4)]
    return pairs


def numpy_tiled_probabilities(oracle, image, tta="none"):
    """Reference tiling of uint8 [H, W, 3] at training scale -> float64 [H, W].

    Tiles of TILE px at stride TILE - OVERLAP over the image reflect-padded by
    OVERLAP // 2 and then up to a whole grid (extra split evenly, the odd pixel after);
    Gaussian window sigma = TILE / 8 about the tile centre; sum of weighted tiles divided
    by the sum of weights.
    """
    h, w = image.shape[:2]
    stride = TILE - OVERLAP
    pads, counts = [], []
    for size in (h, w):
        needed = size + 2 * (OVERLAP // 2)
        count = 1 + max(0, -(-(needed - TILE) // stride))
        extra = (count - 1) * stride + TILE - needed
        before = OVERLAP // 2 + extra // 2
        pads.append((before, (count - 1) * stride + TILE - size - before))
        counts.append(count)
    padded = np.pad(image, pads + [(0, 0)], mode="reflect").astype(np.float64) / 255.0
    d = np.arange(TILE) - (TILE - 1) / 2
    profile = np.exp(-d ** 2 / (2 * (TILE / 8) ** 2))
    window = np.outer(profile, profile)
    canvas = np.zeros(padded.shape[:2])
    weights = np.zeros(padded.shape[:2])
    transforms = _numpy_d4() if tta == "d4" else [(lambda a: a, lambda a: a)]
    for i in range(counts[0]):
        for j in range(counts[1]):
            y, x = i * stride, j * stride
            tile = padded[None, y:y + TILE, x:x + TILE]
            probs = np.mean([inverse(oracle(np.ascontiguousarray(forward(tile))))
                             for forward, inverse in transforms], axis=0)[0]
            canvas[y:y + TILE, x:x + TILE] += window * probs
            weights[y:y + TILE, x:x + TILE] += window
    (top, _), (left, _) = pads
    return (canvas / weights)[top:top + h, left:left + w]


def _assert_mask_is_threshold(mask, reference, threshold=THRESHOLD):
    """mask 0/255 == reference > threshold, except within 1e-4 of the threshold."""
    decided = np.abs(reference - threshold) > 1e-4
    np.testing.assert_array_equal((mask == 255)[decided], (reference > threshold)[decided])


def test_reference_sees_the_threshold(oracle):
    reference = numpy_tiled_probabilities(oracle, _photo(45, 70, 0))
    between = np.mean((reference > 0.3) & (reference <= 0.5))
    assert 0.1 < between < 0.9  # thresholds 0.3 and 0.5 give clearly different masks


def test_load_predictor_thresholds_at_model_info_threshold(model_dir, oracle):
    image = _photo(45, 70, 0)
    probabilities, mask = load_predictor(str(model_dir))(image)
    reference = numpy_tiled_probabilities(oracle, image)
    np.testing.assert_allclose(probabilities.numpy(), reference, atol=2e-6)
    _assert_mask_is_threshold(mask.numpy(), reference)


def _tool(name):
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"console script {name} is not installed next to {sys.executable}")
    return path


def _run(name, *args):
    result = subprocess.run([_tool(name), *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_vessel_segment_matches_numpy_tiling_and_model_threshold(model_dir, oracle, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photos = {"a": _photo(45, 70, 1), "b": _photo(61, 38, 2)}
    for stem, photo in photos.items():
        cv2.imwrite(str(inputs / f"{stem}.png"), photo[..., ::-1])  # cv2 writes BGR
    out = tmp_path / "out"
    _run("vessel-segment", "--model_dir", model_dir, "--input", inputs, "--output_dir", out,
         "--save_probabilities")
    for stem, photo in photos.items():
        reference = numpy_tiled_probabilities(oracle, photo)
        probs16 = cv2.imread(str(out / f"{stem}_probabilities.png"), cv2.IMREAD_UNCHANGED)
        assert probs16.dtype == np.uint16 and probs16.shape == photo.shape[:2]
        np.testing.assert_allclose(probs16 / 65535.0, reference, atol=1 / 65535 + 2e-6)
        mask = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        _assert_mask_is_threshold(mask, reference)


def _serve(saved_dir):
    return tf.saved_model.load(str(saved_dir)).signatures["serving_default"]


def test_export_d4_round_trip_matches_numpy_tiling(model_dir, oracle, tmp_path):
    _run("vessel-export", "--model_dir", model_dir, "--output_dir", tmp_path / "d4",
         "--tta", "d4", "--overlap", OVERLAP)  # the oracle's grid, not the default fitted one
    serving = _serve(tmp_path / "d4")
    image = _photo(50, 41, 3)
    result = serving(image_bytes=tf.io.encode_png(image))
    reference = numpy_tiled_probabilities(oracle, image, tta="d4")
    assert np.abs(reference - numpy_tiled_probabilities(oracle, image)).max() > 1e-3
    np.testing.assert_allclose(result["probabilities"].numpy(), reference, atol=2e-6)
    mask = tf.io.decode_png(result["mask_png_bytes"]).numpy()[..., 0]
    _assert_mask_is_threshold(mask, reference)


def test_export_native_scale_round_trip(model_dir, tmp_path):
    _run("vessel-export", "--model_dir", model_dir, "--output_dir", tmp_path / "native",
         "--input_scale", "native")
    serving = _serve(tmp_path / "native")
    predictor = load_predictor(str(model_dir), input_scale="native")
    image = _photo(23, 35, 4)  # a native photo: the graph enlarges it by SCALE
    for encoded in (tf.io.encode_png(image), tf.io.encode_jpeg(image, quality=95)):
        result = serving(image_bytes=encoded)
        # the CLI's decoder (OpenCV): the export decodes JPEG bit for bit alike
        probs, mask = predictor(imaging.decode_image_bytes(
            "photo.jpg" if tf.io.is_jpeg(encoded) else "photo.png", encoded.numpy()))
        assert result["probabilities"].shape == image.shape[:2]
        np.testing.assert_allclose(result["probabilities"].numpy(), probs.numpy(), atol=1e-6)
        served_mask = tf.io.decode_png(result["mask_png_bytes"]).numpy()[..., 0]
        np.testing.assert_array_equal(served_mask, mask.numpy())
        _assert_mask_is_threshold(served_mask, probs.numpy().astype(np.float64))
    # the native graph is not the enlarged one applied to the small photo
    enlarged = load_predictor(str(model_dir))(image)[0].numpy()
    assert np.abs(enlarged - result["probabilities"].numpy()).max() > 1e-3

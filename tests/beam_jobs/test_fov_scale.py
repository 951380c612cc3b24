"""[preprocess] fov_diameter: photo, labels and FOV plane resampled to one FOV diameter
(beam_jobs/fov_scale.py, imaging.resample_*), checked by hand-worked geometry, round
trips, and a Beam run whose tiles are compared with an independent cv2 resampling."""
import gzip
import json
import math
import shutil

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import fov, imaging
from tiled_vessel_seg import datasets
from tiled_vessel_seg.beam_jobs import fov_scale, pipeline
from tiled_vessel_seg.configs.schema import PreprocessConfig


def disc(height, width, cx, cy, diameter):
    yy, xx = np.mgrid[:height, :width]
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= (diameter / 2) ** 2).astype(np.uint8)


def test_photo_labels_and_fov_get_the_same_geometry_hand_worked():
    # FOV disc 100 px across -> target 150: factor 1.5, 120x160 -> 180x240.
    fov_plane = disc(120, 160, 79.5, 59.5, 100)
    image = np.zeros((120, 160, 3), np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    image[40:50, 60:80] = 200  # a 20x10 block; centre (69.5, 44.5)
    mask[40:50, 60:80] = 1
    out_image, out_mask, out_fov, info = fov_scale.harmonise(image, mask, fov_plane, 150.0)
    assert info.diameter == pytest.approx(100, rel=0.01)
    assert info.factor == pytest.approx(1.5, rel=0.01)
    assert out_image.shape == (180, 240, 3) and out_mask.shape == out_fov.shape == (180, 240)
    assert info.size == (240, 180)
    # Centres map as x' = (x + 0.5) * 1.5 - 0.5: the block's centre (69.5, 44.5) -> (104.5, 67).
    ys, xs = np.nonzero(out_mask)
    assert (xs.mean(), ys.mean()) == pytest.approx((104.5, 67.0), abs=0.5)
    bright = out_image[..., 0] > 100
    assert (np.nonzero(bright)[1].mean(), np.nonzero(bright)[0].mean()) == pytest.approx(
        (104.5, 67.0), abs=0.5)
    # The block is 30x15 px now, in the mask as in the photo.
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (30, 15)
    assert np.array_equal(out_mask > 0, bright)
    # The FOV plane is the disc 150 px across, centred at (119.5, 89.5).
    assert fov.fov_circle(out_fov > 0).diameter == pytest.approx(150, rel=0.01)
    assert set(np.unique(out_mask)) <= {0, 1} and set(np.unique(out_fov)) <= {0, 1}


def test_reduction_then_enlargement_round_trip():
    rng = np.random.default_rng(0)
    blobs = cv2.GaussianBlur(rng.random((300, 400)), (0, 0), 8)
    mask = (blobs > np.median(blobs)).astype(np.uint8)
    image = np.dstack([(blobs - blobs.min()) / np.ptp(blobs) * 255] * 3).astype(np.uint8)
    small_image = imaging.resample_image(image, 0.5)
    small_mask = imaging.resample_mask(mask, 0.5)
    assert small_image.shape == (150, 200, 3) and small_mask.shape == (150, 200)
    # Area average: each output pixel is the mean of its 2x2 block (hand-worked check).
    block = image[..., 0].reshape(150, 2, 200, 2).mean(axis=(1, 3))
    assert np.abs(small_image[..., 0].astype(float) - block).max() <= 1
    back = imaging.resample_mask(small_mask, 2.0)
    assert back.shape == mask.shape
    # Only pixels at the blobs' edges may flip (a 2 px band: one reduced pixel).
    edge = cv2.dilate(mask, np.ones((5, 5), np.uint8)) != cv2.erode(mask, np.ones((5, 5), np.uint8))
    assert not np.any((back != mask) & ~edge)
    assert np.mean(back != mask) < 0.3 * np.mean(edge)
    back_image = imaging.resample_image(small_image, 2.0)
    assert np.abs(back_image.astype(float) - image).mean() < 2.0


def test_resample_probabilities_inverts_the_size():
    p = np.linspace(0, 1, 50 * 70, dtype=np.float32).reshape(50, 70)
    big = imaging.resample_probabilities(p, 100, 140)
    assert big.shape == (100, 140) and big.dtype == np.float32
    back = imaging.resample_probabilities(big, 50, 70)
    # Bilinear then 2x2 average reproduces a linear ramp exactly, but at the clamped border.
    assert np.abs(back - p)[1:-1, 1:-1].max() < 1e-5 and np.abs(back - p).max() < 3e-3


def test_without_target_nothing_moves_but_the_diameter_is_measured():
    fov_plane = disc(120, 160, 79.5, 59.5, 100)
    image = np.dstack([fov_plane * 150] * 3).astype(np.uint8)
    mask = np.zeros((120, 160), np.uint8)
    out_image, out_mask, out_fov, info = fov_scale.harmonise(image, mask, None, None)
    assert out_image is image and out_mask is mask and out_fov is None
    assert info.factor == 1.0 and info.diameter == pytest.approx(100, rel=0.01)


def test_a_photo_without_fov_cannot_be_harmonised():
    image = np.random.default_rng(0).integers(80, 220, (100, 120, 3)).astype(np.uint8)
    with pytest.raises(fov_scale.NoFovError, match="no field of view found.*fov_diameter = 64"):
        fov_scale.harmonise(image, np.zeros((100, 120), np.uint8), None, 64.0)


def test_dataset_fov_diameter():
    assert fov_scale.dataset_fov_diameter([651.0, 918.0], 640.0) == 640.0
    assert fov_scale.dataset_fov_diameter([649.0, 652.0, 701.0, None], None) == 652.0
    assert fov_scale.dataset_fov_diameter([651.0, 918.0], None) is None  # two scales
    assert fov_scale.dataset_fov_diameter([None], None) is None


def test_config_range():
    assert PreprocessConfig(fov_diameter=640).fov_diameter == 640
    with pytest.raises(ValueError, match="fov_diameter"):
        PreprocessConfig(fov_diameter=0.0)


TILE, SCALE, TARGET = 64, 2, 100.0


@pytest.fixture(scope="module")
def harmonised_run(synthetic_stare_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("stare_crop")
    shutil.copytree(synthetic_stare_dir, root, dirs_exist_ok=True)
    # im0009: a crop inside the FOV (no rim): a dead letter naming it.
    rng = np.random.default_rng(3)
    crop = rng.integers(90, 200, (80, 90, 3)).astype(np.uint8)
    label = np.zeros((80, 90, 3), np.uint8)
    label[40:42] = 255
    from tiled_vessel_seg.synthetic import stare_layout
    stare_layout.write_pair(str(root), "im0009", crop, label[..., 0])
    out = str(tmp_path_factory.mktemp("harmonised"))
    config = PreprocessConfig(scale=SCALE, tile_size=TILE, augmentations=(), split="train=1.0",
                              seed=0, shards=1, image_encoding="png", fov_masks=True,
                              fov_diameter=TARGET)
    pairs, problems = datasets.discover_stare(str(root))
    summary = pipeline.run_job(config, pairs, problems, out)
    return root, out, summary


def _decode_ppm_gz(path):
    raw = gzip.decompress(open(path, "rb").read())
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def test_beam_job_resamples_to_the_fov_diameter(harmonised_run):
    import tensorflow as tf
    from tiled_vessel_seg.tfrecords import dataset_info as info_lib
    from tiled_vessel_seg.tfrecords import schema
    root, out, summary = harmonised_run
    errors = [json.loads(line) for line in open(f"{out}/errors.jsonl") if line.strip()]
    assert [(e["image_id"], e["stage"]) for e in errors] == [("im0009", "fov")]
    assert "no field of view found" in errors[0]["reason"]
    assert errors[0]["path"].endswith("im0009.ppm.gz")
    info = info_lib.read_dataset_info(out)
    assert info.fov_diameter == TARGET
    assert set(info.fov_diameters) == {"im0001", "im0002", "im0003", "im0004"}
    records = [schema.decode_example_numpy(bytes(r.numpy())) for r in tf.data.TFRecordDataset(
        info.shard_paths(out, "train"), compression_type=info.tfrecord_compression)]
    sizes = set()
    for image_id, measured in info.fov_diameters.items():
        image = _decode_ppm_gz(root / "stare-images" / f"{image_id}.ppm.gz")
        assert measured == pytest.approx(fov.fov_diameter(image))
        f = TARGET / measured
        h, w = round(image.shape[0] * f), round(image.shape[1] * f)  # independently
        sizes.add((w, h))
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        big = cv2.resize(small, (w * SCALE, h * SCALE), interpolation=cv2.INTER_CUBIC)
        label = _decode_ppm_gz(root / "labels-ah" / f"{image_id}.ah.ppm.gz")[..., 0]
        grey = np.where(label > 127, 255, 0).astype(np.uint8)
        small_mask = cv2.resize(grey, (w, h), interpolation=cv2.INTER_LINEAR) > 127
        big_mask = cv2.resize(small_mask.astype(np.uint8) * 255, (w * SCALE, h * SCALE),
                              interpolation=cv2.INTER_LINEAR) > 127
        tiles = {(m["tile_y"], m["tile_x"]): (img, msk) for img, msk, m in records
                 if m["image_id"] == image_id}
        H, W = h * SCALE, w * SCALE
        ph, pw = math.ceil(H / TILE) * TILE - H, math.ceil(W / TILE) * TILE - W
        padded = np.pad(big, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        padded_mask = np.pad(big_mask, ((0, ph), (0, pw)))
        expected = {(y, x) for y in range(0, H, TILE) for x in range(0, W, TILE)
                    if padded_mask[y:y + TILE, x:x + TILE].any()}
        assert set(tiles) == expected and expected
        for (y, x), (img, msk) in tiles.items():
            assert np.array_equal(img, padded[y:y + TILE, x:x + TILE])
            assert np.array_equal(msk[..., 0] > 0, padded_mask[y:y + TILE, x:x + TILE])
    assert sorted(map(tuple, info.source_sizes)) == sorted(sizes)
    assert "resampled to a FOV diameter of 100 px" in pipeline.format_summary(summary)

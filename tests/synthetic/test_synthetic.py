"""Tests of the synthetic fundus generator, the STARE-layout writer and vessel-synth."""
from __future__ import annotations

import gzip
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tiled_vessel_seg.synthetic import cli
from tiled_vessel_seg.synthetic import fundus
from tiled_vessel_seg.synthetic import stare_layout

STARE_SIZE = (605, 700)  # (H, W)
TINY_SIZES = [(140, 160), (112, 128)]


@pytest.fixture(scope="module")
def stare_sized():
    """Three full-size (605x700) images: seed -> (image, mask)."""
    return {seed: fundus.generate_fundus(seed) for seed in (0, 1, 2)}


def _decode_ppm_gz(path: pathlib.Path) -> np.ndarray:
    """Independent reader: gunzip + cv2.imdecode, returned as RGB [H, W, 3]."""
    raw = gzip.decompress(path.read_bytes())
    assert raw.startswith(b"P6\n"), f"{path} is not a binary PPM"
    bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    assert bgr is not None, f"cv2 cannot decode {path}"
    return bgr[..., ::-1]


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """Pixels between `inner` and `outer` px from the mask (bool [H, W])."""
    distance = cv2.distanceTransform(np.where(mask > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 5)
    return (distance > inner) & (distance <= outer)


def _fov_estimate(image: np.ndarray) -> np.ndarray:
    return image.astype(np.int32).sum(-1) > 60


def test_deterministic_and_seed_dependent():
    a_image, a_mask = fundus.generate_fundus(7, 140, 160)
    b_image, b_mask = fundus.generate_fundus(7, 140, 160)
    c_image, c_mask = fundus.generate_fundus(8, 140, 160)
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert np.mean(a_image != c_image) > 0.5
    assert np.mean(a_mask != c_mask) > 0.01


@pytest.mark.parametrize("height,width", [STARE_SIZE, *TINY_SIZES])
def test_shapes_dtypes_binary_mask(height, width):
    image, mask = fundus.generate_fundus(3, height, width)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    assert mask.shape == (height, width) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 255}


def test_too_small_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        fundus.generate_fundus(0, 20, 200)


@pytest.mark.parametrize("height,width", [STARE_SIZE, *TINY_SIZES])
def test_field_of_view_and_vessel_fraction(height, width, stare_sized):
    for seed in range(3):
        if (height, width) == STARE_SIZE:
            image, mask = stare_sized[seed]
        else:
            image, mask = fundus.generate_fundus(seed, height, width)
        corner = max(3, height // 20)
        for patch in (image[:corner, :corner], image[:corner, -corner:],
                      image[-corner:, :corner], image[-corner:, -corner:]):
            assert patch.mean() < 25
        center = image[height // 2 - corner:height // 2 + corner,
                       width // 2 - corner:width // 2 + corner]
        assert center.mean() > 50
        # Vessels only inside the bright field of view.
        assert not np.any((mask > 0) & ~_fov_estimate(image))
        fraction = np.mean(mask > 0)
        if (height, width) == STARE_SIZE:
            assert 0.04 <= fraction <= 0.14, fraction
        else:
            assert 0.01 <= fraction <= 0.16, fraction


def test_orange_red_background(stare_sized):
    image, mask = stare_sized[0]
    background = image[_fov_estimate(image) & (mask == 0)].astype(np.float64).mean(0)
    red, green, blue = background
    assert red > green > blue


@pytest.mark.parametrize("height,width", [STARE_SIZE, TINY_SIZES[0]])
def test_vessels_darker_than_surrounding_background(height, width, stare_sized):
    image, mask = (stare_sized[1] if (height, width) == STARE_SIZE
                   else fundus.generate_fundus(1, height, width))
    green = image[..., 1].astype(np.float64)
    inside = (mask > 0)
    ring = _ring(mask, 2, 5) & _fov_estimate(image)
    assert green[inside].mean() < 0.8 * green[ring].mean()
    # The mask is exact: the pixels just outside it are not darkened like those inside.
    just_outside = _ring(mask, 0, 1) & _fov_estimate(image)
    assert green[just_outside].mean() > green[inside].mean() + 8
    # ...and vessels are not a single colour threshold away: a global green threshold
    # chosen with hindsight still mislabels a good share of pixels (uneven illumination).
    fov = _fov_estimate(image)
    best_dice = max(
        2 * np.sum((green < t) & fov & inside) / (np.sum((green < t) & fov) + inside.sum())
        for t in range(10, 250, 4))
    assert best_dice < 0.9


def test_widths_taper_from_about_8_px_to_1_px(stare_sized):
    for image, mask in stare_sized.values():
        del image
        # Vessel half-width at each pixel: distance to the nearest background pixel.
        # Widest vessels ~8 px; only junctions (vessels merging near the disc) are wider.
        half_width = cv2.distanceTransform(mask, cv2.DIST_L2, 5)[mask > 0]
        assert 6.0 <= 2 * np.percentile(half_width, 99) <= 10.0
        assert 2 * half_width.max() <= 14.0
        # Thin vessels exist: many pixels whose vessel is 1-2 px across (a 3x3 opening
        # erases them).
        opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        assert np.sum((mask > 0) & (opened == 0)) > 0.2 * np.sum(mask > 0)


def test_disc_is_brightest_and_vessel_trees_start_there(stare_sized):
    image, mask = stare_sized[2]
    brightness = cv2.GaussianBlur(image.astype(np.float32).sum(-1), (0, 0), 10)
    y, x = np.unravel_index(np.argmax(brightness), brightness.shape)
    # The widest vessel pixels lie near the disc (within ~2.5 disc radii).
    half_width = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    wy, wx = np.nonzero(half_width >= half_width.max() - 0.5)
    assert np.min(np.hypot(wy - y, wx - x)) < 110


def test_encode_ppm_matches_cv2_reader():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data = stare_layout.encode_ppm(rgb)
    assert data.startswith(b"P6\n7 5\n255\n")
    np.testing.assert_array_equal(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)[..., ::-1], rgb)
    grey = np.array([[0, 255]], np.uint8)
    assert stare_layout.encode_ppm(grey).endswith(bytes([0, 0, 0, 255, 255, 255]))


def test_layout_round_trip(tmp_path):
    written = stare_layout.write_synthetic_stare(
        str(tmp_path), 2, width=128, height=112, seed=5, first_id=3)
    assert [pathlib.Path(p).relative_to(tmp_path).as_posix() for p in written] == [
        "stare-images/im0003.ppm.gz", "labels-ah/im0003.ah.ppm.gz",
        "stare-images/im0004.ppm.gz", "labels-ah/im0004.ah.ppm.gz"]
    assert not list(tmp_path.rglob("*.tmp-*"))
    for number in (3, 4):
        image, mask = fundus.generate_fundus(stare_layout.image_seed(5, number), 112, 128)
        read_image = _decode_ppm_gz(tmp_path / "stare-images" / f"im{number:04d}.ppm.gz")
        read_label = _decode_ppm_gz(tmp_path / "labels-ah" / f"im{number:04d}.ah.ppm.gz")
        np.testing.assert_array_equal(read_image, image)
        assert read_label.shape == (112, 128, 3)
        for channel in range(3):
            np.testing.assert_array_equal(read_label[..., channel], mask)


def test_image_independent_of_first_id(tmp_path):
    stare_layout.write_synthetic_stare(str(tmp_path / "a"), 3, width=64, height=56, seed=1)
    stare_layout.write_synthetic_stare(str(tmp_path / "b"), 1, width=64, height=56, seed=1,
                                       first_id=3)
    name = "stare-images/im0003.ppm.gz"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_shared_fixture_layout(synthetic_stare_dir):
    images = sorted(p.name for p in (synthetic_stare_dir / "stare-images").iterdir())
    labels = sorted(p.name for p in (synthetic_stare_dir / "labels-ah").iterdir())
    assert images == [f"im000{i}.ppm.gz" for i in range(1, 5)]
    assert labels == [f"im000{i}.ah.ppm.gz" for i in range(1, 5)]
    assert _decode_ppm_gz(synthetic_stare_dir / "stare-images" / images[0]).shape == (140, 160, 3)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiled_vessel_seg.synthetic.cli", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_end_to_end_deterministic_and_refuses_overwrite(tmp_path):
    args = ["--num_images", "2", "--size", "96x80", "--seed", "4"]
    first = _run_cli("--output_dir", str(tmp_path / "a"), *args)
    assert first.returncode == 0, first.stderr
    assert "wrote 2 image(s)" in first.stdout
    second = _run_cli("--output_dir", str(tmp_path / "b"), *args)
    assert second.returncode == 0, second.stderr
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.gz"))
    assert len(files) == 4
    for rel in files:  # byte-identical, gzip header included
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    image = _decode_ppm_gz(tmp_path / "a" / "stare-images" / "im0001.ppm.gz")
    assert image.shape == (80, 96, 3)
    np.testing.assert_array_equal(
        image, fundus.generate_fundus(stare_layout.image_seed(4, 1), 80, 96)[0])

    before = (tmp_path / "a" / files[0]).stat().st_mtime_ns
    refused = _run_cli("--output_dir", str(tmp_path / "a"), *args)
    assert refused.returncode != 0
    assert "--overwrite" in refused.stderr and "already exist" in refused.stderr
    assert (tmp_path / "a" / files[0]).stat().st_mtime_ns == before

    replaced = _run_cli("--output_dir", str(tmp_path / "a"), *args, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr


def test_cli_rejects_bad_size_and_missing_output_dir(tmp_path):
    bad = _run_cli("--output_dir", str(tmp_path), "--size", "700by605")
    assert bad.returncode != 0 and "WIDTHxHEIGHT" in bad.stderr
    missing = _run_cli()
    assert missing.returncode != 0 and "output_dir" in missing.stderr
    assert not list(tmp_path.iterdir())


def test_parse_size():
    assert cli.parse_size("700x605") == (700, 605)
    assert cli.parse_size("160X140") == (160, 140)
    with pytest.raises(ValueError, match="too small"):
        cli.parse_size("16x16")

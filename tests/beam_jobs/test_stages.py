"""Pure stages of the Beam job against independent numpy/cv2 references."""
import itertools
import math

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import imaging
from tiled_vessel_seg.beam_jobs import augment, split, tiling
from tiled_vessel_seg.configs.schema import DISTORTION_CENTERS, REFERENCE_AUGMENTATIONS


# ----------------------------------------------------------------------------- enlarge
def test_enlarge_sizes_and_bicubic_values():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    big = imaging.enlarge_image(image, 5)
    assert big.shape == (35, 45, 3) and big.dtype == np.uint8
    assert np.array_equal(big, cv2.resize(image, (45, 35), interpolation=cv2.INTER_CUBIC))


def test_enlarged_mask_is_binary_and_follows_threshold_at_half():
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = 1
    big = imaging.enlarge_mask(mask, 4)
    assert big.shape == (24, 32) and set(np.unique(big)) == {0, 1}
    ref = cv2.resize(mask.astype(np.float32), (32, 24), interpolation=cv2.INTER_LINEAR) >= 0.5
    assert np.mean(big.astype(bool) != ref) < 0.01  # rounding at exactly 0.5 only
    assert big[9:15, 13:23].all() and not big[:4].any()  # interior set, far rows clear


def test_stage_1_rejects_an_image_and_mask_of_different_sizes():
    from tiled_vessel_seg.beam_jobs import tile_tasks
    from tiled_vessel_seg.configs.schema import PreprocessConfig
    with pytest.raises(ValueError, match=r"image \(4, 5\) and mask \(4, 6\) differ"):
        tile_tasks.plan_image("im1", "im1.ppm", "train", np.zeros((4, 5, 3), np.uint8),
                              np.zeros((4, 6), np.uint8), PreprocessConfig(scale=2))


# ----------------------------------------------------------------------------- tiling
@pytest.mark.parametrize("h, w, tile, stride", [
    (128, 192, 64, 64),    # exact multiples
    (130, 100, 64, 64),    # not multiples
    (3025, 3500, 512, 512),  # STARE at scale 5: 6 x 7 = 42 positions
    (100, 90, 64, 48),     # overlapping stride
    (20, 30, 64, 64),      # image smaller than a tile
])
def test_tile_grid_count_origins_and_coverage(h, w, tile, stride):
    origins = tiling.grid_origins(h, w, tile, stride)
    ys = sorted({y for y, _ in origins})
    xs = sorted({x for _, x in origins})
    # independent count: the smallest n with (n - 1) * stride + tile >= length
    n_y = next(n for n in itertools.count(1) if (n - 1) * stride + tile >= h)
    n_x = next(n for n in itertools.count(1) if (n - 1) * stride + tile >= w)
    assert len(origins) == n_y * n_x
    assert ys == [i * stride for i in range(n_y)] and xs == [i * stride for i in range(n_x)]
    if (h, w) == (3025, 3500):
        assert len(origins) == 42
    covered = np.zeros((h, w), bool)
    for y, x in origins:
        covered[y:y + tile, x:x + tile] = True
    assert covered.all()


@pytest.mark.parametrize("h, w", [(130, 100), (20, 30), (128, 128)])
def test_tiles_are_crops_of_a_reflect_and_zero_padded_image(h, w):
    tile = 64
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = rng.integers(0, 2, (h, w), dtype=np.uint8)
    tiles = list(tiling.iter_tiles(image, mask, tile))
    ph = math.ceil(h / tile) * tile - h
    pw = math.ceil(w / tile) * tile - w
    ref_image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    ref_mask = np.pad(mask, ((0, ph), (0, pw)))
    assert len(tiles) == math.ceil(h / tile) * math.ceil(w / tile)
    for t in tiles:
        assert t.image.shape == (tile, tile, 3) and t.mask.shape == (tile, tile)
        assert np.array_equal(t.image, ref_image[t.y:t.y + tile, t.x:t.x + tile])
        assert np.array_equal(t.mask, ref_mask[t.y:t.y + tile, t.x:t.x + tile])
        assert np.array_equal(t.image[:max(0, min(tile, h - t.y)), :max(0, min(tile, w - t.x))],
                              image[t.y:t.y + tile, t.x:t.x + tile])


def test_filter_counts_match_numpy_reference():
    rng = np.random.default_rng(3)
    mask = np.zeros((256, 256), np.uint8)
    mask[rng.integers(0, 256, 40), rng.integers(0, 256, 40)] = 1
    mask[:64, :64] = 1  # one full tile
    tiles = list(tiling.iter_tiles(np.zeros((256, 256, 3), np.uint8), mask, 64))
    for threshold in (0.0, 0.001, 0.5):
        kept = sum(tiling.keep_tile(t.mask, threshold) for t in tiles)
        blocks = mask.reshape(4, 64, 4, 64).mean(axis=(1, 3))
        assert kept == int((blocks > threshold).sum())


def test_whole_image_sample_letterboxes_and_resizes():
    image = np.full((60, 100, 3), 200, np.uint8)
    mask = np.ones((60, 100), np.uint8)
    small_image, small_mask = tiling.whole_image_sample(image, mask, 50)
    assert small_image.shape == (50, 50, 3) and small_mask.shape == (50, 50)
    # 100x100 square with 20-px black bands above and below -> 10 px at size 50
    assert (small_image[:9] == 0).all() and (small_image[41:] == 0).all()
    assert (small_image[11:39] == 200).all()
    assert set(np.unique(small_mask)) == {0, 1}
    assert small_mask[11:39].all() and not small_mask[:9].any()


# ----------------------------------------------------------------------------- augment
def _pair_with_known_mask(size=64, seed=4):
    """Image whose red channel is 0/255 blobs; mask = red > 127 (a known function)."""
    rng = np.random.default_rng(seed)
    blobs = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), 3)
    red = np.where(blobs > 0, 255, 0).astype(np.uint8)
    image = np.stack([red, rng.integers(0, 256, (size, size), dtype=np.uint8),
                      np.full((size, size), 90, np.uint8)], axis=-1)
    return image, (red > 127).astype(np.uint8)


ALL_VARIANTS = augment.variants(REFERENCE_AUGMENTATIONS, DISTORTION_CENTERS)


def test_reference_set_expands_to_one_copy_per_distortion_centre():
    names = [v.name for v in ALL_VARIANTS]
    assert len(names) == 5 + 1 + 2 + 2 * len(DISTORTION_CENTERS) == len(set(names))
    assert "barrel_0.3_0.7" in names and "pincushion_0.5_0.5" in names


@pytest.mark.parametrize("variant", ALL_VARIANTS, ids=lambda v: v.name)
def test_augmentation_keeps_mask_equal_to_its_function_of_the_image(variant):
    image, mask = _pair_with_known_mask()
    rng = augment.rng_for(0, "im0001", 0, 64, variant.name)
    out_image, out_mask = augment.augment(image, mask, variant, rng)
    assert out_image.shape == image.shape and out_image.dtype == np.uint8
    assert out_mask.shape == mask.shape and set(np.unique(out_mask)) <= {0, 1}
    assert np.array_equal(out_mask, (out_image[..., 0] > 127).astype(np.uint8))
    assert not np.array_equal(out_image, image)  # it did transform
    assert 0.2 < out_mask.mean() < 0.8  # not collapsed


@pytest.mark.parametrize("kind, ref", [
    ("hflip", lambda a: a[:, ::-1]), ("vflip", lambda a: a[::-1]),
    ("rot90", lambda a: np.rot90(a, 1)), ("rot180", lambda a: a[::-1, ::-1]),
    ("rot270", lambda a: np.rot90(a, -1)),
])
def test_flips_and_rotations_are_exact(kind, ref):
    image, mask = _pair_with_known_mask(32)
    out_image, out_mask = augment.augment(image, mask, augment.Variant(kind, kind), None)
    assert np.array_equal(out_image, ref(image)) and np.array_equal(out_mask, ref(mask))


def test_elastic_map_matches_blurred_uniform_fields():
    rng_a = np.random.default_rng(7)
    map_x, map_y = augment.elastic_map((40, 50), rng_a, alpha=100.0, sigma=4.0)
    fields = np.random.default_rng(7).uniform(-1, 1, (2, 40, 50)).astype(np.float32)
    dx = cv2.GaussianBlur(fields[0], (0, 0), 4.0) * 100.0
    assert np.allclose(map_x - np.arange(50)[None, :], dx, atol=1e-3)
    assert map_y.shape == (40, 50)


def test_radial_map_fixes_the_centre_and_moves_corners():
    mx, my = augment.radial_map((101, 101), (0.5, 0.5), 0.2)
    assert mx[50, 50] == pytest.approx(50) and my[50, 50] == pytest.approx(50)
    assert mx[0, 100] == pytest.approx(50 + 50 * 1.2)  # r = 1 at the farthest corner
    mx, _ = augment.radial_map((101, 101), (0.5, 0.5), -0.2)
    assert mx[0, 100] == pytest.approx(50 + 50 * 0.8)


def test_augmentation_is_deterministic_per_key_and_differs_between_keys():
    image, mask = _pair_with_known_mask()
    chosen = augment.variants(["elastic", "grid_distortion_1", "barrel"], [(0.3, 0.3)])
    run1 = list(augment.augmented_copies(image, mask, chosen, 5, "im0001", 0, 64))
    run2 = list(augment.augmented_copies(image, mask, chosen, 5, "im0001", 0, 64))
    other = list(augment.augmented_copies(image, mask, chosen, 5, "im0001", 64, 64))
    for (n1, i1, m1), (n2, i2, m2), (_, i3, _) in zip(run1, run2, other):
        assert n1 == n2 and np.array_equal(i1, i2) and np.array_equal(m1, m2)
        assert not np.array_equal(i1, i3)
    assert augment.stable_seed(1, "a") == augment.stable_seed(1, "a") != augment.stable_seed(2, "a")


# ----------------------------------------------------------------------------- split
def test_split_is_disjoint_complete_and_follows_shares():
    ids = [f"im{i:04d}" for i in range(1, 21)]
    out = split.assign_splits(ids, "train=0.7,valid=0.15,test=0.15", seed=3)
    assert sorted(out) == ids
    counts = {s: sum(v == s for v in out.values()) for s in split.SPLIT_NAMES}
    assert counts == {"train": 14, "valid": 3, "test": 3}
    assert out == split.assign_splits(list(reversed(ids)), "train=0.7,valid=0.15,test=0.15", 3)
    assert out != split.assign_splits(ids, "train=0.7,valid=0.15,test=0.15", seed=4)


def test_small_sets_give_every_nonzero_split_an_image():
    for n in (3, 4, 7):
        out = split.assign_splits([f"i{k}" for k in range(n)], "train=0.8,valid=0.1,test=0.1", 0)
        assert set(out.values()) == {"train", "valid", "test"}
    out = split.assign_splits(["a", "b", "c"], "train=1.0", 0)
    assert set(out.values()) == {"train"}


def test_explicit_ids_and_bad_specs():
    out = split.assign_splits(["a", "b", "c", "d"], valid_ids=["b"], test_ids=["d"])
    assert out == {"a": "train", "b": "valid", "c": "train", "d": "test"}
    with pytest.raises(ValueError, match="not among"):
        split.assign_splits(["a"], valid_ids=["z"])
    with pytest.raises(ValueError, match="both"):
        split.assign_splits(["a", "b"], valid_ids=["a"], test_ids=["a"])
    with pytest.raises(ValueError, match="sum"):
        split.parse_split("train=0.5,valid=0.1")
    with pytest.raises(ValueError, match="names"):
        split.parse_split("training=1.0")

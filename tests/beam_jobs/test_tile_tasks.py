"""The Beam job's tile tasks: a tile rebuilt from its small source window equals the tile cut
from the whole enlarged, padded image (independent reference: cv2 resize of the whole
image + numpy padding), for every tile, scale, stride and image size tried."""
import gzip
import math

import cv2
import numpy as np
import pytest

from tiled_vessel_seg.beam_jobs import tile_tasks
from tiled_vessel_seg.configs.schema import PreprocessConfig
from tiled_vessel_seg.tfrecords.encoding import TileEncoding


def reference_tiles(image, mask, scale, tile, stride):
    """{(y, x): (image tile, mask tile)} cut from the whole enlargement, padded by numpy."""
    h, w = mask.shape
    big = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    big_mask = cv2.resize(mask * np.uint8(255), (w * scale, h * scale),
                          interpolation=cv2.INTER_LINEAR) > 127
    H, W = big_mask.shape
    ny = math.ceil(max(H - tile, 0) / stride) + 1
    nx = math.ceil(max(W - tile, 0) / stride) + 1
    ph, pw = (ny - 1) * stride + tile - H, (nx - 1) * stride + tile - W
    padded = np.pad(big, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(H, W) > 1 else "edge")
    padded_mask = np.pad(big_mask, ((0, ph), (0, pw)))
    return {(y, x): (padded[y:y + tile, x:x + tile], padded_mask[y:y + tile, x:x + tile])
            for y in range(0, ny * stride, stride) for x in range(0, nx * stride, stride)}


def check_plan(image, mask, config):
    plan = tile_tasks.plan_image("im0001", "a/im0001.ppm", "valid", image, mask, config)
    ref = reference_tiles(image, mask, config.scale, config.tile_size, config.stride)
    kept = {k: v for k, v in ref.items() if v[1].mean() > config.min_vessel_fraction}
    assert plan.tiles_total == len(ref) and plan.tiles_kept == len(kept) == len(plan.tasks)
    assert plan.tiles_dropped == len(ref) - len(kept) and plan.augmented == 0
    for task in plan.tasks:
        got_image, got_mask = tile_tasks.build_tile(task, config)
        want_image, want_mask = kept[(task.y, task.x)]
        np.testing.assert_array_equal(got_image, want_image)
        np.testing.assert_array_equal(got_mask, want_mask)
    return plan


@pytest.mark.parametrize("h, w, scale, tile, stride", [
    (60, 70, 5, 64, 64),     # edge tiles padded by reflection inside the tile
    (61, 47, 3, 64, 40),     # overlapping stride, odd sizes
    (30, 20, 5, 64, 64),     # pads longer than half a tile
    (10, 9, 2, 64, 64),      # image smaller than one tile: reflection repeats
    (50, 50, 1, 16, 16),     # scale 1: windows are plain crops
])
def test_windows_rebuild_the_tiles_of_the_whole_enlargement(h, w, scale, tile, stride):
    rng = np.random.default_rng(h * w)
    image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (3, 3), 0)
    mask = (rng.random((h, w)) > 0.8).astype(np.uint8)
    config = PreprocessConfig(scale=scale, tile_size=tile, tile_stride=stride, augmentations=())
    check_plan(image, mask, config)


def test_vessel_free_tiles_are_dropped_and_whole_image_is_one_finished_task():
    image = np.full((40, 40, 3), 120, np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[2:5, 2:5] = 1  # vessels in the top-left tile only
    config = PreprocessConfig(scale=2, tile_size=32, augmentations=("hflip", "rot90"),
                              whole_image=True)
    plan = tile_tasks.plan_image("a", "a.png", "train", image, mask, config)
    assert (plan.tiles_total, plan.tiles_kept, plan.tiles_dropped) == (9, 1, 8)
    assert [(t.y, t.x, t.finished) for t in plan.tasks] == [(0, 0, False), (-1, -1, True)]
    assert plan.augmented == 2 * 2 and plan.records == 6
    records = [r for t in plan.tasks for r in tile_tasks.task_records(
        t, config, TileEncoding("png", "packed"))]
    assert len(records) == plan.records


@pytest.mark.real_data
def test_real_photograph_every_tile_exact(real_stare_dir):
    def read(path, flags):
        return cv2.imdecode(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8), flags)
    image = read(real_stare_dir / "stare-images" / "im0044.ppm.gz", cv2.IMREAD_COLOR)[..., ::-1]
    label = read(real_stare_dir / "labels-ah" / "im0044.ah.ppm.gz", cv2.IMREAD_GRAYSCALE)
    mask = (label > 127).astype(np.uint8)
    image = np.ascontiguousarray(image)
    for stride in (512, 448):
        plan = check_plan(image, mask, PreprocessConfig(scale=5, tile_size=512, tile_stride=stride,
                                                        augmentations=()))
        # an inner task carries its source window (<= 104 + 2 margins px a side, 36 KB),
        # not the 512 x 512 tile (768 KB)
        inner = [t for t in plan.tasks if t.y + 512 <= 3025 and t.x + 512 <= 3500]
        assert inner and all(max(t.image.shape[:2]) <= 104 + 2 * tile_tasks.MARGIN for t in inner)

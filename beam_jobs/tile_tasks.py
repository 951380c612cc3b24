"""Per-tile work of the Beam job: the image stage plans it, the tile stage does it.

The image stage (`plan_image`) does everything that can fail for an image - it is given
the decoded pair, enlarges the mask, chooses the tiles - and hands each kept tile on as a
`TileTask`. After a shuffle, the tile stage (`task_records`) rebuilds the tile, augments
it (training tiles only) and encodes its records. The costly per-tile work is spread
over all workers, and an image that fails does so before any of its tiles exists.

What a task carries matters. The multi-process DirectRunner moves every element through
its runner process: ~20 ms of CPU for an enlarged 512 tile (1 MB), about what augmenting
it costs. A task carries the tile's *source window* instead: the pixels of the
photograph the tile is enlarged from plus MARGIN px around them (~110 x 110 x 3 at scale
5, 25x smaller), and the tile stage enlarges that window again (~0.3 ms). Bicubic and
bilinear interpolation at an integer scale read at most 2 source pixels on either side,
so the window's enlargement equals the whole image's enlargement on the tile exactly
(tested, on real photographs too).

Label planes: when the job writes field-of-view planes ([preprocess] fov_masks), the
vessel mask and the FOV travel as ONE array [h, w, 2] (vessels, FOV) through enlargement,
cutting, padding and every augmentation, so the FOV gets exactly the mask's geometry
(same tiles, flips, rotations, the same elastic field) by construction. Without FOV the
labels are the mask [h, w], as before.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Optional

import numpy as np

from tiled_vessel_seg import imaging
from tiled_vessel_seg.beam_jobs import augment, tiling
from tiled_vessel_seg.configs.schema import PreprocessConfig
from tiled_vessel_seg.tfrecords import schema
from tiled_vessel_seg.tfrecords.encoding import TileEncoding

MARGIN = 3  # source px around a window; the cubic kernel reaches 2


@dataclasses.dataclass(frozen=True)
class TileTask:
    """One kept tile, as the image stage hands it to the tile stage.

    (y, x): tile origin in the enlarged image of `enlarged_shape` (H, W); (-1, -1) is the
    whole-image sample. image uint8 [h, w, 3] / mask uint8 [h, w] {0, 1}: the source
    window whose top-left source pixel is `window_origin`, or, when `finished`, the tile
    itself (the whole-image sample, made from the whole enlarged image). With FOV planes,
    mask is the label planes uint8 [h, w, 2] {0, 1}: vessels, then field of view.
    """
    image_id: str
    source_path: str
    split: str
    y: int
    x: int
    enlarged_shape: tuple[int, int]
    window_origin: tuple[int, int]
    image: np.ndarray
    mask: np.ndarray
    finished: bool = False
    dataset: str = ""  # the dataset's name, written into each record


@dataclasses.dataclass
class ImagePlan:
    """The tasks of one image and its counts (the stats line of images.jsonl)."""
    tasks: list[TileTask]
    tiles_total: int
    tiles_kept: int
    tiles_dropped: int
    whole_image: int
    augmented: int

    @property
    def records(self) -> int:
        return len(self.tasks) + self.augmented


def source_window(start: int, tile_size: int, enlarged_length: int, source_length: int,
                  scale: int) -> tuple[int, int]:
    """[first, last) source pixels, along one axis, that the padded tile starting at
    `start` of the enlarged axis is interpolated from, plus MARGIN on either side."""
    needed = tiling.padded_indices(start, tile_size, enlarged_length)
    first = max(0, int(needed.min()) // scale - MARGIN)
    last = min(source_length, -(-(int(needed.max()) + 1) // scale) + MARGIN)
    return first, last


def label_planes(mask: np.ndarray, fov: Optional[np.ndarray]) -> np.ndarray:
    """mask uint8 [h, w] {0, 1} and fov (same, or None) -> uint8 [h, w, 2] (vessels, FOV),
    or the mask itself when fov is None."""
    if fov is None:
        return mask
    if fov.shape[:2] != mask.shape[:2]:
        raise ValueError(f"FOV {fov.shape[:2]} and mask {mask.shape[:2]} differ in size")
    return np.dstack([mask, (fov > 0).astype(mask.dtype)])


def split_planes(labels: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The inverse of `label_planes`: (mask [h, w], fov [h, w] or None)."""
    if labels.ndim == 2:
        return labels, None
    return labels[..., 0], labels[..., 1]


def plan_image(image_id: str, source_path: str, split: str, image: np.ndarray,
               mask: np.ndarray, config: PreprocessConfig,
               fov: Optional[np.ndarray] = None, dataset: str = "") -> ImagePlan:
    """Stages 1-3 and 7 of one decoded pair: the kept tiles as tasks, and the counts.

    image uint8 [h, w, 3]; mask uint8 [h, w] {0, 1} of the same size; fov uint8 [h, w]
    {0, 1} or None (no FOV plane in the records). Tiles are kept on the vessels alone.
    """
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    labels = label_planes(mask, fov)
    scale, size = config.scale, config.tile_size
    h, w = mask.shape
    big_labels = imaging.enlarge_mask(labels, scale)  # per plane: [..., 0] is the mask's
    big_mask = big_labels if fov is None else big_labels[..., 0]
    height, width = big_mask.shape
    tasks: list[TileTask] = []
    total = 0
    for y, x in tiling.grid_origins(height, width, size, config.stride):
        total += 1
        if tiling.padded_vessel_fraction(big_mask, y, x, size) <= config.min_vessel_fraction:
            continue
        y0, y1 = source_window(y, size, height, h, scale)
        x0, x1 = source_window(x, size, width, w, scale)
        tasks.append(TileTask(image_id, source_path, split, y, x, (height, width), (y0, x0),
                              np.ascontiguousarray(image[y0:y1, x0:x1]),
                              np.ascontiguousarray(labels[y0:y1, x0:x1]),
                              dataset=dataset))
    kept = len(tasks)
    if config.whole_image:
        big_image = imaging.enlarge_image(image, scale)
        small_image, small_mask = tiling.whole_image_sample(big_image, big_labels, size)
        tasks.append(TileTask(image_id, source_path, split, schema.WHOLE_IMAGE_ORIGIN,
                              schema.WHOLE_IMAGE_ORIGIN, (height, width), (0, 0),
                              small_image, small_mask, finished=True, dataset=dataset))
    copies = len(augment_variants(split, config))
    return ImagePlan(tasks, tiles_total=total, tiles_kept=kept, tiles_dropped=total - kept,
                     whole_image=int(config.whole_image), augmented=copies * len(tasks))


def augment_variants(split: str, config: PreprocessConfig) -> list[augment.Variant]:
    """The augmented copies a tile of `split` gets: all configured ones for train, none else."""
    if split != "train":
        return []
    return augment.variants(config.augmentations, config.distortion_centers)


def build_tile(task: TileTask, config: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """The task's tile: image uint8 [T, T, 3], labels uint8 [T, T] {0, 1} (or [T, T, 2],
    vessels and FOV: see the module docstring)."""
    if task.finished:
        return task.image, task.mask
    scale = config.scale
    window_image = imaging.enlarge_image(task.image, scale)
    window_mask = imaging.enlarge_mask(task.mask, scale)
    origin = (task.window_origin[0] * scale, task.window_origin[1] * scale)
    return tiling.cut_tile(window_image, window_mask, task.y, task.x, config.tile_size,
                           task.enlarged_shape, origin)


def task_records(task: TileTask, config: PreprocessConfig,
                 encoding: TileEncoding) -> Iterator[bytes]:
    """Serialized records of one task: the tile, then its augmented copies (train only)."""
    image, labels = build_tile(task, config)

    def record(tile_image, tile_labels, name):
        tile_mask, tile_fov = split_planes(tile_labels)
        return schema.encode_example(schema.TileRecord(
            tile_image, tile_mask, task.image_id, task.y, task.x, config.scale, name,
            task.source_path, fov=tile_fov, dataset=task.dataset), encoding)

    yield record(image, labels, schema.NO_AUGMENTATION)
    # The label planes are augmented as one array: the FOV moves exactly like the mask.
    for name, aug_image, aug_labels in augment.augmented_copies(
            image, labels, augment_variants(task.split, config), config.seed, task.image_id,
            task.y, task.x, config.elastic_alpha, config.elastic_sigma):
        yield record(aug_image, aug_labels, name)

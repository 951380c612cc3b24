"""Stages 2, 3 and 7: cut padded tiles, filter vessel-free ones, make the whole-image sample.

Tiles are never resized: edge tiles are padded (reflect-101 for the image, 0 for the mask)
so every pixel of the enlarged image lies in at least one tile of exactly tile_size.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import numpy as np

from tiled_vessel_seg.imaging import MASK_THRESHOLD


@dataclasses.dataclass(frozen=True)
class Tile:
    """image: uint8 [T, T, 3]; mask: uint8 [T, T] {0, 1}; (y, x): origin in the enlarged image."""
    y: int
    x: int
    image: np.ndarray
    mask: np.ndarray


def tile_origins(length: int, tile_size: int, stride: int) -> list[int]:
    """Origins 0, stride, 2*stride, ... up to the first tile that reaches `length`.

    n = ceil(max(length - tile_size, 0) / stride) + 1 origins; the last tile may hang
    over the end (it is padded).
    """
    if length < 1 or tile_size < 1 or not 0 < stride <= tile_size:
        raise ValueError(f"bad tiling: length {length}, tile {tile_size}, stride {stride}")
    n = math.ceil(max(length - tile_size, 0) / stride) + 1
    return [i * stride for i in range(n)]


def grid_origins(height: int, width: int, tile_size: int, stride: int) -> list[tuple[int, int]]:
    """All (y, x) tile origins, row-major."""
    return [(y, x) for y in tile_origins(height, tile_size, stride)
            for x in tile_origins(width, tile_size, stride)]


def pad_to_grid(image: np.ndarray, mask: np.ndarray, tile_size: int,
                stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Pads bottom/right so the last tile origins fit: image reflect-101, mask 0."""
    import cv2
    h, w = mask.shape[:2]
    ph = tile_origins(h, tile_size, stride)[-1] + tile_size - h
    pw = tile_origins(w, tile_size, stride)[-1] + tile_size - w
    if ph == 0 and pw == 0:
        return image, mask
    if ph < h and pw < w:
        padded_image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
    else:  # Pads longer than the image: numpy reflects repeatedly, OpenCV may not.
        padded_image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1
                              else "edge")
    padded_mask = np.pad(mask, ((0, ph), (0, pw)), mode="constant")
    return padded_image, padded_mask


def iter_tiles(image: np.ndarray, mask: np.ndarray, tile_size: int,
               stride: int | None = None) -> Iterator[Tile]:
    """Yields every tile of image uint8 [H, W, 3] / mask uint8 [H, W], row-major.

    Tiles are views into one padded copy, so memory stays ~ one enlarged image.
    """
    stride = stride or tile_size
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    h, w = mask.shape[:2]
    padded_image, padded_mask = pad_to_grid(image, mask, tile_size, stride)
    for y, x in grid_origins(h, w, tile_size, stride):
        yield Tile(y, x, padded_image[y:y + tile_size, x:x + tile_size],
                   padded_mask[y:y + tile_size, x:x + tile_size])


def vessel_fraction(mask: np.ndarray) -> float:
    """Fraction of non-zero pixels of a mask [H, W]."""
    return float(np.count_nonzero(mask)) / float(mask.shape[0] * mask.shape[1])


def keep_tile(mask: np.ndarray, min_vessel_fraction: float) -> bool:
    """Stage 3: a tile is kept when its vessel fraction is > min_vessel_fraction."""
    return vessel_fraction(mask) > min_vessel_fraction


def whole_image_sample(image: np.ndarray, mask: np.ndarray,
                       size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 7: letterboxes image/mask to a centred square (0 borders) and resizes to size.

    Returns image uint8 [size, size, 3] (INTER_AREA) and mask uint8 [size, size] {0, 1}
    (INTER_AREA on 0/255, re-thresholded at half).
    """
    import cv2
    h, w = mask.shape[:2]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square_image = cv2.copyMakeBorder(image, top, side - h - top, left, side - w - left,
                                      cv2.BORDER_CONSTANT, value=(0, 0, 0))
    square_mask = cv2.copyMakeBorder(np.where(mask > 0, 255, 0).astype(np.uint8),
                                     top, side - h - top, left, side - w - left,
                                     cv2.BORDER_CONSTANT, value=0)
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_LINEAR
    small_image = cv2.resize(square_image, (size, size), interpolation=interp)
    small_mask = cv2.resize(square_mask, (size, size), interpolation=interp)
    return small_image, (small_mask > MASK_THRESHOLD).astype(np.uint8)

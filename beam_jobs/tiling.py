"""Stages 2, 3 and 7: cut padded tiles, filter vessel-free ones, make the whole-image sample.

Tiles are never resized: edge tiles are padded (reflect-101 for the image, 0 for the mask)
so every pixel of the enlarged image lies in at least one tile of exactly tile_size. A
tile can be cut from the whole image or from any window of it that holds the pixels it
needs (`cut_tile`'s origin), which is how the Beam job's tile stage rebuilds it.
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


def padded_indices(start: int, count: int, length: int) -> np.ndarray:
    """int64 [count]: for positions start .. start + count - 1 of an axis of `length`
    pixels padded on both sides by reflection, the index of the source pixel.

    Reflection without repeating the edge pixel (OpenCV BORDER_REFLECT_101, numpy
    'reflect'), periodic for pads longer than the axis; a 1-pixel axis repeats its pixel.
    """
    positions = np.arange(start, start + count)
    if length == 1:
        return np.zeros_like(positions)
    period = 2 * (length - 1)
    folded = np.mod(positions, period)
    return np.where(folded < length, folded, period - folded)


def cut_tile(image: np.ndarray, mask: np.ndarray, y: int, x: int, tile_size: int,
             shape: tuple[int, int] | None = None,
             origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """The tile at (y, x) of an image padded beyond its bottom/right edges (image by
    reflection, mask by zeros), so every tile has exactly tile_size x tile_size pixels.

    image uint8 [h, w, 3] and mask [h, w] hold rows origin[0] .. origin[0] + h - 1 and
    columns origin[1] .. of the full image of `shape` (H, W) (default: they ARE the full
    image); they must contain every source pixel the tile needs (`padded_indices`).
    Returns image uint8 [T, T, 3] (a view when the tile lies inside the image) and
    mask [T, T] (zeros past the image). mask may also be label planes [h, w, C]: every
    plane is cut alike ([T, T, C]).
    """
    height, width = shape or mask.shape[:2]
    oy, ox = origin
    inside_h, inside_w = min(tile_size, height - y), min(tile_size, width - x)
    if inside_h == tile_size and inside_w == tile_size:
        tile_image = image[y - oy:y - oy + tile_size, x - ox:x - ox + tile_size]
    else:
        rows = padded_indices(y, tile_size, height) - oy
        cols = padded_indices(x, tile_size, width) - ox
        tile_image = image[np.ix_(rows, cols)]
    tile_mask = np.zeros((tile_size, tile_size) + mask.shape[2:], mask.dtype)
    tile_mask[:inside_h, :inside_w] = mask[y - oy:y - oy + inside_h, x - ox:x - ox + inside_w]
    return tile_image, tile_mask


def iter_tiles(image: np.ndarray, mask: np.ndarray, tile_size: int,
               stride: int | None = None) -> Iterator[Tile]:
    """Yields every tile of image uint8 [H, W, 3] / mask uint8 [H, W], row-major
    (`cut_tile`: inner tiles are views, edge tiles padded copies)."""
    stride = stride or tile_size
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    h, w = mask.shape[:2]
    for y, x in grid_origins(h, w, tile_size, stride):
        yield Tile(y, x, *cut_tile(image, mask, y, x, tile_size))


def vessel_fraction(mask: np.ndarray) -> float:
    """Fraction of non-zero pixels of a mask [H, W]."""
    return float(np.count_nonzero(mask)) / float(mask.shape[0] * mask.shape[1])


def keep_tile(mask: np.ndarray, min_vessel_fraction: float) -> bool:
    """Stage 3: a tile is kept when its vessel fraction is > min_vessel_fraction."""
    return vessel_fraction(mask) > min_vessel_fraction


def padded_vessel_fraction(mask: np.ndarray, y: int, x: int, tile_size: int) -> float:
    """Vessel fraction of the zero-padded tile at (y, x) of mask [H, W], without cutting it."""
    return float(np.count_nonzero(mask[y:y + tile_size, x:x + tile_size])) / float(tile_size ** 2)


def whole_image_sample(image: np.ndarray, mask: np.ndarray,
                       size: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage 7: letterboxes image/mask to a centred square (0 borders) and resizes to size.

    Returns image uint8 [size, size, 3] (INTER_AREA) and mask uint8 [size, size] {0, 1}
    (INTER_AREA on 0/255, re-thresholded at half); label planes [h, w, C] give
    [size, size, C], every plane alike.
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

"""Blending windows for overlap-add of tile predictions.

A window is the outer product of a 1-D profile with itself, so the summed weights of a
regular tile grid are separable too (see `tiling.py`). Every weight is > 0, so each
pixel's summed weight is positive wherever at least one tile covers it.
"""
from __future__ import annotations

import numpy as np

BLENDS = ("gaussian", "linear", "none")


def blend_profile(tile_size: int, overlap: int, blend: str) -> np.ndarray:
    """1-D weights along one tile side: float32 [tile_size], maximum 1.

    gaussian: exp(-d^2 / (2 sigma^2)), d = distance from the tile centre, sigma = tile/8
      (the edge weight is exp(-8) ~ 3e-4: tile borders, where a conv net sees padding,
      count little).
    linear: ramps from 1/(overlap+1) up to 1 over the `overlap` pixels at each end, flat
      in between; two neighbouring ramps sum to exactly 1 across their overlap.
    none: all ones (plain average of the tiles covering a pixel).
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile_size={tile_size}), got {overlap}")
    i = np.arange(tile_size, dtype=np.float64)
    if blend == "gaussian":
        sigma = tile_size / 8.0
        d = i - (tile_size - 1) / 2.0
        w = np.exp(-(d * d) / (2.0 * sigma * sigma))
        w /= w.max()
    elif blend == "linear":
        ramp = np.minimum(i + 1.0, tile_size - i) / (overlap + 1.0)
        w = np.minimum(ramp, 1.0)
    elif blend == "none":
        w = np.ones(tile_size)
    else:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    return w.astype(np.float32)


def blend_window(tile_size: int, overlap: int, blend: str) -> np.ndarray:
    """2-D weights of one tile: float32 [tile_size, tile_size], the outer product of
    `blend_profile` with itself."""
    p = blend_profile(tile_size, overlap, blend)
    return np.outer(p, p).astype(np.float32)

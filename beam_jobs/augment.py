"""Stage 4: geometric augmentations of training tiles, applied to image and mask alike.

Each augmentation is one geometric map. Random maps are drawn from a numpy Generator
seeded by a stable hash of (seed, image id, tile origin, augmentation name), so a tile's
augmented copies are the same on every run and every worker. Image and mask are warped
with one fixed-point map (cv2.convertMaps), so they get the same field by
construction; the mask channel is re-thresholded at half afterwards. "mask" may be
label planes uint8 [H, W, 2] (vessels, field of view): both planes take the one map.

Augmentation names (configs.schema.REFERENCE_AUGMENTATIONS):
  hflip, vflip, rot90, rot180, rot270        exact numpy flips / rotations (counter-clockwise)
  elastic                                    Simard et al.: uniform(-1, 1) displacement
                                             fields, Gaussian-blurred (sigma), times alpha
  grid_distortion_1, grid_distortion_2       piecewise-linear grid warps (5 and 10 cells,
                                             cell sizes jittered by up to 30 % and 20 %)
  barrel, pincushion                         radial distortion r' = r (1 + k r^2), one copy
                                             per distortion centre; k in [0.1, 0.3] for
                                             barrel, [-0.3, -0.1] for pincushion
Records name each copy, e.g. "rot90", "elastic", "barrel_0.3_0.7" (centre x, y as
fractions of width and height).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Iterator, Sequence

import numpy as np

from tiled_vessel_seg.imaging import MASK_THRESHOLD

FLIPS_AND_ROTATIONS = ("hflip", "vflip", "rot90", "rot180", "rot270")
GRID_DISTORTIONS = {"grid_distortion_1": (5, 0.3), "grid_distortion_2": (10, 0.2)}
RADIAL_STRENGTH = {"barrel": (0.1, 0.3), "pincushion": (-0.3, -0.1)}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One augmented copy: `name` goes into the record; `kind` selects the map."""
    name: str
    kind: str
    center: tuple[float, float] | None = None


def variants(augmentations: Sequence[str],
             centers: Sequence[tuple[float, float]]) -> list[Variant]:
    """Expands configured augmentation names into copies (radial ones once per centre)."""
    out = []
    for kind in augmentations:
        if kind in RADIAL_STRENGTH:
            out.extend(Variant(f"{kind}_{cx:g}_{cy:g}", kind, (float(cx), float(cy)))
                       for cx, cy in centers)
        elif kind in FLIPS_AND_ROTATIONS or kind == "elastic" or kind in GRID_DISTORTIONS:
            out.append(Variant(kind, kind))
        else:
            raise ValueError(f"unknown augmentation {kind!r}")
    return out


def stable_seed(*parts: object) -> int:
    """A 64-bit seed from the parts' text (sha256; unlike hash() it is the same everywhere)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def rng_for(seed: int, image_id: str, tile_y: int, tile_x: int, name: str) -> np.random.Generator:
    return np.random.default_rng(stable_seed(seed, image_id, tile_y, tile_x, name))


_CV2_ROTATIONS = {"rot90": "ROTATE_90_COUNTERCLOCKWISE", "rot180": "ROTATE_180",
                  "rot270": "ROTATE_90_CLOCKWISE"}


def flip_or_rotate(array: np.ndarray, kind: str) -> np.ndarray:
    """Exact flips / counter-clockwise rotations of [H, W] or [H, W, C] uint8 arrays (cv2)."""
    import cv2
    if kind == "hflip":
        return cv2.flip(array, 1)
    if kind == "vflip":
        return cv2.flip(array, 0)
    return cv2.rotate(array, getattr(cv2, _CV2_ROTATIONS[kind]))


@functools.lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) float32 [H, W] pixel coordinates, cached per tile shape (read-only)."""
    ys, xs = np.indices((h, w), dtype=np.float32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def elastic_map(shape: tuple[int, int], rng: np.random.Generator, alpha: float,
                sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Elastic deformation sampling maps, float32 [H, W] each (cv2.remap map_x, map_y)."""
    import cv2
    h, w = shape
    fields = rng.uniform(-1.0, 1.0, size=(2, h, w)).astype(np.float32)
    dx = cv2.GaussianBlur(fields[0], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101) * alpha
    dy = cv2.GaussianBlur(fields[1], (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101) * alpha
    ys, xs = _pixel_grid(h, w)
    return xs + dx, ys + dy


def _grid_axis(length: int, cells: int, limit: float, rng: np.random.Generator) -> np.ndarray:
    """Source coordinate of each output coordinate along one axis, float32 [length]."""
    steps = 1.0 + rng.uniform(-limit, limit, size=cells)
    knots_src = np.concatenate([[0.0], np.cumsum(steps)])
    knots_src *= (length - 1) / knots_src[-1]
    knots_out = np.linspace(0.0, length - 1, cells + 1)
    return np.interp(np.arange(length), knots_out, knots_src).astype(np.float32)


def grid_map(shape: tuple[int, int], rng: np.random.Generator, cells: int,
             limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid distortion: each of `cells` rows/columns stretched by a factor in 1 +- limit."""
    h, w = shape
    fx = _grid_axis(w, cells, limit, rng)
    fy = _grid_axis(h, cells, limit, rng)
    return np.broadcast_to(fx[None, :], (h, w)).copy(), np.broadcast_to(fy[:, None], (h, w)).copy()


def radial_map(shape: tuple[int, int], center: tuple[float, float],
               k: float) -> tuple[np.ndarray, np.ndarray]:
    """Radial distortion about centre (x, y) in fractions of (W, H).

    An output pixel at normalised radius r samples the source at r (1 + k r^2); r is 1 at
    the corner farthest from the centre. k > 0: barrel, k < 0: pincushion.
    """
    h, w = shape
    cx, cy = center[0] * (w - 1), center[1] * (h - 1)
    ys, xs = _pixel_grid(h, w)
    dx, dy = xs - np.float32(cx), ys - np.float32(cy)
    rmax = max(np.hypot(cx, cy), np.hypot(w - 1 - cx, cy), np.hypot(cx, h - 1 - cy),
               np.hypot(w - 1 - cx, h - 1 - cy), 1.0)
    factor = 1.0 + k * (dx * dx + dy * dy) / np.float32(rmax * rmax)
    return cx + dx * factor, cy + dy * factor


def draw_map(variant: Variant, shape: tuple[int, int], rng: np.random.Generator,
             elastic_alpha: float, elastic_sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The sampling maps (map_x, map_y), float32 [H, W], of a non-exact augmentation."""
    if variant.kind == "elastic":
        return elastic_map(shape, rng, elastic_alpha, elastic_sigma)
    if variant.kind in GRID_DISTORTIONS:
        cells, limit = GRID_DISTORTIONS[variant.kind]
        return grid_map(shape, rng, cells, limit)
    if variant.kind in RADIAL_STRENGTH:
        lo, hi = RADIAL_STRENGTH[variant.kind]
        return radial_map(shape, variant.center, float(rng.uniform(lo, hi)))
    raise ValueError(f"no sampling map for augmentation {variant.kind!r}")


def remap_pair(image: np.ndarray, mask: np.ndarray, map_x: np.ndarray,
               map_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warps image uint8 [H, W, 3] and mask [H, W] {0, 1} (or label planes [H, W, 2]) with
    the SAME bilinear map.

    The float maps are converted once to OpenCV's fixed-point form and that one map
    warps both arrays, so image and mask sample identical positions and weights.
    Returns image uint8 [H, W, 3] and mask uint8 [H, W] {0, 1} (re-thresholded at half),
    [H, W, 2] for label planes.
    """
    import cv2
    fixed_xy, fixed_frac = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    warped_image = cv2.remap(np.ascontiguousarray(image), fixed_xy, fixed_frac,
                             interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask255 = np.ascontiguousarray(mask, dtype=np.uint8) * np.uint8(255)
    warped_mask = cv2.remap(mask255, fixed_xy, fixed_frac, interpolation=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REFLECT_101)
    return warped_image, (warped_mask > MASK_THRESHOLD).astype(np.uint8)


def augment(image: np.ndarray, mask: np.ndarray, variant: Variant, rng: np.random.Generator,
            elastic_alpha: float = 1300.0,
            elastic_sigma: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """One augmented copy of (image uint8 [H, W, 3], mask uint8 [H, W] {0, 1} or label
    planes [H, W, 2])."""
    if variant.kind in FLIPS_AND_ROTATIONS:
        return (flip_or_rotate(np.ascontiguousarray(image), variant.kind),
                flip_or_rotate(np.ascontiguousarray(mask), variant.kind))
    map_x, map_y = draw_map(variant, mask.shape[:2], rng, elastic_alpha, elastic_sigma)
    return remap_pair(image, mask, map_x, map_y)


def augmented_copies(image: np.ndarray, mask: np.ndarray, chosen: Sequence[Variant], seed: int,
                     image_id: str, tile_y: int, tile_x: int, elastic_alpha: float = 1300.0,
                     elastic_sigma: float = 8.0) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yields (name, image, mask) for each variant, deterministically for the tile's key."""
    for variant in chosen:
        rng = rng_for(seed, image_id, tile_y, tile_x, variant.name)
        aug_image, aug_mask = augment(image, mask, variant, rng, elastic_alpha, elastic_sigma)
        yield variant.name, aug_image, aug_mask

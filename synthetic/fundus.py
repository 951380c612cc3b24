"""Synthetic STARE-like fundus photographs with exact vessel masks.

Pure numpy/cv2 image math, no I/O. One image is fully determined by its seed and size:

    image, mask = generate_fundus(seed=3)          # 605x700, like STARE
    image, mask = generate_fundus(3, 140, 160)     # tiny, for tests

The picture is built in layers: an orange-red background with uneven illumination,
a bright optic disc and a darker macula, 2-4 branching vessel trees growing out of
the disc (widths taper from ~8 px to 1 px at 700x605; all geometry scales with the
image size), sensor noise, and a dark surround outside a circular field of view (FOV)
that is clipped at the top and bottom as in STARE. The mask holds exactly the drawn
vessel pixels inside the FOV; the photograph darkens those pixels (more in green than
in red, as real vessels do) with a slight blur so edges look photographic.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from tiled_vessel_seg.configs import schema

# Size of a STARE photograph; geometry constants below are in pixels at this size.
STARE_HEIGHT = 605
STARE_WIDTH = 700
MIN_SIZE = 32
# Peak memory of generate_fundus per pixel (tracemalloc: 98-99 bytes at 400x300 to
# 1600x1200: float32 planes and the noise), with a margin for encoding and gzip.
PEAK_BYTES_PER_PIXEL = 120


def check_size_fits(width: int, height: int, what: str) -> None:
    """Raises configs.schema.TooLargeError, before anything is allocated, when one image
    of width x height would not fit in the available memory (100000x100000 was a
    MemoryError traceback)."""
    schema.check_memory(float(width) * height * PEAK_BYTES_PER_PIXEL, what)

_BACKGROUND_RGB = np.array([200.0, 100.0, 18.0])
_DISC_RGB = np.array([255.0, 235.0, 150.0])
_SURROUND_RGB = np.array([5.0, 4.0, 10.0])
# Fraction of the background light removed by a fully opaque vessel, per channel:
# vessels are dark red, so green loses most and red least.
_VESSEL_ABSORPTION_RGB = np.array([0.34, 0.62, 0.45])
_NOISE_SIGMA = 4.0  # grey levels


@dataclasses.dataclass(frozen=True)
class _Geometry:
    """Where things are in one image (pixels, x to the right, y down)."""

    scale: float  # min(H, W) relative to STARE's 605 rows
    fov_center: tuple[float, float]
    fov_radius: float
    disc_center: tuple[float, float]
    disc_radius: float
    macula_center: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class _Segment:
    """One straight piece of a vessel, drawn as a round-capped line `width` px thick."""

    start: tuple[float, float]
    end: tuple[float, float]
    width: float


def _draw_geometry(rng: np.random.Generator, height: int, width: int) -> _Geometry:
    scale = min(height, width) / STARE_HEIGHT
    cx = width / 2 + rng.uniform(-0.02, 0.02) * width
    cy = height / 2 + rng.uniform(-0.02, 0.02) * height
    # STARE's FOV is a circle a little taller than the frame: clipped top and bottom.
    radius = min(0.47 * width, 0.55 * height) * rng.uniform(0.97, 1.02)
    side = rng.choice([-1.0, 1.0])  # optic disc on the left or on the right
    disc = (cx + side * radius * rng.uniform(0.55, 0.68),
            cy + radius * rng.uniform(-0.12, 0.12))
    macula = (cx - side * radius * rng.uniform(0.0, 0.12),
              cy + radius * rng.uniform(-0.06, 0.06))
    disc_radius = 42.0 * scale * rng.uniform(0.85, 1.15)
    return _Geometry(scale=scale, fov_center=(cx, cy), fov_radius=radius,
                     disc_center=disc, disc_radius=disc_radius, macula_center=macula)


def _smooth_noise(rng: np.random.Generator, height: int, width: int,
                  cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], float32 [H, W]: a coarse random grid, upsampled."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _distance_map(height: int, width: int, center: tuple[float, float]) -> np.ndarray:
    """Euclidean distance of every pixel to `center`, float32 [H, W]."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.hypot(xs - np.float32(center[0]), ys - np.float32(center[1]))


def _background(rng: np.random.Generator, geo: _Geometry, height: int,
                width: int) -> np.ndarray:
    """Vessel-free fundus: illumination, texture, macula, disc. float32 [H, W, 3], 0..255."""
    fov_distance = _distance_map(height, width, geo.fov_center) / geo.fov_radius
    # Uneven illumination: a tilted plane, broad blotches, vignetting towards the rim.
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    plane = ((xs - geo.fov_center[0]) * np.cos(angle)
             + (ys - geo.fov_center[1]) * np.sin(angle)) / geo.fov_radius
    illumination = (1.0 + 0.13 * plane + 0.07 * _smooth_noise(rng, height, width, 5)
                    - 0.30 * np.clip(fov_distance, 0, 1) ** 3)
    tint = (_BACKGROUND_RGB * rng.uniform(0.9, 1.1, size=3)).astype(np.float32)
    rgb = illumination[..., None] * tint
    # Choroidal texture: finer blotches, mostly in red.
    texture = _smooth_noise(rng, height, width, max(8, int(45 * geo.scale)))
    rgb += texture[..., None] * np.float32([9.0, 4.0, 1.0])

    macula = _distance_map(height, width, geo.macula_center) / (2.2 * geo.disc_radius)
    rgb *= (1.0 - 0.22 * np.exp(-macula ** 2))[..., None]

    disc = _distance_map(height, width, geo.disc_center) / geo.disc_radius
    disc_weight = np.clip(0.9 * np.exp(-disc ** 4) + 0.25 * np.exp(-(disc / 1.8) ** 2), 0, 1)
    disc_weight = disc_weight[..., None]
    rgb = rgb * (1.0 - disc_weight) + _DISC_RGB.astype(np.float32) * disc_weight
    return rgb


def _grow_vessel(rng: np.random.Generator, geo: _Geometry, start: np.ndarray,
                 angle: float, width: float, curvature: float,
                 segments: list[_Segment], depth: int = 0) -> None:
    """Appends the segments of one vessel and, recursively, of its branches.

    A vessel is a random walk whose heading drifts by `curvature` (rad per step) and
    whose width shrinks slowly along its length. It ends by leaving the FOV, or splits
    into two daughters (Murray-like widths) until the daughters would be under ~1 px.
    """
    step = max(1.5, 5.0 * geo.scale)
    min_width = 0.7 * min(1.0, geo.scale) ** 0.5
    relative_width = min(1.0, width / (8.0 * geo.scale))
    length = rng.uniform(0.35, 0.55) * geo.fov_radius * (0.45 + 0.55 * relative_width)
    n_steps = max(3, int(length / step))
    position = np.asarray(start, dtype=np.float64)
    center = np.asarray(geo.fov_center)
    for i in range(n_steps):
        angle += curvature + rng.normal(0.0, 0.09)
        new = position + step * np.array([np.cos(angle), np.sin(angle)])
        w = max(min_width, width * (1.0 - 0.2 * i / n_steps))
        segments.append(_Segment(tuple(position), tuple(new), w))
        position = new
        if np.hypot(*(position - center)) > geo.fov_radius * 1.02:
            return
        # Thin side branches leave at a steep angle now and then.
        if depth < 6 and w > 2.0 * min_width and rng.random() < 0.08:
            side = rng.choice([-1.0, 1.0])
            _grow_vessel(rng, geo, position, angle + side * rng.uniform(0.7, 1.3),
                         max(min_width, w * rng.uniform(0.35, 0.55)), side * 0.004,
                         segments, depth + 2)
    end_width = width * 0.8
    if end_width < min_width or depth >= 7:
        return
    # Bifurcation: a larger daughter continuing nearly straight and a smaller one
    # diverging more, on opposite sides.
    share = rng.uniform(0.55, 0.8)
    sign = rng.choice([-1.0, 1.0])
    daughters = ((share ** 0.33, sign * rng.uniform(0.15, 0.4)),
                 ((1.0 - share) ** 0.33, -sign * rng.uniform(0.4, 0.8)))
    for width_factor, turn in daughters:
        _grow_vessel(rng, geo, position, angle + turn,
                     max(min_width, end_width * width_factor),
                     curvature * rng.uniform(0.3, 1.0), segments, depth + 1)


def _vessel_trees(rng: np.random.Generator, geo: _Geometry) -> list[_Segment]:
    """2-4 trees from the optic disc: two arcades bending towards the macula, 0-2 nasal."""
    toward_macula = np.arctan2(geo.macula_center[1] - geo.disc_center[1],
                               geo.macula_center[0] - geo.disc_center[0])
    root_width = 8.0 * geo.scale
    roots = []  # (heading, width, curvature per step)
    for side in (-1.0, 1.0):  # superior and inferior arcades
        roots.append((toward_macula + side * rng.uniform(0.8, 1.2),
                      root_width * rng.uniform(0.9, 1.05),
                      -side * rng.uniform(0.005, 0.012)))
    for _ in range(rng.integers(0, 3)):  # nasal trees
        roots.append((toward_macula + np.pi + rng.uniform(-0.9, 0.9),
                      root_width * rng.uniform(0.55, 0.8), rng.uniform(-0.01, 0.01)))
    segments: list[_Segment] = []
    disc = np.asarray(geo.disc_center)
    for heading, width, curvature in roots:
        start = disc + rng.uniform(-0.1, 0.1, size=2) * geo.disc_radius
        _grow_vessel(rng, geo, start, heading, width, curvature, segments)
    return segments


def _rasterize(segments: list[_Segment], height: int,
               width: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws the vessel segments.

    Returns:
      drawn: bool [H, W], True on every pixel any segment covers.
      opacity: float32 [H, W] in 0..1; thinner vessels are more transparent (less blood
        along the line of sight). Where vessels overlap the widest one wins.
    """
    drawn = np.zeros((height, width), np.uint8)
    opacity = np.zeros((height, width), np.float32)
    # Thinnest first: cv2.line overwrites, and opacity grows with width, so drawing in
    # ascending width leaves each pixel with the opacity of its widest vessel.
    for seg in sorted(segments, key=lambda s: s.width):
        thickness = max(1, int(round(seg.width)))
        p0 = (int(round(seg.start[0])), int(round(seg.start[1])))
        p1 = (int(round(seg.end[0])), int(round(seg.end[1])))
        cv2.line(drawn, p0, p1, 255, thickness, cv2.LINE_8)
        cv2.line(opacity, p0, p1, float(min(1.0, 0.66 + 0.06 * seg.width)), thickness,
                 cv2.LINE_8)
    return drawn > 0, opacity


def generate_fundus(seed: int, height: int = STARE_HEIGHT,
                    width: int = STARE_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Generates one synthetic fundus photograph and its exact vessel mask.

    Args:
      seed: a non-negative int; the same seed and size give identical arrays.
      height: image rows (STARE: 605), at least 32.
      width: image columns (STARE: 700), at least 32.

    Returns:
      image: uint8 [height, width, 3], RGB.
      mask: uint8 [height, width], 255 on vessel pixels inside the FOV, else 0.
    """
    if height < MIN_SIZE or width < MIN_SIZE:
        raise ValueError(f"image size {width}x{height} (WxH) is too small; "
                         f"need at least {MIN_SIZE}x{MIN_SIZE}")
    rng = np.random.default_rng(seed)
    geo = _draw_geometry(rng, height, width)
    background = _background(rng, geo, height, width)
    drawn, opacity = _rasterize(_vessel_trees(rng, geo), height, width)
    fov = _distance_map(height, width, geo.fov_center) <= geo.fov_radius

    # Photographic edges: soften the absorption a little (the mask stays exact).
    opacity = cv2.GaussianBlur(opacity, (0, 0), max(0.5, 0.7 * geo.scale))
    absorption = (_VESSEL_ABSORPTION_RGB * rng.uniform(0.9, 1.1)).astype(np.float32)
    rgb = background * (1.0 - opacity[..., None] * absorption)
    rgb += rng.normal(0.0, _NOISE_SIGMA, size=rgb.shape).astype(np.float32)

    # Dark surround behind a slightly soft FOV rim.
    rim = cv2.GaussianBlur(fov.astype(np.float32), (0, 0), max(0.7, 1.5 * geo.scale))[..., None]
    surround = _SURROUND_RGB + rng.normal(0.0, 1.5, size=rgb.shape)
    rgb = rgb * rim + surround.astype(np.float32) * (1.0 - rim)

    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    mask = np.where(drawn & fov, 255, 0).astype(np.uint8)
    return image, mask

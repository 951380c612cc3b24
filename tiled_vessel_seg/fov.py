"""Automatic field-of-view (FOV) mask of a fundus photograph (ground floor: the Beam job
writes it into records, inference and the reports score inside it).

STARE ships no FOV masks. The FOV is the bright disc of the retina; outside it the
photo is near black. Definition (numpy / OpenCV, on the photo at output resolution):
  1. red channel > 0.15 x its 99th percentile, at least 10 (the red channel is the
     brightest inside the retina and ~0-30 in the border);
  2. morphological opening then closing with a disc of diameter ~1 % of the shorter
     image side (removes noise specks and closes dark vessels / lesions on the rim);
  3. keep the largest connected component and fill its holes.
Images whose shorter side exceeds 1024 px are area-downscaled to ~640 px for steps 1-3
and the mask is scaled back (nearest): the disc is smooth, and it is 50x faster.

The FOV's diameter in pixels (fov_circle, fov_diameter) sets the vessels' scale: the
Beam job resamples photos to one diameter ([preprocess] fov_diameter) and inference
resamples a photo to the model's (`--input_scale auto`).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

RELATIVE_THRESHOLD = 0.15
MIN_THRESHOLD = 10


WORK_SIDE = 640
# fov_circle_of_image: the circle is fitted on a copy of this shorter side
CIRCLE_WORK_SIDE = 400
CIRCLE_REDUCE_ABOVE = 500


def fov_mask(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> bool [H, W], True inside the field of view."""
    red = np.ascontiguousarray(image[..., 0])
    height, width = red.shape
    if min(height, width) > 1024:
        f = WORK_SIDE / min(height, width)
        small = cv2.resize(red, (max(1, round(width * f)), max(1, round(height * f))),
                           interpolation=cv2.INTER_AREA)
        small_mask = _fov_of_red(small).astype(np.uint8)
        return cv2.resize(small_mask, (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return _fov_of_red(red)


def _fov_of_red(red: np.ndarray) -> np.ndarray:
    threshold = max(MIN_THRESHOLD, RELATIVE_THRESHOLD * float(np.percentile(red, 99)))
    mask = (red > threshold).astype(np.uint8)
    side = min(red.shape)
    k = max(3, int(round(side * 0.01)) | 1)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:  # nothing bright: treat the whole image as the field of view
        return np.ones(red.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = (labels == largest).astype(np.uint8)
    # Fill holes: flood the background from a 1-px frame; what it cannot reach is inside.
    framed = np.pad(1 - mask, 1, constant_values=1)
    flood = np.zeros((framed.shape[0] + 2, framed.shape[1] + 2), np.uint8)
    cv2.floodFill(framed, flood, (0, 0), 2)
    return (framed[1:-1, 1:-1] != 2)


# --------------------------------------------------------------------------- diameter
# A FOV is "found" only when its fitted circle is backed by an arc of at least
# MIN_ARC_DEGREES of boundary points off the frame, the points lie on it (median distance
# within MAX_MEDIAN_RESIDUAL of the radius) and the disc, cut to the frame, is the mask
# (IoU >= MIN_IOU). A crop filled by retina has no such arc.
MIN_ARC_DEGREES = 120.0
MAX_MEDIAN_RESIDUAL = 0.01
MIN_IOU = 0.9
MIN_DIAMETER_PX = 16.0
RANSAC_TRIALS = 256
REFINED_CANDIDATES = 8
SCORED_POINTS = 512
# Boundary points within max(TOLERANCE_PX, TOLERANCE_FRACTION x the shorter side) of the
# circle are on it: the computed mask's rim is ragged by a few px where the retina is dark.
TOLERANCE_PX = 1.5
TOLERANCE_FRACTION = 0.005


@dataclasses.dataclass(frozen=True)
class FovCircle:
    """The circle of a field of view, in pixels of the image it was measured on.

    center: (x, y), pixel centres at integers (may lie outside the frame); diameter: px.
    arc_degrees: angle around the centre covered by the boundary points it was fitted to.
    residual: median |distance - radius| of those points, px.
    """
    center: tuple[float, float]
    diameter: float
    arc_degrees: float
    residual: float


def _boundary_points(mask: np.ndarray, axis: int) -> np.ndarray:
    """float64 [n, 2] (x, y) edge points of the mask's first and last pixel along each
    row (axis 1) or column (axis 0), half a pixel outside it (the pixel's edge); points
    on the frame's edge are left out (the frame cut the FOV there, not the FOV's rim)."""
    m = mask if axis == 1 else mask.T
    lines = np.flatnonzero(m.any(axis=1))
    if lines.size == 0:
        return np.zeros((0, 2))
    n = m.shape[1]
    first = np.argmax(m[lines], axis=1)
    last = n - 1 - np.argmax(m[lines, ::-1], axis=1)
    keep_first, keep_last = first > 0, last < n - 1
    along = np.concatenate([first[keep_first] - 0.5, last[keep_last] + 0.5])
    across = np.concatenate([lines[keep_first], lines[keep_last]]).astype(np.float64)
    points = np.stack([along, across], axis=1)
    return points if axis == 1 else points[:, ::-1]


def _least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """argmin |a x - b| for a [n, 3] of full rank, by the normal equations (a 3x3 solve:
    5x cheaper than lstsq's SVD; float64 keeps 1e-9 px at these sizes), lstsq when
    the points are degenerate."""
    try:
        return np.linalg.solve(a.T @ a, a.T @ b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(a, b, rcond=None)[0]


def _fit_circle(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares circle through [n, 2] points: Kasa's algebraic fit, refined by
    Gauss-Newton steps on the geometric distances. Returns (centre [2], radius)."""
    x, y = points[:, 0], points[:, 1]
    a = np.stack([x, y, np.ones_like(x)], axis=1)
    sol = _least_squares(a, x * x + y * y)
    center = sol[:2] / 2.0
    radius = float(np.sqrt(max(sol[2] + center @ center, 1e-12)))
    for _ in range(5):
        d = points - center
        dist = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
        jac = np.concatenate([-d / dist[:, None], -np.ones((len(points), 1))], axis=1)
        step = _least_squares(jac, -(dist - radius))
        center, radius = center + step[:2], radius + float(step[2])
        if np.abs(step).max() < 1e-3:
            break
    return center, abs(radius)


def _circles_through(a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Circles through point triples [k, 2] each: (centres [k, 2], radii [k]); collinear
    triples get radius inf."""
    ax, ay, bx, by, cx, cy = a[:, 0], a[:, 1], b[:, 0], b[:, 1], c[:, 0], c[:, 1]
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    ok = np.abs(d) > 1e-9
    d = np.where(ok, d, 1.0)
    a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
    ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
    uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    centres = np.stack([ux, uy], axis=1)
    radii = np.where(ok, np.hypot(ax - ux, ay - uy), np.inf)
    return centres, radii


def _robust_fit(points: np.ndarray, tolerance: float, max_radius: float,
                trials: int = RANSAC_TRIALS) -> tuple[np.ndarray, float, np.ndarray] | None:
    """RANSAC circle: of `trials` circles through 3 random points, one from each third of
    the turn around the points' mean (seeded: the same answer every run), the
    REFINED_CANDIDATES with the most points within `tolerance` px are each refitted by
    least squares (_fit_circle) to those points, three times, and the one with the most
    points on it after that wins. (With 3 points drawn anywhere and only the best raw
    candidate refitted, STARE's im0044 turned by 180 degrees got a 767 px circle through
    its chords instead of its 700 px one: close triples give poorly conditioned circles
    that count fewer points than a chord circle.) Outliers (a notch, straight chords, a
    dark stretch of rim the FOV mask cut inwards) do not pull it, as long as most of the
    boundary lies on the circle. Returns (centre, radius, inlier points) or None."""
    if len(points) < 8:
        return None
    rng = np.random.default_rng(0)
    # One point from each third of the turn around the points' mean: spread triples
    # give well-conditioned circles, so the true one is among the best candidates even
    # where chords and the frame supply many of the points.
    center0 = points.mean(axis=0)
    order = np.argsort(np.arctan2(points[:, 1] - center0[1], points[:, 0] - center0[0]))
    start = rng.random(trials)[:, None] + np.array([0.0, 1.0, 2.0]) / 3.0
    offsets = (start + rng.random((trials, 3)) / 3.0) % 1.0
    index = order[np.minimum((offsets * len(points)).astype(np.int64), len(points) - 1)]
    centres, radii = _circles_through(points[index[:, 0]], points[index[:, 1]],
                                      points[index[:, 2]])
    good = (radii >= MIN_DIAMETER_PX / 2) & (radii <= max_radius)
    if not good.any():
        return None
    centres, radii = centres[good], radii[good]
    # [candidates, points] distances, in chunks to bound memory, on at most
    # SCORED_POINTS evenly spaced points: ranking the raw candidates needs no more, and
    # the refits below use every point.
    scored = points[::-(-len(points) // SCORED_POINTS)]
    counts = np.concatenate([
        (np.abs(np.hypot(scored[None, :, 0] - centres[i:i + 64, None, 0],
                         scored[None, :, 1] - centres[i:i + 64, None, 1])
                - radii[i:i + 64, None]) <= tolerance).sum(axis=1)
        for i in range(0, len(radii), 64)])
    def on_circle(center, radius):
        return points[np.abs(np.hypot(*(points - center).T) - radius) <= tolerance]

    # Each of the best candidates refitted to its inliers three times; the one with the
    # most points on its circle wins.
    best, refitted = None, []
    for k in np.argsort(-counts, kind="stable")[:REFINED_CANDIDATES]:
        center, radius = centres[k], float(radii[k])
        if any(np.hypot(*(center - c)) + abs(radius - r) <= tolerance for c, r in refitted):
            continue  # the circle of a candidate refitted already
        for _ in range(3):
            inliers = on_circle(center, radius)
            if len(inliers) < 8:
                break
            center, radius = _fit_circle(inliers)
        else:
            inliers = on_circle(center, radius)
            refitted.append((center, radius))
            if best is None or len(inliers) > len(best[2]):
                best = (center, radius, inliers)
    return best


def _arc_degrees(points: np.ndarray, center: np.ndarray, bin_degrees: float = 5.0) -> float:
    angles = np.degrees(np.arctan2(points[:, 1] - center[1], points[:, 0] - center[0]))
    bins = np.unique(np.floor((angles + 180.0) / bin_degrees).astype(int))
    return float(len(bins) * bin_degrees)


def _disc_iou(mask: np.ndarray, center: np.ndarray, radius: float) -> float:
    """IoU of the mask and the fitted disc cut to the frame (pixel centres inside)."""
    h, w = mask.shape
    yy, xx = np.ogrid[:h, :w]
    disc = (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius * radius
    union = np.count_nonzero(disc | mask)
    return np.count_nonzero(disc & mask) / union if union else 0.0


def fov_circle(mask: np.ndarray, tolerance: float | None = None) -> FovCircle | None:
    """The circle of a field-of-view mask (bool [H, W]), or None when no FOV is visible.

    Method: the boundary points are the first and last FOV pixel of every row and of
    every column (their outer edges), leaving out those on the frame's edge; a RANSAC
    circle fit (_robust_fit) takes the circle most of them lie on (within `tolerance` px,
    default max(TOLERANCE_PX, TOLERANCE_FRACTION x the shorter side))
    and refits it by least squares. Why: a fundus FOV is a disc that cameras clip by
    straight chords (STARE's aperture cuts it at the top and bottom, inside the frame) or
    by the frame itself (STARE's im0044 on the right), and the computed mask can miss a
    dark stretch of rim (CHASE_DB1's Image_06L). The chords, the frame and the dark
    stretch each give points off the circle, which the fit ignores; the arcs between them
    give the circle. The widest row would be simpler, but it is short for a disc the
    frame cuts at the side (im0044: 688 of ~700 px) and for a rim cut inwards (06L: 910
    of ~919 px), and the mask's area is short wherever anything clips the disc.

    None ("no FOV found") when: no boundary point off the frame (a crop filled by retina,
    or a mask of the whole frame), fewer than 8 points, inliers covering an arc under
    MIN_ARC_DEGREES around the centre, a median residual above MAX_MEDIAN_RESIDUAL x the
    radius, a diameter under MIN_DIAMETER_PX, or a disc (cut to the frame) whose IoU with
    the mask is under MIN_IOU (the dark regions of a crop can make a boundary, not a disc).
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or not mask.any():
        return None
    if tolerance is None:
        tolerance = max(TOLERANCE_PX, TOLERANCE_FRACTION * min(mask.shape))
    points = np.concatenate([_boundary_points(mask, 1), _boundary_points(mask, 0)])
    fit = _robust_fit(points, tolerance, max_radius=2.0 * max(mask.shape))
    if fit is None:
        return None
    center, radius, inliers = fit
    residual = float(np.median(np.abs(np.hypot(*(inliers - center).T) - radius)))
    arc = _arc_degrees(inliers, center)
    if (arc < MIN_ARC_DEGREES or residual > MAX_MEDIAN_RESIDUAL * radius
            or 2 * radius < MIN_DIAMETER_PX or _disc_iou(mask, center, radius) < MIN_IOU):
        return None
    return FovCircle((float(center[0]), float(center[1])), float(2 * radius), arc, residual)


def fov_circle_of_image(image: np.ndarray) -> FovCircle | None:
    """uint8 RGB [H, W, 3] -> the circle of its field of view (fov_circle of its FOV
    mask), in the image's pixels; None when the photo shows no FOV.

    Photos whose shorter side exceeds CIRCLE_REDUCE_ABOVE px are measured on their
    CIRCLE_WORK_SIDE px area-reduced copy and the circle scaled back: the fit is
    sub-pixel, so the diameter moves by at most 0.3 % (STARE, CHASE_DB1 and STARE
    enlarged 5x, against full resolution), while the cost is ~10-12 ms of CPU for any
    size (full resolution: 15 ms for 700x605, 52-68 ms for CHASE_DB1's 999x960). Every photo of a
    folder run is measured, on the CPU the model needs.
    """
    red = np.ascontiguousarray(image[..., 0])
    height, width = red.shape
    if min(height, width) <= CIRCLE_REDUCE_ABOVE:
        return fov_circle(_fov_of_red(red))
    f = CIRCLE_WORK_SIDE / min(height, width)
    size = (max(1, round(width * f)), max(1, round(height * f)))
    circle = fov_circle(_fov_of_red(cv2.resize(red, size, interpolation=cv2.INTER_AREA)))
    if circle is None:
        return None
    fx, fy = width / size[0], height / size[1]
    return FovCircle(((circle.center[0] + 0.5) * fx - 0.5, (circle.center[1] + 0.5) * fy - 0.5),
                     circle.diameter * 0.5 * (fx + fy), circle.arc_degrees,
                     circle.residual * 0.5 * (fx + fy))


def fov_diameter(image: np.ndarray) -> float | None:
    """uint8 RGB [H, W, 3] -> the diameter in px of its field of view's circle, or None
    when the photo shows no FOV (fov_circle_of_image).

    Measured on the real photographs in ../shared/data (tests/ground_floor/test_fov.py checks
    these ranges; README "Field-of-view scale" has the command):
      STARE 700x605 (7 photos): 650-653 px, median 651; im0044 701 px (a larger FOV, cut
        by the frame's right edge). The widest row of the mask: 647-650 (im0044: 688).
      CHASE_DB1 999x960 (20 photos): 916-921 px, median 918.7; children 08L/08R 890-891.
      STARE enlarged 5x (3500x3025): 3251-3263 px, 5.00x the photos' own.
      Each of them flipped or transposed: the same within 0.2 %.
    So a CHASE_DB1 photo is resampled by about 651 / 918.5 = 0.71 to STARE's scale.
    """
    circle = fov_circle_of_image(image)
    return None if circle is None else circle.diameter

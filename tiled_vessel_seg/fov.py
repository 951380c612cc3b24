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
"""
from __future__ import annotations

import cv2
import numpy as np

RELATIVE_THRESHOLD = 0.15
MIN_THRESHOLD = 10


WORK_SIDE = 640


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

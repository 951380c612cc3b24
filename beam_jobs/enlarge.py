"""Stage 1: enlarge a photograph and its mask by an integer factor (tiled_vessel_seg.imaging)."""
from __future__ import annotations

import numpy as np

from tiled_vessel_seg.imaging import enlarge_image, enlarge_mask  # noqa: F401  (the stage's API)


def enlarge_pair(image: np.ndarray, mask: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Image uint8 [H, W, 3] and binary mask uint8 [H, W] enlarged by `scale` (same H, W)."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    return enlarge_image(image, scale), enlarge_mask(mask, scale)

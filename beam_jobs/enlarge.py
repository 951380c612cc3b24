"""Stage 1: enlarge a photograph and its mask by an integer factor (pure numpy/cv2)."""
from __future__ import annotations

import numpy as np


def enlarge_image(image: np.ndarray, scale: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [H*scale, W*scale, C], bicubic (cv2.INTER_CUBIC)."""
    import cv2
    if scale == 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def enlarge_mask(mask: np.ndarray, scale: int) -> np.ndarray:
    """Binary uint8 [H, W] {0, 1} -> binary uint8 [H*scale, W*scale] {0, 1}.

    Bilinear on 0/255, then thresholded at half, so edges stay smooth and values binary.
    """
    import cv2
    if scale == 1:
        return mask
    h, w = mask.shape[:2]
    grey = np.where(mask > 0, 255, 0).astype(np.uint8)
    big = cv2.resize(grey, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
    return (big > 127).astype(np.uint8)


def enlarge_pair(image: np.ndarray, mask: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """Both of the above; image [H, W, 3] and mask [H, W] must have the same H, W."""
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape[:2]} differ in size")
    return enlarge_image(image, scale), enlarge_mask(mask, scale)

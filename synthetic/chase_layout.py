"""Synthetic fundus photographs written under CHASE_DB1's own file names (tests, demos).

CHASE_DB1 is one flat folder: per child NN and eye L/R, Image_NNL.jpg (the photograph),
Image_NNL_1stHO.png (first observer's vessels) and Image_NNL_2ndHO.png (second
observer's). Here the first observer's map is the generator's exact mask and the second
observer's is that mask shifted one pixel to the right, so the two disagree on every
vessel edge, as two annotators do.
"""
from __future__ import annotations

import cv2
import numpy as np

from tiled_vessel_seg import storage
from tiled_vessel_seg.synthetic import fundus


def chase_id(child: int, eye: str) -> str:
    """chase_id(1, "L") -> "Image_01L"."""
    return f"Image_{child:02d}{eye}"


def second_observer(mask: np.ndarray) -> np.ndarray:
    """The synthetic second observer's map: `mask` shifted one pixel right (uint8 0/255)."""
    shifted = np.zeros_like(mask)
    shifted[:, 1:] = mask[:, :-1]
    return shifted


def write_synthetic_chase(output_dir: str, children: int, *, width: int = 120,
                          height: int = 110, seed: int = 0) -> list[str]:
    """Writes both eyes of `children` children (Image_01L ... ) into `output_dir`; the
    photo of child c, eye e comes from seed (seed, c, e). Returns the image ids."""
    storage.makedirs(output_dir)
    ids = []
    for child in range(1, children + 1):
        for index, eye in enumerate("LR"):
            image, mask = fundus.generate_fundus(seed * 1000 + child * 2 + index, height, width)
            image_id = chase_id(child, eye)
            base = storage.join(output_dir, image_id)
            # JPEG for the photo as the dataset ships it; masks are lossless PNG.
            ok_image, jpg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            ok_first, first = cv2.imencode(".png", mask)
            ok_second, second = cv2.imencode(".png", second_observer(mask))
            if not (ok_image and ok_first and ok_second):
                raise ValueError(f"cannot encode {image_id}")
            for path, data in ((base + ".jpg", jpg), (base + "_1stHO.png", first),
                               (base + "_2ndHO.png", second)):
                storage.write_bytes_atomic(path, data.tobytes())
            ids.append(image_id)
    return ids

"""Writes images and vessel masks in STARE's own file layout.

    OUT/stare-images/imNNNN.ppm.gz      photograph, binary PPM (P6), gzipped
    OUT/labels-ah/imNNNN.ah.ppm.gz      vessel map, P6 PPM with values 0/255, gzipped

Files are byte-for-byte deterministic (gzip header mtime 0, no file name) and written
atomically (temporary name, then rename), locally or on gs:// (tiled_vessel_seg.storage).
"""
from __future__ import annotations

import gzip
from typing import Callable, Iterable

import numpy as np

from tiled_vessel_seg import storage
from tiled_vessel_seg.synthetic import fundus

IMAGES_DIR = "stare-images"
LABELS_DIR = "labels-ah"


def stare_id(number: int) -> str:
    """STARE image id of a 1-based number: 1 -> 'im0001'."""
    if number < 1:
        raise ValueError(f"STARE image numbers start at 1, got {number}")
    return f"im{number:04d}"


def image_path(output_dir: str, image_id: str) -> str:
    return _join(output_dir, IMAGES_DIR, f"{image_id}.ppm.gz")


def label_path(output_dir: str, image_id: str) -> str:
    return _join(output_dir, LABELS_DIR, f"{image_id}.ah.ppm.gz")


def encode_ppm(array: np.ndarray) -> bytes:
    """Binary P6 PPM of a uint8 RGB [H, W, 3] or grey [H, W] array (grey -> 3 equal channels)."""
    if array.dtype != np.uint8:
        raise ValueError(f"PPM needs uint8 pixels, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"PPM needs [H, W, 3] or [H, W], got shape {array.shape}")
    height, width = array.shape[:2]
    return b"P6\n%d %d\n255\n" % (width, height) + np.ascontiguousarray(array).tobytes()


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip: mtime 0 and no file name in the header."""
    return gzip.compress(data, compresslevel=6, mtime=0)


_join = storage.join


def write_file_atomically(path: str, data: bytes) -> None:
    """Writes `data` to a temporary sibling of `path`, then renames it into place."""
    storage.write_bytes_atomic(path, data)


def write_pair(output_dir: str, image_id: str, image: np.ndarray,
               mask: np.ndarray) -> tuple[str, str]:
    """Writes one photograph (uint8 RGB [H, W, 3]) and its mask (uint8 [H, W], 0/255).

    Returns the (image path, label path) written.
    """
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(f"{image_id}: image {image.shape} and mask {mask.shape} differ in size")
    paths = image_path(output_dir, image_id), label_path(output_dir, image_id)
    for path, array in zip(paths, (image, mask)):
        write_file_atomically(path, gzip_bytes(encode_ppm(array)))
    return paths


def image_seed(seed: int, number: int) -> int:
    """Seed of image `number` in a dataset made with `seed`, independent of --first_id."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def planned_paths(output_dir: str, numbers: Iterable[int]) -> list[str]:
    return [p for n in numbers
            for p in (image_path(output_dir, stare_id(n)), label_path(output_dir, stare_id(n)))]


def write_synthetic_stare(output_dir: str, num_images: int, *, width: int = fundus.STARE_WIDTH,
                          height: int = fundus.STARE_HEIGHT, seed: int = 0, first_id: int = 1,
                          overwrite: bool = False,
                          on_written: Callable[[str, str], None] | None = None) -> list[str]:
    """Generates `num_images` synthetic fundus images into `output_dir` in STARE layout.

    Image number n (ids im{first_id:04d}...) is generated from `image_seed(seed, n)`, so
    the same seed gives the same im0007 whichever `first_id` a run starts at.

    Args:
      output_dir: local folder or URL; created if missing.
      num_images: how many images, >= 1.
      width, height: image size in pixels.
      seed: dataset seed.
      first_id: number of the first image id.
      overwrite: replace existing files; otherwise FileExistsError if any target exists
        (checked before anything is written).
      on_written: called with (image path, label path) after each image.

    Returns:
      All paths written, image and label alternating.
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    fundus.check_size_fits(width, height, f"a {width}x{height} synthetic image")
    numbers = range(first_id, first_id + num_images)
    targets = planned_paths(output_dir, numbers)
    if not overwrite:
        existing = [p for p in targets if storage.exists(p)]
        if existing:
            raise FileExistsError(
                f"{len(existing)} file(s) already exist in {output_dir}, e.g. {existing[0]}; "
                "pass --overwrite to replace them")
    storage.makedirs(_join(output_dir, IMAGES_DIR))
    storage.makedirs(_join(output_dir, LABELS_DIR))
    written = []
    for number in numbers:
        image, mask = fundus.generate_fundus(image_seed(seed, number), height, width)
        paths = write_pair(output_dir, stare_id(number), image, mask)
        written.extend(paths)
        if on_written is not None:
            on_written(*paths)
    return written

"""Reading photos and masks from local or gs:// paths, decoded in TensorFlow.

Formats: PNG, JPEG, GIF (first frame), BMP via tf.io.decode_image; binary PPM / PGM
via tensorflow-io's decode_pnm; TIFF via tensorflow-io's decode_tiff; any of them
gzipped (.gz, tf.io.decode_compressed). The format is sniffed from the bytes, not the
name. tensorflow-io is imported only when a PNM / TIFF file is met, and never enters
the serving graph (see export.py).
"""
from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ppm", ".pgm", ".pnm",
                    ".tif", ".tiff")


class ImageDecodeError(ValueError):
    """A file that cannot be read as an image; the message names the file."""


def is_image_path(path: str) -> bool:
    """True if the name (optionally ending in .gz) has a known image extension."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(IMAGE_EXTENSIONS)


def image_stem(path: str) -> str:
    """'gs://b/x/im0001.ppm.gz' -> 'im0001'; 'im0001.ah.ppm.gz' -> 'im0001.ah'."""
    name = os.path.basename(path)
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[0]


def _decode_bytes(data: bytes) -> tf.Tensor:
    """Uncompressed image bytes -> uint8 [H, W, C] tensor, C in {1, 3, 4}."""
    if data[:2] in (b"P5", b"P6"):
        import tensorflow_io as tfio  # pylint: disable=import-outside-toplevel
        return tfio.experimental.image.decode_pnm(data, dtype=tf.uint8)
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        import tensorflow_io as tfio  # pylint: disable=import-outside-toplevel
        return tfio.experimental.image.decode_tiff(data)
    return tf.io.decode_image(data, expand_animations=False, dtype=tf.uint8)


def decode_image_bytes(data: bytes, channels: int = 3) -> np.ndarray:
    """Image file bytes (optionally gzipped) -> uint8 numpy [H, W, channels].

    channels 3: grey is repeated, alpha dropped. channels 1: RGB is averaged (a mask).
    """
    if data[:2] == b"\x1f\x8b":
        data = tf.io.decode_compressed(data, compression_type="GZIP").numpy()
    image = _decode_bytes(data)
    c = image.shape[-1]
    if channels == 3:
        image = tf.image.grayscale_to_rgb(image) if c == 1 else image[..., :3]
    elif channels == 1:
        image = image[..., :1] if c <= 2 else tf.cast(
            tf.round(tf.reduce_mean(tf.cast(image[..., :3], tf.float32), -1, keepdims=True)),
            tf.uint8)
    else:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return image.numpy()


def read_image(path: str, channels: int = 3) -> np.ndarray:
    """Reads and decodes `path` (local or gs://) -> uint8 [H, W, channels].

    Raises ImageDecodeError naming the file and the reason.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            data = f.read()
    except (tf.errors.OpError, OSError) as e:
        raise ImageDecodeError(f"{path}: cannot read: {getattr(e, 'message', e)}") from None
    if not data:
        raise ImageDecodeError(f"{path}: empty file")
    try:
        image = decode_image_bytes(data, channels)
    except (tf.errors.OpError, ValueError) as e:
        reason = getattr(e, "message", str(e)).strip().splitlines()[0]
        reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", reason)
        raise ImageDecodeError(f"{path}: not a readable image: {reason}") from None
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageDecodeError(f"{path}: decoded to an empty image of shape {image.shape}")
    return image


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Writes `data` to path.tmp then renames it over `path` (local or gs://)."""
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "wb") as f:
        f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def encode_png(image: np.ndarray) -> bytes:
    """uint8 or uint16 [H, W] or [H, W, C] -> PNG bytes."""
    if image.ndim == 2:
        image = image[..., None]
    return tf.io.encode_png(image).numpy()

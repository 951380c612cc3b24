"""How a tile's pixels are stored in a record: the image and mask encodings (numpy + OpenCV).

Image encodings (uint8 RGB [H, W, 3]):
  jpeg  baseline JPEG at `jpeg_quality` (4:2:0), ~25 KB per 512 tile at quality 95,
        decoded by tf.io.decode_jpeg; lossy (>= 45 dB PSNR on enlarged photographs).
  png   lossless, ~150 KB per 512 tile, but ~6 ms to encode and ~3.5 ms to decode.
  raw   the C-order bytes, 768 KB per 512 tile; nothing to decode.
Mask encodings (binary [H, W]; always lossless):
  png     8-bit grey PNG with values 0 / 255 (schema version 1's only form).
  packed  one bit per pixel, row-major, most significant bit first (`np.packbits`):
          ceil(H * W / 8) bytes, unpacked in the graph (a byte -> 8 bits lookup).

This module needs no TensorFlow, so a Beam worker can encode without importing it;
the in-graph decoders live in `schema.py`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tiled_vessel_seg.configs import schema
from tiled_vessel_seg.imaging import MASK_THRESHOLD

IMAGE_ENCODINGS = schema.IMAGE_ENCODINGS  # ("jpeg", "png", "raw")
MASK_ENCODINGS = schema.MASK_ENCODINGS  # ("packed", "png")
DEFAULT_JPEG_QUALITY = 95


@dataclasses.dataclass(frozen=True)
class TileEncoding:
    """The encodings of one dataset's records (written to dataset_info.json).

    image: one of IMAGE_ENCODINGS; mask: one of MASK_ENCODINGS; jpeg_quality: 1..100,
    used when image == "jpeg" (recorded either way).
    """
    image: str = "jpeg"
    mask: str = "packed"
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self):  # the limits are the config schema's
        schema.check_choice(self.image, IMAGE_ENCODINGS, "image encoding")
        schema.check_choice(self.mask, MASK_ENCODINGS, "mask encoding")
        schema.check_jpeg_quality(self.jpeg_quality)


# Schema version 1 stored PNG images and PNG masks only.
VERSION_1_ENCODING = TileEncoding(image="png", mask="png")


def _imencode(ext: str, array: np.ndarray, params: tuple[int, ...] = ()) -> bytes:
    import cv2  # pylint: disable=import-outside-toplevel  (the reader side never needs OpenCV)
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(array), list(params))
    if not ok:
        raise ValueError(f"{ext[1:].upper()} encoding failed for an array of shape {array.shape}")
    return buf.tobytes()


def _bgr(image: np.ndarray) -> np.ndarray:
    import cv2  # pylint: disable=import-outside-toplevel
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # OpenCV codecs take BGR; faster than [..., ::-1]


def encode_image(image: np.ndarray, encoding: TileEncoding) -> bytes:
    """uint8 RGB [H, W, 3] -> bytes in `encoding.image`."""
    if encoding.image == "raw":
        return np.ascontiguousarray(image).tobytes()
    if encoding.image == "jpeg":
        import cv2  # pylint: disable=import-outside-toplevel
        return _imencode(".jpg", _bgr(image), (cv2.IMWRITE_JPEG_QUALITY, int(encoding.jpeg_quality)))
    # OpenCV's default PNG settings are its fastest here (explicit levels are slower).
    return _imencode(".png", _bgr(image))


def encode_mask(mask: np.ndarray, encoding: TileEncoding) -> bytes:
    """Binary mask [H, W] (any dtype; non-zero is vessel) -> bytes in `encoding.mask`."""
    vessel = np.asarray(mask) > 0
    if encoding.mask == "packed":
        return np.packbits(vessel, axis=None).tobytes()
    return _imencode(".png", vessel.astype(np.uint8) * np.uint8(255))


def decode_image(data: bytes, encoding: TileEncoding, height: int, width: int) -> np.ndarray:
    """The numpy inverse of `encode_image` (for tools and tests): uint8 RGB [H, W, 3].

    JPEG is decoded by OpenCV here (libjpeg's accurate integer IDCT): bit for bit what the
    training graph's tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE") gives.
    """
    if encoding.image == "raw":
        return np.frombuffer(data, np.uint8).reshape(height, width, 3).copy()
    import cv2  # pylint: disable=import-outside-toplevel
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (height, width):
        raise ValueError(f"undecodable {encoding.image} image of {height}x{width} (HxW)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_mask(data: bytes, encoding: TileEncoding, height: int, width: int) -> np.ndarray:
    """The numpy inverse of `encode_mask`: uint8 [H, W] in {0, 1}."""
    if encoding.mask == "packed":
        bits = np.unpackbits(np.frombuffer(data, np.uint8), count=height * width)
        return bits.reshape(height, width)
    import cv2  # pylint: disable=import-outside-toplevel
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None or grey.shape != (height, width):
        raise ValueError(f"undecodable PNG mask of {height}x{width} (HxW)")
    return (grey > MASK_THRESHOLD).astype(np.uint8)

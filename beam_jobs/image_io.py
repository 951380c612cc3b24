"""Reads photographs and vessel masks from bytes or paths (local or gs://) into numpy.

Formats: ppm/pgm (also .gz), png, jpg/jpeg, tif/tiff, gif (and any of them gzipped).
Every failure is an `ImageReadError` whose message names the path and the reason, so
the Beam job can turn it into one line of errors.jsonl.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import zlib

import numpy as np

IMAGE_EXTENSIONS = (".ppm", ".pgm", ".pnm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif")
MASK_THRESHOLD = 127  # masks become binary: grey > 127 is vessel


class ImageReadError(ValueError):
    """An input file that cannot be read as an image; the message names path and reason."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def image_extension(path: str) -> str | None:
    """'a/im0001.ppm.gz' -> '.ppm'; None when the name has no supported image extension."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


def read_bytes(path: str) -> bytes:
    """The raw bytes of `path` through Beam's FileSystems (so gs:// works); no decompression."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read()
    except Exception as e:  # Beam wraps OS / GCS errors in several types.
        raise ImageReadError(path, f"cannot read file: {e}") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gunzip(path: str, data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as e:
        raise ImageReadError(path, f"corrupt or truncated gzip: {e}") from None


def _check_netpbm(path: str, data: bytes) -> None:
    """Checks a binary PPM/PGM header and that the pixel data is complete.

    OpenCV reports truncated netpbm files only on stderr; this gives a clear reason.
    """
    tokens: list[bytes] = []
    pos = 0
    n = len(data)
    while len(tokens) < 4 and pos < n:
        c = data[pos:pos + 1]
        if c == b"#":
            end = data.find(b"\n", pos)
            pos = n if end < 0 else end + 1
        elif c.isspace():
            pos += 1
        else:
            start = pos
            while pos < n and not data[pos:pos + 1].isspace():
                pos += 1
            tokens.append(data[start:pos])
    if len(tokens) < 4 or tokens[0] not in (b"P5", b"P6"):
        if tokens and tokens[0] in (b"P2", b"P3"):
            return  # ASCII netpbm: let the decoder judge it
        raise ImageReadError(path, "not a binary PPM/PGM file (bad header)")
    try:
        width, height, maxval = (int(t) for t in tokens[1:4])
    except ValueError:
        raise ImageReadError(path, f"corrupt PPM/PGM header {b' '.join(tokens)!r}") from None
    channels = 3 if tokens[0] == b"P6" else 1
    expected = width * height * channels * (2 if maxval > 255 else 1)
    available = n - (pos + 1)
    if available < expected:
        raise ImageReadError(path, f"truncated {tokens[0].decode()} data: {available} of "
                                   f"{expected} bytes for {width}x{height}")


def _decode_gif(path: str, data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageReadError(path, f"undecodable GIF: {e}") from None


def decode_image_bytes(path: str, data: bytes) -> np.ndarray:
    """Decodes file bytes (gzipped or not) into uint8 RGB [H, W, 3].

    Grey images are repeated to 3 channels, alpha is dropped, 16-bit data is scaled to 8.
    `path` names the file in errors and selects the format by its extension.
    """
    import cv2
    ext = image_extension(path)
    if ext is None:
        raise ImageReadError(path, "not an image file (supported: "
                                   f"{', '.join(IMAGE_EXTENSIONS)}, optionally .gz)")
    if path.lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = _gunzip(path, data)
    if not data:
        raise ImageReadError(path, "empty file")
    if ext == ".gif":
        array = _decode_gif(path, data)
    else:
        if ext in (".ppm", ".pgm", ".pnm"):
            _check_netpbm(path, data)
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise ImageReadError(path, f"undecodable {ext[1:].upper()} data")
        if array.ndim == 3 and array.shape[2] == 4:
            array = array[..., :3]
        if array.ndim == 3:
            array = array[..., ::-1]  # BGR -> RGB
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageReadError(path, f"unsupported pixel type {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ImageReadError(path, f"unexpected image shape {array.shape}")
    return np.ascontiguousarray(array)


def rgb_to_mask(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] (a decoded label map) -> binary uint8 [H, W] in {0, 1}.

    Grey is OpenCV's luma (equal to the value for grey maps stored as RGB).
    """
    import cv2
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return (grey > MASK_THRESHOLD).astype(np.uint8)


def decode_mask_bytes(path: str, data: bytes) -> np.ndarray:
    """Decodes a label map into a binary uint8 [H, W] mask in {0, 1} (grey > 127)."""
    return rgb_to_mask(decode_image_bytes(path, data))


def read_image(path: str) -> np.ndarray:
    """uint8 RGB [H, W, 3] from a local or gs:// path."""
    return decode_image_bytes(path, read_bytes(path))


def read_mask(path: str) -> np.ndarray:
    """Binary uint8 [H, W] {0, 1} from a local or gs:// path."""
    return decode_mask_bytes(path, read_bytes(path))

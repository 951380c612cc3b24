"""Image files and pixels, shared by the Beam job, the tools and inference (host side).

Decoding: one implementation, OpenCV (+ Pillow for GIF, which OpenCV cannot read) for
PNG, JPEG, BMP, GIF (first frame), TIFF and binary or ASCII PPM/PGM/PNM, any of them
gzipped (.gz). The image size is read from the header first, and an image of more than
`MAX_PIXELS` pixels is refused BEFORE its pixels are decoded (a decompression bomb costs
nothing). Every failure is an `ImageReadError` naming the path and the reason.

Masks: grey > `MASK_THRESHOLD` (127) is vessel, everywhere in the project.

Enlargement by an integer factor: `enlarge_image` (OpenCV's INTER_CUBIC, the Beam path)
and `enlarge_image_graph`, the same kernel in core TensorFlow ops for the serving graph
(the two agree to within one grey level; see tests/ground_floor/test_imaging.py).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import posixpath
import re
import zlib

import numpy as np

from tiled_vessel_seg import storage
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # loaded by the first image decoded: a tool's --help loads none
    import cv2
    import tensorflow as tf
    from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ppm", ".pgm", ".pnm",
                    ".tif", ".tiff")
MASK_THRESHOLD = 127  # a mask pixel is vessel when its grey value is > 127
# Largest image decoded: 64 megapixels (192 MB as uint8 RGB; a 3500x3025 STARE photo
# enlarged 5x is 10.6 MP). Larger files are refused from their header.
MAX_PIXELS = 64_000_000
# Cubic convolution parameter of OpenCV's INTER_CUBIC (Keys' kernel with A = -0.75).
CUBIC_A = -0.75



_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Pillow names the file object it read from: "cannot identify image file <_io.BytesIO
# object at 0x7f...>", which tells the user nothing.
_OBJECT_REPR = re.compile(r"\s*<[\w.]+ object at 0x[0-9a-fA-F]+>")


def one_line(text: object) -> str:
    """`text` with control characters escaped (\\n, \\r, \\t, \\xNN): a file name with a
    newline must not split a log line into a second, fake one."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m.group(), f"\\x{ord(m.group()):02x}"),
                        str(text))


class ImageReadError(ValueError):
    """A file that cannot be used as an image; the message names the path and reason,
    on one line (`path` keeps the name as given)."""

    def __init__(self, path: str, reason: str):
        reason = one_line(_OBJECT_REPR.sub("", str(reason)))
        super().__init__(f"{one_line(path)}: {reason}")
        self.path = path
        self.reason = reason


class PixelLimitError(ImageReadError):
    """An image whose header declares more than `max_pixels` pixels; nothing was decoded."""

    def __init__(self, path: str, width: int, height: int, max_pixels: int):
        super().__init__(path, f"{width}x{height} is {width * height} pixels, more than "
                               f"the limit of {max_pixels}")
        self.width, self.height, self.max_pixels = width, height, max_pixels


# --------------------------------------------------------------------------- names
def image_extension(path: str) -> str | None:
    """'a/im0001.ppm.gz' -> '.ppm'; None when the name has no supported image extension."""
    name = posixpath.basename(str(path).replace("\\", "/")).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext in IMAGE_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return None


def is_image_path(path: str) -> bool:
    """True if the name (optionally ending in .gz) has a supported image extension."""
    return image_extension(path) is not None


def image_stem(path: str) -> str:
    """'gs://b/x/im0001.ppm.gz' -> 'im0001'; 'im0001.ah.ppm.gz' -> 'im0001.ah'."""
    name = posixpath.basename(str(path).replace("\\", "/").rstrip("/"))
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return posixpath.splitext(name)[0]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- header
def _gunzip(path: str, data: bytes, max_pixels: int) -> bytes:
    """Decompresses at most what an image of max_pixels 16-bit RGBA pixels can need."""
    limit = max_pixels * 8 + (1 << 20)
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(limit + 1)
    except (EOFError, OSError, zlib.error) as e:
        raise ImageReadError(path, f"corrupt or truncated gzip: {e}") from None
    if len(out) > limit:
        raise ImageReadError(path, f"gzip holds more than {limit} bytes, too large for an "
                                   f"image of at most {max_pixels} pixels")
    return out


def _netpbm_header(path: str, data: bytes) -> tuple[int, int]:
    """(width, height) of a PPM/PGM; checks that binary pixel data is complete.

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
    if len(tokens) < 4 or tokens[0] not in (b"P2", b"P3", b"P5", b"P6"):
        raise ImageReadError(path, "not a PPM/PGM file (bad header)")
    try:
        width, height, maxval = (int(t) for t in tokens[1:4])
    except ValueError:
        raise ImageReadError(path, f"corrupt PPM/PGM header {b' '.join(tokens)!r}") from None
    if tokens[0] in (b"P5", b"P6"):
        channels = 3 if tokens[0] == b"P6" else 1
        expected = width * height * channels * (2 if maxval > 255 else 1)
        available = n - (pos + 1)
        if available < expected:
            raise ImageReadError(path, f"truncated {tokens[0].decode()} data: {available} "
                                       f"of {expected} bytes for {width}x{height}")
    return width, height


def _pillow_header(path: str, data: bytes, ext: str) -> tuple[int, int]:
    """(width, height) from Pillow's lazy open, which parses the header only."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Image.DecompressionBombError as e:
        raise ImageReadError(path, f"image too large: {e}") from None
    except (Image.UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(path, f"undecodable {ext[1:].upper()} data: {e}") from None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOFn marker of a JPEG, or None."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            return (int.from_bytes(data[pos + 7:pos + 9], "big"),
                    int.from_bytes(data[pos + 5:pos + 7], "big"))
        pos += 2 + length
    return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of PNG (IHDR), GIF, BMP and JPEG (SOFn) bytes, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER
            return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def image_size(path: str, data: bytes) -> tuple[int, int]:
    """(width, height) of uncompressed image bytes, from the header alone: netpbm, PNG
    (IHDR), GIF, BMP and JPEG (SOFn) parsed here, TIFF and anything else by Pillow's
    lazy open (which reads no pixels)."""
    ext = image_extension(path) or ""
    if ext in (".ppm", ".pgm", ".pnm") or data[:2] in (b"P2", b"P3", b"P5", b"P6"):
        return _netpbm_header(path, data)
    return _header_size(data) or _pillow_header(path, data, ext or ".image")


def check_pixel_limit(path: str, width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    if width < 1 or height < 1:
        raise ImageReadError(path, f"empty image ({width}x{height})")
    if width * height > max_pixels:
        raise PixelLimitError(path, width, height, max_pixels)


# --------------------------------------------------------------------------- decode
def _decode_gif(path: str, data: bytes) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (Image.UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageReadError(path, f"undecodable GIF: {e}") from None


def decode_image_bytes(path: str, data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decodes file bytes (gzipped or not) into uint8 RGB [H, W, 3].

    Grey images are repeated to 3 channels, alpha is dropped, 16-bit data is scaled to 8
    bits. `path` names the file in errors and selects the format by its extension.
    Raises ImageReadError (unsupported name, corrupt data, more than max_pixels pixels).
    """
    ext = image_extension(path)
    if ext is None:
        raise ImageReadError(path, "not an image file (supported: "
                                   f"{', '.join(IMAGE_EXTENSIONS)}, optionally .gz)")
    if str(path).lower().endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = _gunzip(path, data, max_pixels)
    if not data:
        raise ImageReadError(path, "empty file")
    check_pixel_limit(path, *image_size(path, data), max_pixels=max_pixels)
    if ext == ".gif" or data[:4] == b"GIF8":
        array = _decode_gif(path, data)
    else:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise ImageReadError(path, f"undecodable {ext[1:].upper()} data")
        if array.ndim == 3 and array.shape[2] == 4:
            array = array[..., :3]
        if array.ndim == 3 and array.shape[2] == 3:
            array = array[..., ::-1]  # BGR -> RGB
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise ImageReadError(path, f"unsupported pixel type {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ImageReadError(path, f"unexpected image shape {array.shape}")
    return np.ascontiguousarray(array)


def rgb_to_mask(rgb: np.ndarray, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """uint8 RGB [H, W, 3] (a decoded label map) or grey [H, W] -> uint8 [H, W] in {0, 1}.

    Grey is OpenCV's luma (equal to the value for grey maps stored as RGB); vessel is
    grey > threshold.
    """
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
    return (grey > threshold).astype(np.uint8)


def decode_mask_bytes(path: str, data: bytes, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """Decodes a label map into a binary uint8 [H, W] mask in {0, 1} (grey > threshold)."""
    return rgb_to_mask(decode_image_bytes(path, data), threshold)


def read_image_bytes(path: str) -> bytes:
    """Raw bytes of an image file (local or remote); ImageReadError when unreadable."""
    try:
        data = storage.read_bytes(path)
    except storage.StorageError as e:
        raise ImageReadError(path, e.reason) from None
    if not data:
        raise ImageReadError(path, "empty file")
    return data


def read_image(path: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """uint8 RGB [H, W, 3] from a local or remote path (see decode_image_bytes)."""
    return decode_image_bytes(path, read_image_bytes(path), max_pixels)


def read_mask(path: str, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """Binary uint8 [H, W] {0, 1} from a local or remote path (grey > threshold)."""
    return decode_mask_bytes(path, read_image_bytes(path), threshold)


def encode_png(image: np.ndarray) -> bytes:
    """uint8 or uint16 [H, W], [H, W, 1] or RGB [H, W, 3] -> PNG bytes."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3:
        image = image[..., ::-1]  # RGB -> OpenCV's BGR
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:
        raise ValueError(f"cannot encode an array of shape {image.shape} and dtype "
                         f"{image.dtype} as PNG")
    return buf.tobytes()


# --------------------------------------------------------------------------- enlarge
def enlarge_image(image: np.ndarray, scale: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [H*scale, W*scale, C], bicubic (cv2.INTER_CUBIC)."""
    if scale == 1:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def enlarge_mask(mask: np.ndarray, scale: int) -> np.ndarray:
    """Binary uint8 [H, W] {0, 1} -> binary uint8 [H*scale, W*scale] {0, 1}.

    Bilinear on 0/255, then thresholded at MASK_THRESHOLD, so edges stay smooth and
    values binary. Label planes [H, W, C] (C <= 4) are enlarged plane by plane alike.
    """
    if scale == 1:
        return mask
    h, w = mask.shape[:2]
    grey = np.where(mask > 0, 255, 0).astype(np.uint8)
    big = cv2.resize(grey, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
    return (big > MASK_THRESHOLD).astype(np.uint8)


def cubic_phase_weights(scale: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's INTER_CUBIC taps for enlarging by an integer `scale`.

    Output pixel i = scale * k + p (phase p) reads source pixels k + offset[p] - 1 ..
    k + offset[p] + 2 (clamped to the image: OpenCV replicates the border) with
    weights[p]: source coordinate (i + 0.5) / scale - 0.5, Keys' cubic with A = -0.75,
    in float32 as OpenCV computes them.
    Returns (offsets int32 [scale], weights float32 [scale, 4]).
    """
    offsets = np.zeros(scale, np.int32)
    weights = np.zeros((scale, 4), np.float32)
    a = np.float32(CUBIC_A)
    for p in range(scale):
        fx = np.float32((p + 0.5) * (1.0 / scale) - 0.5)
        sx = int(np.floor(fx))
        x = np.float32(fx - np.float32(sx))
        c0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
        c1 = ((a + 2) * x - (a + 3)) * x * x + 1
        c2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
        offsets[p] = sx
        weights[p] = [c0, c1, c2, np.float32(1) - c0 - c1 - c2]
    return offsets, weights


def _replicate_pad(x, axis: int, before: int, after: int):
    """Pads `axis` by repeating its first / last slice (OpenCV's clamped border)."""
    n = tf.shape(x)[axis]
    first = tf.gather(x, tf.zeros([before], tf.int32), axis=axis)
    last = tf.gather(x, tf.fill([after], n - 1), axis=axis)
    return tf.concat([first, x, last], axis=axis)


def _cubic_pass(x, axis: int, scale: int):
    """float32 [H, W, C] enlarged along `axis` (0 or 1) by `scale` with the cubic taps.

    Output index scale * k + p is the weighted sum of 4 shifted slices of the padded
    input (phase p's weights); the phases are computed apart and interleaved, so no
    per-pixel index table is built.
    """
    offsets, weights = cubic_phase_weights(scale)
    pad = 2  # offsets are -1 or 0, so the taps reach k - 2 .. k + 2
    n = tf.shape(x)[axis]
    padded = _replicate_pad(x, axis, pad, pad)
    phases = []
    for p in range(scale):
        total = None
        for j in range(4):
            begin, size = [0, 0, 0], [-1, -1, -1]
            begin[axis], size[axis] = pad + int(offsets[p]) - 1 + j, n
            term = tf.slice(padded, begin, size) * float(weights[p, j])
            total = term if total is None else total + term
        phases.append(total)
    stacked = tf.stack(phases, axis=axis + 1)  # [.., n, scale, ..]
    shape = tf.shape(stacked)
    return tf.reshape(stacked, tf.concat([shape[:axis], [n * scale], shape[axis + 2:]], 0))


def enlarge_image_graph(image, scale: int):
    """The in-graph twin of `enlarge_image`: uint8 [H, W, C] tensor -> uint8 [sH, sW, C].

    OpenCV's INTER_CUBIC for an integer factor in core TensorFlow ops (slice, concat,
    multiply, add): the same taps and weights (cubic_phase_weights), the same replicated
    border, float32 arithmetic rounded to nearest as OpenCV's (IPP) code computes it.
    Agrees with cv2.resize to within one grey level, a handful of pixels in ten thousand
    (tests/ground_floor/test_imaging.py); tf.image.resize(bicubic) uses another kernel (A = -0.5).
    """
    if scale == 1:
        return image
    x = tf.cast(tf.convert_to_tensor(image), tf.float32)
    value = _cubic_pass(_cubic_pass(x, 1, scale), 0, scale)
    return tf.cast(tf.clip_by_value(tf.round(value), 0.0, 255.0), tf.uint8)


# --------------------------------------------------------------------------- resample
def resampled_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """(height, width) of an image resampled by `factor`: each side rounded, at least 1."""
    return max(1, int(round(height * factor))), max(1, int(round(width * factor)))


def resample_image(image: np.ndarray, factor: float) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [round(H f), round(W f), C] (FOV scale harmonisation).

    Bicubic (cv2.INTER_CUBIC, the kernel of `enlarge_image`) when enlarging, pixel-area
    averaging (cv2.INTER_AREA) when reducing: bicubic sampling at a factor < 1 skips
    pixels and aliases thin vessels, the area average does not. factor 1 returns the
    image itself. The Beam job ([preprocess] fov_diameter) and inference
    (`--input_scale auto` / a number) both call this, so a photo gets the same pixels.
    Pixel centres map as x' = (x + 0.5) * W' / W - 0.5 (OpenCV's convention), the same
    for `resample_mask` and `resample_probabilities`.
    """
    h, w = image.shape[:2]
    size = resampled_size(h, w, factor)
    if size == (h, w):
        return image
    method = cv2.INTER_CUBIC if size[0] * size[1] > h * w else cv2.INTER_AREA
    return cv2.resize(image, (size[1], size[0]), interpolation=method)


def resample_mask(mask: np.ndarray, factor: float) -> np.ndarray:
    """Binary uint8 [H, W] {0, 1} (or label planes [H, W, C], C <= 4) -> binary uint8 of
    the size `resample_image` gives: bilinear on 0/255, then > MASK_THRESHOLD, as
    `enlarge_mask` enlarges labels (in both directions: a reduced vessel stays where the
    reduced photo has it)."""
    h, w = mask.shape[:2]
    size = resampled_size(h, w, factor)
    if size == (h, w):
        return mask
    grey = np.where(mask > 0, 255, 0).astype(np.uint8)
    out = cv2.resize(grey, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return (out > MASK_THRESHOLD).astype(np.uint8)


def resample_probabilities(probabilities: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [h, w] probabilities -> float32 [height, width]: bilinear when enlarging,
    pixel-area average when reducing (the inverse of `resample_image`'s resampling)."""
    h, w = probabilities.shape[:2]
    if (h, w) == (height, width):
        return probabilities
    method = cv2.INTER_LINEAR if height * width > h * w else cv2.INTER_AREA
    out = cv2.resize(np.ascontiguousarray(probabilities, np.float32), (width, height),
                     interpolation=method)
    return np.clip(out, 0.0, 1.0)

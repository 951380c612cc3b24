"""tiled_vessel_seg.imaging: every supported format decodes (files written here with
OpenCV / Pillow / by hand), oversized images are refused from their header, masks use
one threshold, and the in-graph enlargement equals the Beam job's cv2.INTER_CUBIC."""
from __future__ import annotations

import gzip
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tiled_vessel_seg import imaging


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(0).integers(0, 256, (23, 31, 3), dtype=np.uint8)


def cv2_bytes(array, ext):
    bgr = array[..., ::-1] if array.ndim == 3 else array
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    assert ok
    return buf.tobytes()


def pillow_bytes(array, fmt):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def netpbm_bytes(array):
    """Hand-written binary P6 / P5, independent of any library."""
    h, w = array.shape[:2]
    magic = b"P6" if array.ndim == 3 else b"P5"
    return magic + b"\n# a comment\n%d %d\n255\n" % (w, h) + array.tobytes()


def ascii_ppm_bytes(array):
    h, w = array.shape[:2]
    return b"P3\n%d %d\n255\n" % (w, h) + " ".join(map(str, array.ravel())).encode() + b"\n"


# name -> (file name, bytes of `rgb`, exact?)
def encodings(rgb):
    return {
        "png": ("a.png", cv2_bytes(rgb, ".png"), True),
        "png_pillow": ("a.png", pillow_bytes(rgb, "PNG"), True),
        "bmp": ("a.bmp", cv2_bytes(rgb, ".bmp"), True),
        "tif": ("a.tif", cv2_bytes(rgb, ".tif"), True),
        "tiff_pillow": ("a.tiff", pillow_bytes(rgb, "TIFF"), True),
        "ppm": ("a.ppm", netpbm_bytes(rgb), True),
        "ppm_ascii": ("a.ppm", ascii_ppm_bytes(rgb), True),
        "pnm": ("a.pnm", netpbm_bytes(rgb), True),
        "ppm_gz": ("im0001.ppm.gz", gzip.compress(netpbm_bytes(rgb)), True),
        "png_gz": ("a.png.gz", gzip.compress(cv2_bytes(rgb, ".png")), True),
        "jpg": ("a.jpg", cv2_bytes(rgb, ".jpg"), False),
        "jpeg_pillow": ("a.JPEG", pillow_bytes(rgb, "JPEG"), False),
        "gif": ("a.gif", pillow_bytes(rgb, "GIF"), False),
    }


@pytest.mark.parametrize("kind", list(encodings(np.zeros((2, 2, 3), np.uint8))))
def test_every_format_decodes_to_rgb(rgb, kind):
    name, data, exact = encodings(rgb)[kind]
    out = imaging.decode_image_bytes(f"/d/{name}", data)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    if exact:
        np.testing.assert_array_equal(out, rgb)
    elif kind == "gif":  # 256-colour palette: the decoded pixels are Pillow's own quantisation
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        np.testing.assert_array_equal(out, expected)
    else:  # JPEG of noise: compare with OpenCV's own decoder
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("ext", [".png", ".pgm", ".tif", ".bmp", ".gif"])
def test_grey_files_repeat_to_three_channels(rgb, ext):
    grey = rgb[..., 1]
    data = pillow_bytes(grey, "GIF") if ext == ".gif" else (
        netpbm_bytes(grey) if ext == ".pgm" else cv2_bytes(grey, ext))
    out = imaging.decode_image_bytes("g" + ext, data)
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def test_sixteen_bit_and_alpha(rgb):
    sixteen = rgb.astype(np.uint16) * 256 + 200  # 16 -> 8 bits keeps the high byte
    np.testing.assert_array_equal(imaging.decode_image_bytes("a.png", cv2_bytes(sixteen, ".png")), rgb)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], axis=2)
    data = pillow_bytes(rgba, "PNG")
    np.testing.assert_array_equal(imaging.decode_image_bytes("a.png", data), rgb)


@pytest.mark.parametrize("kind", list(encodings(np.zeros((2, 2, 3), np.uint8))))
def test_header_size_of_every_format(rgb, kind):
    name, data, _ = encodings(rgb)[kind]
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    assert imaging.image_size(name, data) == (31, 23)


@pytest.mark.parametrize("kind", list(encodings(np.zeros((2, 2, 3), np.uint8))))
def test_oversized_images_are_refused_before_decoding(rgb, kind, monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("pixels decoded")
    monkeypatch.setattr(cv2, "imdecode", must_not_decode)
    monkeypatch.setattr(imaging, "_decode_gif", must_not_decode)
    name, data, _ = encodings(rgb)[kind]
    with pytest.raises(imaging.ImageReadError, match=f"{name}: 31x23 is 713 pixels, more than"):
        imaging.decode_image_bytes(name, data, max_pixels=712)


def test_a_png_claiming_a_huge_size_is_refused_from_its_ihdr(monkeypatch):
    import struct
    import zlib
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("pixels decoded"))
    with pytest.raises(imaging.ImageReadError, match="100000x100000 is 10000000000 pixels"):
        imaging.decode_image_bytes("bomb.png", data)


def test_gzip_bomb_stops_at_the_size_limit():
    data = gzip.compress(b"P5\n2000 1500\n255\n" + bytes(3_000_000))
    with pytest.raises(imaging.ImageReadError, match="gzip holds more than 1056576 bytes"):
        imaging.decode_image_bytes("big.pgm.gz", data, max_pixels=1000)


@pytest.mark.parametrize("name, data, reason", [
    ("im1.ppm.gz", gzip.compress(b"P6\n4 4\n255\n" + bytes(48))[:-10], "gzip"),
    ("im3.ppm", b"P6\n40 40\n255\n" + bytes(100), "truncated"),
    ("im4.ppm", b"P6\nxx yy\n255\n", "header"),
    ("im5.png", b"\x89PNG\r\n\x1a\n garbage", "undecodable png"),
    ("im7.gif", b"GIF89a\x04\x00\x04\x00 broken", "undecodable gif"),
    ("im8.tif", b"II*\x00 broken", "undecodable tif"),
    ("im6.jpg", b"", "empty"),
    ("notes.txt", b"hello", "not an image"),
])
def test_bad_bytes_name_path_and_reason(name, data, reason):
    with pytest.raises(imaging.ImageReadError) as info:
        imaging.decode_image_bytes(f"/d/{name}", data)
    assert str(info.value).startswith(f"/d/{name}: ") and reason in str(info.value).lower()


def test_read_image_and_mask_from_files(tmp_path, rgb):
    (tmp_path / "p.ppm.gz").write_bytes(gzip.compress(netpbm_bytes(rgb)))
    np.testing.assert_array_equal(imaging.read_image(str(tmp_path / "p.ppm.gz")), rgb)
    grey = np.array([[0, 126, 127, 128, 255]], np.uint8)
    (tmp_path / "m.png").write_bytes(cv2_bytes(grey, ".png"))
    assert imaging.read_mask(str(tmp_path / "m.png")).tolist() == [[0, 0, 0, 1, 1]]
    assert imaging.MASK_THRESHOLD == 127
    assert imaging.read_mask(str(tmp_path / "m.png"), threshold=0).tolist() == [[0, 1, 1, 1, 1]]
    with pytest.raises(imaging.ImageReadError, match="missing.png"):
        imaging.read_image(str(tmp_path / "missing.png"))


def test_colour_mask_uses_luma(rgb):
    mask = imaging.decode_mask_bytes("m.ah.ppm", netpbm_bytes(rgb))
    luma = np.round(rgb @ np.array([0.299, 0.587, 0.114]))
    ambiguous = np.abs(luma - 127.5) < 1
    np.testing.assert_array_equal((mask == 1)[~ambiguous], (luma > 127)[~ambiguous])


def test_names():
    assert imaging.image_stem("gs://b/x/im0001.ppm.gz") == "im0001"
    assert imaging.image_stem("/a/im0001.ah.ppm.gz") == "im0001.ah"
    assert imaging.is_image_path("A.JPG") and imaging.is_image_path("a.tif.gz")
    assert imaging.is_image_path("x.bmp") and not imaging.is_image_path("notes.txt")
    assert imaging.image_extension("a/im0001.PPM.gz") == ".ppm"


def test_encode_png_round_trips(rgb):
    np.testing.assert_array_equal(imaging.decode_image_bytes("x.png", imaging.encode_png(rgb)), rgb)
    p16 = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    back = cv2.imdecode(np.frombuffer(imaging.encode_png(p16), np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back, p16)


# --------------------------------------------------------------------------- enlarge
def _diff(a, b):
    d = np.abs(a.astype(int) - b.astype(int))
    return d.max(), d.mean()


@pytest.mark.parametrize("shape, scale", [((1, 1, 3), 3), ((2, 3, 3), 2), ((17, 23, 3), 3),
                                          ((24, 19, 3), 4), ((31, 40, 3), 5)])
def test_in_graph_enlargement_is_the_beam_kernel(shape, scale):
    tf = pytest.importorskip("tensorflow")
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    beam = imaging.enlarge_image(image, scale)  # cv2.INTER_CUBIC
    graph = imaging.enlarge_image_graph(tf.constant(image), scale).numpy()
    assert graph.shape == beam.shape == (shape[0] * scale, shape[1] * scale, 3)
    max_diff, mean_diff = _diff(graph, beam)
    # Noise is the hardest case; tf.image.resize(bicubic) is off by up to ~25 here.
    assert max_diff <= 1 and mean_diff < 0.01


def test_in_graph_enlargement_on_a_real_stare_photo(real_stare_dir):
    tf = pytest.importorskip("tensorflow")
    photo = imaging.read_image(str(real_stare_dir / "stare-images" / "im0001.ppm.gz"))
    beam = imaging.enlarge_image(photo, 5)
    graph = imaging.enlarge_image_graph(tf.constant(photo), 5).numpy()
    max_diff, mean_diff = _diff(graph, beam)
    assert beam.shape == (3025, 3500, 3)
    assert max_diff <= 1 and mean_diff < 1e-3


def test_in_graph_enlargement_traces_with_unknown_size():
    tf = pytest.importorskip("tensorflow")
    fn = tf.function(lambda x: imaging.enlarge_image_graph(x, 3),
                     input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    image = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fn(image).numpy(),
                                  imaging.enlarge_image_graph(tf.constant(image), 3).numpy())
    ops = {n.op for n in fn.get_concrete_function().graph.as_graph_def().node}
    assert not [op for op in ops if op.startswith("IO>") or "PyFunc" in op]

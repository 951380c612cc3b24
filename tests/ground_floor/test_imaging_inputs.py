"""tiled_vessel_seg.imaging (the Beam job's decoder) and tiled_vessel_seg.datasets: every format,
every bad-input kind."""
import gzip
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from tiled_vessel_seg import imaging
from tiled_vessel_seg import datasets


@pytest.fixture(scope="module")
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(23, 31, 3), dtype=np.uint8)


def _encode(array: np.ndarray, ext: str) -> bytes:
    bgr = array[..., ::-1] if array.ndim == 3 else array
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(bgr))
    assert ok
    return buf.tobytes()


def _ppm(array: np.ndarray) -> bytes:
    """Hand-written binary PPM (P6), independent of OpenCV."""
    h, w = array.shape[:2]
    return f"P6\n{w} {h}\n255\n".encode() + array.tobytes()


@pytest.mark.parametrize("ext", [".png", ".tif", ".ppm"])
def test_lossless_formats_round_trip(rgb, ext):
    assert np.array_equal(imaging.decode_image_bytes("x" + ext, _encode(rgb, ext)), rgb)


def test_gzipped_ppm_matches_hand_written_pixels(rgb):
    data = gzip.compress(_ppm(rgb))
    assert np.array_equal(imaging.decode_image_bytes("a/im0001.ppm.gz", data), rgb)


def test_jpeg_is_close(rgb):
    smooth = cv2.GaussianBlur(rgb, (7, 7), 3)
    out = imaging.decode_image_bytes("x.jpg", _encode(smooth, ".jpg"))
    assert out.shape == smooth.shape and np.abs(out.astype(int) - smooth).mean() < 6


def test_gif_decodes_via_pillow(rgb):
    grey = (np.arange(20 * 30) % 7 * 30).astype(np.uint8).reshape(20, 30)
    buf = io.BytesIO()
    Image.fromarray(grey, mode="L").save(buf, format="GIF")
    out = imaging.decode_image_bytes("m.gif", buf.getvalue())
    assert out.shape == (20, 30, 3) and np.array_equal(out[..., 1], grey)


def test_pgm_grey_mask_is_binarised():
    grey = np.array([[0, 127, 128, 255]], np.uint8)
    data = f"P5\n4 1\n255\n".encode() + grey.tobytes()
    assert imaging.decode_mask_bytes("m.pgm", data).tolist() == [[0, 0, 1, 1]]


def test_colour_ppm_mask_is_binarised(rgb):
    mask = imaging.decode_mask_bytes("m.ah.ppm.gz", gzip.compress(_ppm(rgb)))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert set(np.unique(mask)) <= {0, 1} and np.array_equal(mask, (grey > 127).astype(np.uint8))


@pytest.mark.parametrize("name, data, reason", [
    ("im1.ppm.gz", gzip.compress(b"P6\n4 4\n255\n" + bytes(48))[:-10], "gzip"),
    ("im2.ppm.gz", b"\x1f\x8bnot really gzip", "gzip"),
    ("im3.ppm", b"P6\n40 40\n255\n" + bytes(100), "truncated"),
    ("im4.ppm", b"P6\nxx yy\n255\n", "header"),
    ("im5.png", b"\x89PNG\r\n\x1a\n garbage", "undecodable"),
    ("im6.jpg", b"", "empty"),
    ("notes.txt", b"hello", "not an image"),
])
def test_bad_bytes_raise_naming_path_and_reason(name, data, reason):
    with pytest.raises(imaging.ImageReadError) as info:
        imaging.decode_image_bytes(f"/d/{name}", data)
    assert f"/d/{name}" in str(info.value) and reason in str(info.value).lower()


def test_read_missing_file_names_it(tmp_path):
    with pytest.raises(imaging.ImageReadError, match="nope.png"):
        imaging.read_image(str(tmp_path / "nope.png"))


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_discover_stare_pairs_and_reports_problems(tmp_path):
    for i in (1, 2, 3):
        _touch(tmp_path / "stare-images" / f"im000{i}.ppm.gz")
    for i in (1, 2, 324):
        _touch(tmp_path / "labels-ah" / f"im{i:04d}.ah.ppm.gz")
    _touch(tmp_path / "stare-images" / "README.txt")  # plainly not a photo: left out
    _touch(tmp_path / "stare-images" / "im0004.ppm.gz.part")  # should have been an image
    _touch(tmp_path / "stare-images" / ".DS_Store")
    pairs, problems = datasets.discover_stare(str(tmp_path))
    assert [p.image_id for p in pairs] == ["im0001", "im0002"]
    assert pairs[0].mask_path.endswith("labels-ah/im0001.ah.ppm.gz")
    reasons = {p.path.rsplit("/", 1)[-1]: p.reason for p in problems}
    assert set(reasons) == {"im0003.ppm.gz", "im0324.ah.ppm.gz", "im0004.ppm.gz.part"}
    assert "unpaired image" in reasons["im0003.ppm.gz"]
    assert "unpaired mask" in reasons["im0324.ah.ppm.gz"]
    assert "not an image" in reasons["im0004.ppm.gz.part"]
    assert all(p.stage == "discover" for p in problems)


def test_folders_pair_by_stem_and_report_empty_or_missing(tmp_path):
    _touch(tmp_path / "img" / "a.jpg")
    _touch(tmp_path / "img" / "b.png")
    _touch(tmp_path / "msk" / "a.png")
    pairs, problems = datasets.pair_folders(str(tmp_path / "img"), str(tmp_path / "msk"))
    assert [(p.image_id, p.mask_path.endswith("a.png")) for p in pairs] == [("a", True)]
    assert len(problems) == 1 and "unpaired image" in problems[0].reason
    (tmp_path / "empty").mkdir()
    pairs, problems = datasets.pair_folders(str(tmp_path / "empty"), str(tmp_path / "missing"))
    assert pairs == []
    assert {p.reason.split(":")[0] for p in problems} == {"empty image folder",
                                                          "mask folder does not exist"}


def test_missing_top_level_dir_raises(tmp_path):
    with pytest.raises(datasets.InputDirError, match="does not exist"):
        datasets.discover_stare(str(tmp_path / "nowhere"))
    with pytest.raises(datasets.InputDirError, match="stare-images"):
        datasets.discover_stare(str(tmp_path))

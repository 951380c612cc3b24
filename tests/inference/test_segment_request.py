"""inference/segment_request.py: the photographs a segmentation run names and their ground
truth, as vessel-segment and vessel-segment-beam both pair them."""
import numpy as np
import pytest

from tiled_vessel_seg import datasets, imaging
from tiled_vessel_seg.inference.segment_request import SegmentRequest, find_photos


def _write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(imaging.encode_png(array))
    return str(path)


@pytest.fixture
def photos(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    return {"im1": _write_png(tmp_path / "photos" / "im1.png", rgb),
            "im2": _write_png(tmp_path / "photos" / "im2.png", rgb),
            "mask1": _write_png(tmp_path / "masks" / "im1.png", mask),
            "dir": tmp_path}


def request(**kwargs):
    return SegmentRequest(model_dir="m", output_dir="o", predictor={}, **kwargs)


def test_a_folder_and_a_pattern_that_matches_nothing(photos):
    found = find_photos(request(patterns=(str(photos["dir"] / "photos"),
                                          str(photos["dir"] / "none" / "*.png"))))
    assert found.files == [photos["im1"], photos["im2"]]
    assert found.unmatched == [str(photos["dir"] / "none" / "*.png")]
    assert found.truths is None and found.problems == []


def test_masks_dir_pairs_by_stem_and_a_photo_without_truth_is_no_problem(photos):
    req = request(patterns=(photos["im1"], photos["im2"]),
                  masks_dir=str(photos["dir"] / "masks"))
    assert req.with_truths
    found = find_photos(req)
    assert set(found.truths) == {"im1"}
    assert found.truths["im1"].mask_path == photos["mask1"]
    assert found.problems == []


def test_the_manifest_names_the_photos_unless_patterns_are_given(photos):
    manifest = photos["dir"] / "pairs.csv"
    manifest.write_text("image,mask\nphotos/im1.png,masks/im1.png\n"
                        "photos/im2.png,masks/missing.png\n")
    found = find_photos(request(manifest=str(manifest)))
    assert found.files == [photos["im1"]]
    assert [(p.path, p.reason) for p in found.problems] == [
        (str(manifest), f"row 3: mask file {photos['dir'] / 'masks' / 'missing.png'} not found")]
    assert set(found.truths) == {"im1"}
    only_im2 = find_photos(request(manifest=str(manifest), patterns=(photos["im2"],)))
    assert only_im2.files == [photos["im2"]]


def test_a_masks_dir_that_is_not_a_folder_is_an_input_dir_error(photos):
    with pytest.raises(datasets.InputDirError, match="not a folder"):
        find_photos(request(patterns=(photos["im1"],),
                            masks_dir=str(photos["dir"] / "nowhere")))

"""Dataset layouts and manifests: small fake trees written under each dataset's real file
names (synthetic pixels), checked for pairing, unpaired/bad-input reporting and FOV files.

The real DRIVE, CHASE_DB1 and HRF archives are not downloaded here (policy); the names
follow their distributions as loaded by public code (bob.ip.binseg's file lists).
"""
import gzip
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from tiled_vessel_seg import datasets

H, W = 20, 24


def _pixels(seed, channels=3):
    rng = np.random.default_rng(seed)
    shape = (H, W, channels) if channels == 3 else (H, W)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _binary(seed):
    return (_pixels(seed, 1) > 200).astype(np.uint8) * 255


def write(path, array):
    """Writes `array` in the format of the file name's extension (case-insensitive)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    name = path.lower()
    if name.endswith(".gif"):
        Image.fromarray(array).save(path, format="GIF")
        return
    if name.endswith(".ppm.gz"):
        rgb = array if array.ndim == 3 else np.dstack([array] * 3)
        data = b"P6\n%d %d\n255\n" % (W, H) + rgb.tobytes()
        with open(path, "wb") as f:
            f.write(gzip.compress(data))
        return
    ext = os.path.splitext(name)[1]
    bgr = array[..., ::-1] if array.ndim == 3 else array
    ok, data = cv2.imencode(ext, bgr)
    assert ok
    with open(path, "wb") as f:
        f.write(data.tobytes())


def _decode(path):
    from tiled_vessel_seg import imaging
    return imaging.read_image(path)


def names(problems):
    return {os.path.basename(p.path): p.reason for p in problems}


# ---------------------------------------------------------------------------- DRIVE

@pytest.fixture
def drive_tree(tmp_path):
    root = tmp_path / "DRIVE"
    for n in (21, 22, 23):
        write(str(root / f"training/images/{n}_training.tif"), _pixels(n))
        write(str(root / f"training/mask/{n}_training_mask.gif"), _binary(n + 100))
        if n != 23:
            write(str(root / f"training/1st_manual/{n}_manual1.gif"), _binary(n))
    write(str(root / "training/1st_manual/24_manual1.gif"), _binary(24))  # no image
    (root / "training/images/Thumbs.db").write_bytes(b"junk")
    for n in (1, 2):
        write(str(root / f"test/images/{n:02d}_test.tif"), _pixels(n))
        write(str(root / f"test/1st_manual/{n:02d}_manual1.gif"), _binary(n))
        write(str(root / f"test/2nd_manual/{n:02d}_manual2.gif"), _binary(n + 50))
        if n == 1:
            write(str(root / f"test/mask/{n:02d}_test_mask.gif"), _binary(n + 100))
    return root


def test_drive_pairs_by_number_with_fov_second_observer_and_split(drive_tree):
    pairs, problems = datasets.discover(str(drive_tree), "drive")
    by_id = {p.image_id: p for p in pairs}
    assert sorted(by_id) == ["01_test", "21_training", "22_training"]
    p = by_id["21_training"]
    assert p.image_path.endswith("training/images/21_training.tif")
    assert p.mask_path.endswith("training/1st_manual/21_manual1.gif")
    assert p.fov_path.endswith("training/mask/21_training_mask.gif")
    assert p.second_mask_path is None and p.split == "train"
    t = by_id["01_test"]
    assert t.mask_path.endswith("test/1st_manual/01_manual1.gif")
    assert t.fov_path.endswith("test/mask/01_test_mask.gif")
    assert t.second_mask_path.endswith("test/2nd_manual/01_manual2.gif")
    assert t.split == "test"
    bad = names(problems)
    assert "unpaired image" in bad["23_training.tif"]
    assert "unpaired mask" in bad["24_manual1.gif"]
    assert "Thumbs.db" not in bad  # plainly not a photograph: left out, no problem
    assert "no FOV mask" in bad["02_test.tif"]
    assert len(problems) == 3
    # The files are real images the project's decoder reads, mask and photo of one size.
    np.testing.assert_array_equal(_decode(p.image_path), _pixels(21))
    assert _decode(p.mask_path).shape == _decode(p.fov_path).shape == (H, W, 3)
    assert datasets.given_splits(pairs) == {"test": ["01_test"],
                                            "train": ["21_training", "22_training"]}


def test_drive_training_folder_alone_and_not_a_drive_tree(drive_tree, tmp_path):
    import shutil
    shutil.rmtree(drive_tree / "test")
    pairs, _ = datasets.discover(str(drive_tree), "drive")
    assert [p.image_id for p in pairs] == ["21_training", "22_training"]
    with pytest.raises(datasets.InputDirError, match="not a drive folder"):
        datasets.discover(str(tmp_path), "drive")
    with pytest.raises(datasets.InputDirError, match="does not exist"):
        datasets.discover(str(tmp_path / "nowhere"), "drive")


def test_drive_match_truths_for_segmentation(drive_tree):
    images = [str(drive_tree / "test/images/01_test.tif"), str(drive_tree / "test/images/02_test.tif"),
              str(drive_tree / "elsewhere.png")]
    truths, problems = datasets.match_truths(images, str(drive_tree / "test/1st_manual"), "drive",
                                             fov_dir=str(drive_tree / "test/mask"))
    assert sorted(truths) == ["01_test", "02_test"]
    assert truths["01_test"].mask_path.endswith("01_manual1.gif")
    assert truths["01_test"].fov_path.endswith("01_test_mask.gif")
    assert truths["02_test"].fov_path is None
    assert problems == []


# ------------------------------------------------------------------------- CHASE_DB1

def test_chase_db1_one_folder_first_and_second_observer(tmp_path):
    root = tmp_path / "CHASEDB1"
    for side in ("01L", "01R", "02L"):
        write(str(root / f"Image_{side}.jpg"), _pixels(1))
        if side != "02L":
            write(str(root / f"Image_{side}_1stHO.png"), _binary(2))
        write(str(root / f"Image_{side}_2ndHO.png"), _binary(3))
    (root / "readme.txt").write_text("CHASE_DB1")
    write(str(root / "Image_03L_3rdHO.png"), _binary(4))
    pairs, problems = datasets.discover(str(root), "chase_db1")
    assert [p.image_id for p in pairs] == ["Image_01L", "Image_01R"]
    assert pairs[0].mask_path.endswith("Image_01L_1stHO.png")
    assert pairs[0].second_mask_path.endswith("Image_01L_2ndHO.png")
    assert pairs[0].fov_path is None  # CHASE_DB1 ships no FOV masks: computed later
    bad = names(problems)
    assert "unpaired image" in bad["Image_02L.jpg"]
    assert "readme.txt" not in bad  # plainly not a photograph: left out, no problem
    assert "not a chase_db1 file name" in bad["Image_03L_3rdHO.png"]
    assert len(problems) == 2


# ------------------------------------------------------------------------------- HRF

def test_hrf_upper_and_lower_case_extensions_and_fov(tmp_path):
    root = tmp_path / "HRF"
    for stem, ext in (("01_dr", ".JPG"), ("01_g", ".jpg"), ("01_h", ".jpg"), ("02_h", ".jpg")):
        write(str(root / "images" / (stem + ext)), _pixels(5))
        write(str(root / "manual1" / (stem + ".tif")), _binary(6))
        if stem != "02_h":
            write(str(root / "mask" / (stem + "_mask.tif")), _binary(7))
    write(str(root / "mask" / "02_h.tif"), _binary(7))  # misnamed FOV mask
    pairs, problems = datasets.discover(str(root), "hrf")
    assert [p.image_id for p in pairs] == ["01_dr", "01_g", "01_h"]
    dr = pairs[0]
    assert dr.image_path.endswith("images/01_dr.JPG")
    assert dr.mask_path.endswith("manual1/01_dr.tif")
    assert dr.fov_path.endswith("mask/01_dr_mask.tif")
    bad = names(problems)
    assert "not a hrf FOV mask name" in bad["02_h.tif"] and "01_dr_mask.tif" in bad["02_h.tif"]
    assert "no FOV mask" in bad["02_h.jpg"]
    np.testing.assert_array_equal(_decode(dr.fov_path)[..., 0], _binary(7))


# ----------------------------------------------------------------------------- STARE

def test_stare_second_observer_from_labels_vk(tmp_path):
    root = tmp_path / "stare"
    for n in (1, 2):
        write(str(root / f"stare-images/im000{n}.ppm.gz"), _pixels(n))
        write(str(root / f"labels-ah/im000{n}.ah.ppm.gz"), _binary(n))
    write(str(root / "labels-vk/im0001.vk.ppm.gz"), _binary(9))
    write(str(root / "labels-ah/im0324.ah.ppm.gz"), _binary(9))
    pairs, problems = datasets.discover_stare(str(root))
    assert [p.image_id for p in pairs] == ["im0001", "im0002"]
    assert pairs[0].second_mask_path.endswith("labels-vk/im0001.vk.ppm.gz")
    assert pairs[1].second_mask_path is None
    assert all(p.fov_path is None and p.split is None for p in pairs)
    assert "unpaired mask" in names(problems)["im0324.ah.ppm.gz"]


def test_plain_folders_with_fov_dir(tmp_path):
    for stem in ("a", "b"):
        write(str(tmp_path / "img" / f"{stem}.png"), _pixels(1))
        write(str(tmp_path / "lab" / f"{stem}.png"), _binary(1))
    write(str(tmp_path / "fov" / "a_mask.png"), _binary(2))
    write(str(tmp_path / "fov" / "b.png"), _binary(2))
    pairs, problems = datasets.pair_folders(str(tmp_path / "img"), str(tmp_path / "lab"),
                                            fov_dir=str(tmp_path / "fov"))
    assert problems == []
    assert [os.path.basename(p.fov_path) for p in pairs] == ["a_mask.png", "b.png"]


def test_unknown_layout_is_named():
    with pytest.raises(ValueError, match="unknown layout 'messidor'.*drive"):
        datasets.get_layout("messidor")


# -------------------------------------------------------------------------- manifest

def test_manifest_pairs_relative_paths_and_reports_bad_rows(tmp_path):
    for stem in ("a", "b", "c", "d"):
        write(str(tmp_path / "photos" / f"{stem}.jpg"), _pixels(1))
        write(str(tmp_path / "labels" / f"{stem}.png"), _binary(1))
    write(str(tmp_path / "fov" / "a.png"), _binary(2))
    (tmp_path / "notes.txt").write_text("x")
    lines = [
        "image,mask,fov,split",                                   # row 1
        "photos/a.jpg,labels/a.png,fov/a.png,train",              # 2 ok
        "photos/b.jpg,labels/b.png,,TEST",                        # 3 ok (split case-insensitive)
        "photos/c.jpg,,,train",                                   # 4 empty mask
        "photos/missing.jpg,labels/c.png,,",                      # 5 not found
        "",                                                       # blank: skipped
        "photos/d.jpg,notes.txt,,",                               # 7 not an image
        "photos/d.jpg,labels/d.png,,holdout",                     # 8 unknown split
        "photos/a.jpg,labels/a.png,,",                            # 9 duplicate id
        "photos/d.jpg,labels/d.png",                              # 10 cell count
        f"{tmp_path / 'photos' / 'd.jpg'},labels/d.png,,valid",   # 11 ok (absolute path)
    ]
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("\n".join(lines) + "\n")
    pairs, problems = datasets.read_manifest(str(manifest))
    assert [(p.image_id, p.split) for p in pairs] == [("a", "train"), ("b", "test"), ("d", "valid")]
    assert pairs[0].image_path == str(tmp_path / "photos" / "a.jpg")
    assert pairs[0].fov_path == str(tmp_path / "fov" / "a.png")
    assert pairs[1].fov_path is None
    reasons = sorted(p.reason for p in problems)
    assert all(p.path == str(manifest) for p in problems)
    expected = {4: "empty mask cell", 5: "not found", 7: "not an image file name",
                8: "unknown split 'holdout'", 9: "duplicate image id 'a' (also row 2)",
                10: "2 cells, the header has 4"}
    assert len(reasons) == len(expected)
    for row, words in expected.items():
        assert any(r.startswith(f"row {row}:") and words in r for r in reasons), (row, reasons)


@pytest.mark.parametrize("header, words", [("image,label", "no mask column"),
                                           ("image,mask,weight", "unknown column(s) 'weight'")])
def test_manifest_header_errors_raise(tmp_path, header, words):
    manifest = tmp_path / "pairs.csv"
    manifest.write_text(header + "\na.png,b.png\n")
    with pytest.raises(datasets.InputDirError, match=words.replace("(", r"\(").replace(")", r"\)")):
        datasets.read_manifest(str(manifest))
    with pytest.raises(datasets.InputDirError, match="does not exist"):
        datasets.read_manifest(str(tmp_path / "none.csv"))


def test_find_pairs_takes_exactly_one_source(tmp_path, drive_tree):
    pairs, _ = datasets.find_pairs(datasets.Source(root=str(drive_tree), layout="drive"))
    assert len(pairs) == 3
    pairs, _ = datasets.find_pairs(datasets.Source(
        images_dir=str(drive_tree / "test/images"), masks_dir=str(drive_tree / "test/1st_manual"),
        layout="drive", fov_dir=str(drive_tree / "test/mask")))
    assert [p.image_id for p in pairs] == ["01_test"]
    for bad, words in [(dict(), "give one of"),
                       (dict(root="a", manifest="b"), "give one of"),
                       (dict(images_dir="a"), "go together"),
                       (dict(manifest="m", layout="drive"), "drop --layout"),
                       (dict(root="r", layout="drive", fov_dir="f"), "says where its FOV"),
                       (dict(root="r", layout="kaggle"), "unknown layout")]:
        with pytest.raises(ValueError, match=words):
            datasets.find_pairs(datasets.Source(**bad))
    assert datasets.Source(root="r", layout="hrf").parameters() == {"root": "r", "layout": "hrf"}


def test_stare_tree_with_fov_dir(tmp_path):
    root = tmp_path / "stare"
    for n in (1, 2):
        write(str(root / f"stare-images/im000{n}.ppm.gz"), _pixels(n))
        write(str(root / f"labels-ah/im000{n}.ah.ppm.gz"), _binary(n))
    write(str(tmp_path / "fov" / "im0001_fov.png"), _binary(5))
    pairs, problems = datasets.find_pairs(datasets.Source(root=str(root),
                                                          fov_dir=str(tmp_path / "fov")))
    assert [p.image_id for p in pairs] == ["im0001"]
    assert pairs[0].fov_path.endswith("im0001_fov.png")
    assert "no FOV mask" in names(problems)["im0002.ppm.gz"]


def test_split_ids_from_inputs():
    def pair(i, split):
        return datasets.ImagePair(f"im{i:02d}", "x", "y", split=split)
    assert datasets.split_ids_from_inputs([pair(1, None), pair(2, None)], 0.2, 0) is None
    # DRIVE: 20 training + 20 test images; validation drawn from training, seeded.
    drive = [pair(i, "train") for i in range(21, 41)] + [pair(i, "test") for i in range(1, 21)]
    valid, test = datasets.split_ids_from_inputs(drive, 0.15, seed=3)
    assert test == [f"im{i:02d}" for i in range(1, 21)]
    assert len(valid) == 3 and set(valid) <= {f"im{i}" for i in range(21, 41)}
    assert datasets.split_ids_from_inputs(drive, 0.15, seed=3) == (valid, test)
    # A manifest that names its valid images keeps them.
    given = [pair(1, "train"), pair(2, "valid"), pair(3, "test"), pair(4, None)]
    assert datasets.split_ids_from_inputs(given, 0.5, 0) == (["im02"], ["im03"])


def test_preprocess_config_takes_the_inputs_splits_unless_it_names_its_own():
    from tiled_vessel_seg.beam_jobs import split
    from tiled_vessel_seg.configs.schema import PreprocessConfig
    pairs = ([datasets.ImagePair(f"{i}_training", "x", "y", split="train") for i in range(21, 41)]
             + [datasets.ImagePair(f"{i:02d}_test", "x", "y", split="test") for i in range(1, 21)])
    config, note = split.with_input_splits(PreprocessConfig(seed=5), pairs)
    assignment = split.assign_splits([p.image_id for p in pairs], config.split, config.seed,
                                     config.valid_ids, config.test_ids)
    assert {i for i, s in assignment.items() if s == "test"} == {f"{i:02d}_test" for i in range(1, 21)}
    valid = {i for i, s in assignment.items() if s == "valid"}
    assert len(valid) == round(0.15 / 0.85 * 20) and all(i.endswith("_training") for i in valid)
    assert "test 20 image(s)" in note
    own = PreprocessConfig(test_ids=("21_training",))
    assert split.with_input_splits(own, pairs) == (own, "")

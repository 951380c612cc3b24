"""A dataset folder as distributed (issue 18 item 10): documentation and checksum files,
and the files a layout explains (CHASE_DB1 keeps photographs and both observers in one
folder), are left out with one summary note, never reported as bad inputs; a file that
should have been an image still is. Synthetic pixels under CHASE_DB1's real file names,
and the real ../shared/data/chase_db1 sample when present."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tiled_vessel_seg import datasets, imaging

REAL_CHASE_DIR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "chase_db1"
W, H = 96, 80
SIDES = ("01L", "01R", "02L")
BEAM = ["--runner", "DirectRunner", "--direct_running_mode", "in_memory",
        "--direct_num_workers", "1"]


@pytest.fixture(scope="module")
def chase_tree(tmp_path_factory):
    """A CHASE_DB1 folder as distributed: photographs, both observers, README.md and
    SHA256SUMS (synthetic fundus pixels from the STARE generator)."""
    from tiled_vessel_seg.synthetic import stare_layout
    synth = tmp_path_factory.mktemp("synth")
    stare_layout.write_synthetic_stare(str(synth), len(SIDES), width=W, height=H, seed=3)
    root = tmp_path_factory.mktemp("CHASEDB1")
    for n, side in enumerate(SIDES, start=1):
        photo = imaging.read_image(str(synth / f"stare-images/im{n:04d}.ppm.gz"))
        truth = imaging.read_mask(str(synth / f"labels-ah/im{n:04d}.ah.ppm.gz"))
        Image.fromarray(photo).save(str(root / f"Image_{side}.jpg"), quality=95)
        Image.fromarray(truth * 255).save(str(root / f"Image_{side}_1stHO.png"))
        second = truth.copy()
        second[:, : W // 3] = 0
        Image.fromarray(second * 255).save(str(root / f"Image_{side}_2ndHO.png"))
    (root / "README.md").write_text("# CHASE_DB1 sample\n")
    (root / "SHA256SUMS").write_text("0" * 64 + "  Image_01L.jpg\n")
    return root


def test_discover_leaves_out_readme_and_checksums_without_a_problem(chase_tree):
    ignored: list = []
    pairs, problems = datasets.discover(str(chase_tree), "chase_db1", ignored=ignored)
    assert [p.image_id for p in pairs] == [f"Image_{s}" for s in SIDES]
    assert problems == []
    assert sorted(pathlib.Path(i.path).name for i in ignored) == ["README.md", "SHA256SUMS"]
    note = datasets.ignored_note(ignored)
    assert note.startswith("left out 2 files") and "README.md" in note and "SHA256SUMS" in note


def test_a_file_that_should_have_been_an_image_is_still_a_problem(chase_tree, tmp_path):
    root = tmp_path / "chase"
    root.mkdir()
    for path in chase_tree.iterdir():
        (root / path.name).write_bytes(path.read_bytes())
    (root / "Image_03L.jpg.part").write_bytes(b"\xff\xd8 half a download")
    pairs, problems = datasets.discover(str(root), "chase_db1", ignored=[])
    assert len(pairs) == len(SIDES)
    assert [(pathlib.Path(p.path).name, "not an image" in p.reason) for p in problems] == [
        ("Image_03L.jpg.part", True)]


@pytest.mark.parametrize("name,plain", [
    ("README.md", True), ("SHA256SUMS", True), ("MD5SUMS", True), ("readme.txt", True),
    ("LICENSE", True), ("notes.pdf", True), ("Thumbs.db", True), (".DS_Store", True),
    ("Image_01L.jpg.part", False), ("scan.raw", False), ("im0001", False),
    ("Image_01L.jepg", False)])
def test_plainly_not_a_photo(name, plain):
    assert datasets.is_plainly_not_a_photo(f"some/dir/{name}") is plain


def test_masks_dir_of_chase_db1_leaves_out_photos_and_second_observer(chase_tree):
    photos = sorted(str(p) for p in chase_tree.glob("*.jpg"))
    ignored: list = []
    truths, problems = datasets.match_truths(photos, str(chase_tree), "chase_db1",
                                             ignored=ignored)
    assert problems == []
    assert sorted(truths) == [f"Image_{s}" for s in SIDES]
    assert truths["Image_01L"].mask_path.endswith("Image_01L_1stHO.png")
    assert sorted((pathlib.Path(i.path).name, i.why) for i in ignored) == sorted(
        [(f"Image_{s}.jpg", "image") for s in SIDES]
        + [(f"Image_{s}_2ndHO.png", "second_mask") for s in SIDES]
        + [("README.md", datasets.NOT_A_PHOTO), ("SHA256SUMS", datasets.NOT_A_PHOTO)])
    note = datasets.ignored_note(ignored, "--masks_dir")
    assert note == ("left out 8 files of --masks_dir: 3 photographs, 3 second-observer "
                    "masks, 2 not photographs (README.md, SHA256SUMS)")


@pytest.mark.slow  # the Beam job on a CHASE_DB1 tree
def test_vessel_preprocess_on_a_chase_db1_folder_exits_0_with_one_note(chase_tree, tmp_path,
                                                                       capsys):
    from tiled_vessel_seg.beam_jobs import cli
    from tiled_vessel_seg.tfrecords import dataset_info
    out = tmp_path / "data"
    code = cli.main(["--dataset_dir", str(chase_tree), "--layout", "chase_db1", "--output_dir",
                     str(out), "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=32",
                     "--augment", "none", "--set", "preprocess.shards=1", *BEAM])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    info = dataset_info.read_dataset_info(str(out))
    ids = sorted(i for split in info.splits.values() for i in split.image_ids)
    assert ids == [f"Image_{s}" for s in SIDES]
    notes = [line for line in err.splitlines() if "left out" in line]
    assert len(notes) == 1 and "README.md" in notes[0] and "SHA256SUMS" in notes[0]
    assert "not an image" not in err
    errors = out / "errors.jsonl"
    assert not errors.exists() or errors.read_text().strip() == ""


@pytest.mark.slow  # vessel-segment in a subprocess
def test_vessel_segment_with_chase_db1_masks_dir_exits_0(chase_tree, tmp_path):
    keras = pytest.importorskip("keras")
    from tiled_vessel_seg.model_info import ModelInfo, write_model_info
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inp)
    keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(x)).save(
        str(model_dir / "best_model.keras"))
    write_model_info(str(model_dir), ModelInfo(tile_size=32, scale=1, overlap=8, threshold=0.5))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.inference.cli", "--model_dir", str(model_dir),
         "--output_dir", str(out), "--input", str(chase_tree / "*.jpg"), "--masks_dir",
         str(chase_tree), "--layout", "chase_db1", "--input_scale", "native"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "skipped" not in result.stderr
    assert [line for line in result.stderr.splitlines() if "left out" in line] == [
        "left out 8 files of --masks_dir: 3 photographs, 3 second-observer masks, "
        "2 not photographs (README.md, SHA256SUMS)"]
    assert sorted(p.name for p in out.glob("Image_*.png")) == [f"Image_{s}.png" for s in SIDES]


@pytest.mark.real_data
def test_real_chase_db1_folder_pairs_all_twenty_photographs():
    if not REAL_CHASE_DIR.is_dir() or not any(REAL_CHASE_DIR.glob("Image_*.jpg")):
        pytest.skip(f"real CHASE_DB1 sample not found at {REAL_CHASE_DIR}: expected "
                    "Image_*.jpg (see ../shared/data/chase_db1/README.md)")
    photos = sorted(REAL_CHASE_DIR.glob("Image_*.jpg"))
    others = sorted(p.name for p in REAL_CHASE_DIR.iterdir()
                    if not p.name.startswith("Image_") and not p.name.startswith("."))
    ignored: list = []
    pairs, problems = datasets.discover(str(REAL_CHASE_DIR), "chase_db1", ignored=ignored)
    assert problems == []
    assert [p.image_id for p in pairs] == [p.name[:-4] for p in photos]
    assert all(p.second_mask_path.endswith("_2ndHO.png") for p in pairs)
    assert sorted(pathlib.Path(i.path).name for i in ignored) == others  # README.md, SHA256SUMS
    ignored = []
    truths, problems = datasets.match_truths([str(p) for p in photos], str(REAL_CHASE_DIR),
                                             "chase_db1", ignored=ignored)
    assert problems == [] and len(truths) == len(photos)
    assert len(ignored) == 2 * len(photos) + len(others)

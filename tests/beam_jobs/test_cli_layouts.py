"""vessel-preprocess and vessel-run on a fake DRIVE tree and a manifest (synthetic pixels
under the datasets' real file names): pairing, the dataset's own split, bad rows in
errors.jsonl, the recorded source sizes, FOV files in the run's metrics."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tiled_vessel_seg import imaging
from tiled_vessel_seg.tfrecords import dataset_info

W, H = 96, 80
BEAM = ["--runner", "DirectRunner", "--direct_running_mode", "in_memory",
        "--direct_num_workers", "1"]


def _save(path, array, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(str(path), format=fmt)


@pytest.fixture(scope="module")
def drive_tree(tmp_path_factory):
    """DRIVE/training (21, 22, 23) and DRIVE/test (01, 02) from synthetic fundus images."""
    from tiled_vessel_seg.synthetic import stare_layout
    synth = tmp_path_factory.mktemp("synth")
    stare_layout.write_synthetic_stare(str(synth), 5, width=W, height=H, seed=7)
    root = tmp_path_factory.mktemp("DRIVE")
    names = [("training", 21), ("training", 22), ("training", 23), ("test", 1), ("test", 2)]
    for n, (folder, number) in enumerate(names, start=1):
        photo = imaging.read_image(str(synth / f"stare-images/im{n:04d}.ppm.gz"))
        truth = imaging.read_mask(str(synth / f"labels-ah/im{n:04d}.ah.ppm.gz"))
        fov = np.zeros((H, W), np.uint8)
        fov[4:-4, 4:-4] = 255
        kind = "training" if folder == "training" else "test"
        _save(root / folder / "images" / f"{number:02d}_{kind}.tif", photo, "TIFF")
        _save(root / folder / "1st_manual" / f"{number:02d}_manual1.gif", truth * 255, "GIF")
        _save(root / folder / "mask" / f"{number:02d}_{kind}_mask.gif", fov, "GIF")
        if folder == "test":  # DRIVE's second observer annotated the test images
            second = truth.copy()
            second[:, : W // 2] = 0
            _save(root / folder / "2nd_manual" / f"{number:02d}_manual2.gif", second * 255, "GIF")
    return root


def test_preprocess_drive_layout_keeps_its_split_and_records_sizes(drive_tree, tmp_path):
    from tiled_vessel_seg.beam_jobs import cli
    out = tmp_path / "data"
    code = cli.main(["--dataset_dir", str(drive_tree), "--layout", "drive", "--output_dir",
                     str(out), "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=32",
                     "--augment", "none", "--set", "preprocess.shards=1", *BEAM])
    assert code == 0
    info = dataset_info.read_dataset_info(str(out))
    assert info.splits["test"].image_ids == ["01_test", "02_test"]
    assert info.splits["valid"].image_ids and set(info.splits["valid"].image_ids) < {
        "21_training", "22_training", "23_training"}
    assert info.source_sizes == [[W, H]]
    assert info.parameters.values["layout"] == "drive"
    # vessel-train finds the first validation photo again from the recorded inputs.
    from tiled_vessel_seg import configs
    from tiled_vessel_seg.pipeline import training_callbacks
    config = configs.load_config(None)
    [callback] = training_callbacks.from_dataset(config, str(out), str(tmp_path / "logs"))
    assert callback.image_id == info.splits["valid"].image_ids[0]
    assert callback.photo.shape == (H, W, 3) and callback.truth.shape == (H, W)
    old_style = training_callbacks.dataset_source({"stare_dir": "s"})
    assert (old_style.root, old_style.layout) == ("s", "stare")
    assert training_callbacks.dataset_source({}) is None


def test_preprocess_manifest_reports_bad_rows_and_keeps_the_rest(drive_tree, tmp_path):
    from tiled_vessel_seg.beam_jobs import cli
    manifest = drive_tree / "pairs.csv"
    manifest.write_text(
        "image,mask,split\n"
        "training/images/21_training.tif,training/1st_manual/21_manual1.gif,train\n"
        "training/images/22_training.tif,training/1st_manual/22_manual1.gif,valid\n"
        "test/images/01_test.tif,test/1st_manual/01_manual1.gif,test\n"
        "test/images/03_test.tif,test/1st_manual/03_manual1.gif,test\n")
    out = tmp_path / "data"
    code = cli.main(["--manifest", str(manifest), "--output_dir", str(out),
                     "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=32",
                     "--augment", "none", "--set", "preprocess.shards=1", *BEAM])
    assert code == 1  # a rejected input, as for unpaired files
    info = dataset_info.read_dataset_info(str(out))
    assert {k: v.image_ids for k, v in info.splits.items()} == {
        "train": ["21_training"], "valid": ["22_training"], "test": ["01_test"]}
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and errors[0]["reason"].startswith("row 5: image file")


@pytest.mark.slow  # a whole vessel-run: preprocess, train, segment, report
def test_vessel_run_on_a_drive_tree_uses_its_fov_masks(drive_tree, tmp_path):
    from tiled_vessel_seg.pipeline import run as run_lib
    config = tmp_path / "tiny.config"
    config.write_text("[preprocess]\nscale = 1\ntile_size = 32\naugmentations = []\n"
                      "shards = 1\n\n[model]\nbase_filters = 2\nbase_kernels = (3,3)\n"
                      "num_layers = 2\ndilation = (1,1)\ndropout_rate = 0.0\n\n[train]\n"
                      "epochs = 1\nbatch_size = 4\nsteps_per_epoch = 2\n\n[tiledinfer]\n"
                      "overlap = 8\n")
    work = tmp_path / "w"
    assert run_lib.main(["--config", str(config), "--workdir", str(work), "--quiet",
                         "--dataset_dir", str(drive_tree), "--layout", "drive"]) == 0
    model_info = json.loads((work / "model" / "model_info.json").read_text())
    assert model_info["source_sizes"] == [[W, H]]
    doc = json.loads((work / "segment" / "metrics.json").read_text())
    assert [r["image"] for r in doc["images"]] == ["01_test", "02_test"]
    assert doc["fov_source"] == "files"
    assert (work / "segment" / "01_test_errors.png").exists()
    report = (work / "report.md").read_text()
    assert "| **pooled** |" in report and "the dataset's FOV masks" in report
    # The second observer (half of each first-observer map) scored against the first:
    # sensitivity = vessel pixels in the right half / all, precision 1.
    line = next(l for l in report.splitlines() if l.startswith("| **second observer** |"))
    sens = []
    for n in (1, 2):
        t = imaging.read_mask(str(drive_tree / f"test/1st_manual/{n:02d}_manual1.gif"))
        sens.append(t[:, W // 2:].sum() / t.sum())
    assert f"{np.mean(sens):.4f} / " in line.split("|")[4]
    assert (work / "report_images" / "01_test.png").exists()
    # TensorBoard got the first validation photo's probability and error maps each epoch.
    assert list((work / "model" / "logs" / "validation_image").glob("events.out.tfevents.*"))

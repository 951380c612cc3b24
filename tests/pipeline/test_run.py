"""`vessel-run` end to end on a tiny synthetic config: every stage, report, skip and resume."""
import csv
import os
import re

import pytest

from tiled_vessel_seg.pipeline import run as run_lib

# Every test here reads one whole vessel-run (synth, preprocess, train, segment, report).
pytestmark = pytest.mark.slow

TINY_CONFIG = """\
[synth]
num_images = 4
width = 96
height = 80
seed = 3

[preprocess]
scale = 1
tile_size = 32
augmentations = ["hflip"]
valid_ids = ["im0002"]
test_ids = ["im0003", "im0004"]
shards = 1
whole_image = False

[model]
base_filters = 2
base_kernels = (3,3)
num_layers = 2
dilation = (1,1)
dropout_rate = 0.0
learning_rate = 0.01

[train]
epochs = 2
batch_size = 4
steps_per_epoch = 2

[tiledinfer]
overlap = 8
batch_size = 4
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = workdir / "tiny.config"
    config.write_text(TINY_CONFIG)
    code = run_lib.main(["--config", str(config), "--workdir", str(workdir / "w"), "--quiet",
                         "--deterministic"])
    assert code == 0
    return config, workdir / "w"


def _metrics_csv(path):
    with open(path, newline="") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


def _ppm_gz(path, flags):
    import gzip

    import cv2
    import numpy as np
    return cv2.imdecode(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8), flags)


def test_every_stage_writes_its_outputs(finished_run):
    import json

    import cv2
    import numpy as np
    import tensorflow as tf
    _, w = finished_run
    for name in ["stare/stare-images/im0004.ppm.gz", "data/dataset_info.json",
                 "model/best_model.keras", "model/model_info.json", "model/history.json",
                 "model/evaluation.csv", "segment/im0003.png", "segment/im0004.png",
                 "segment/metrics.csv", "report.md", "montage.png", "training_curves.png"]:
        assert (w / name).exists(), name
    # synth: the 4 photos of [synth], 96x80
    assert sorted(os.listdir(w / "stare" / "stare-images")) == [
        f"im000{i}.ppm.gz" for i in range(1, 5)]
    assert _ppm_gz(w / "stare" / "stare-images" / "im0004.ppm.gz",
                   cv2.IMREAD_COLOR).shape == (80, 96, 3)
    # preprocess: the config's split by image; each split's records, counted in its shards
    info = json.loads((w / "data" / "dataset_info.json").read_text())
    assert {s: sorted(v["image_ids"]) for s, v in info["splits"].items()} == {
        "train": ["im0001"], "valid": ["im0002"], "test": ["im0003", "im0004"]}
    for split in info["splits"].values():
        shards = [str(w / "data" / shard) for shard in split["shards"]]
        compression = "GZIP" if info["compression"] == "gzip" else ""
        counted = sum(1 for _ in tf.data.TFRecordDataset(shards, compression))
        assert counted == split["records"] > 0
    # train: [train] epochs = 2 logged; model_info.json says the config's tile and overlap
    history = json.loads((w / "model" / "history.json").read_text())
    assert len(history["epoch"]) == 2 and len(history["val_loss"]) == 2
    model_info = json.loads((w / "model" / "model_info.json").read_text())
    assert (model_info["tile_size"], model_info["overlap"]) == (32, 8)
    assert model_info["data_ids"]["test"] == ["im0003", "im0004"]
    # evaluate: every metric of the test tiles, rates in [0, 1]
    with open(w / "model" / "evaluation.csv", newline="") as f:
        evaluation = {row["metric"]: float(row["value"]) for row in csv.DictReader(f)}
    assert list(evaluation) == ["loss", "dice_coef", "dice", "iou", "sensitivity",
                                "specificity", "accuracy", "auc"]
    assert all(0.0 <= v <= 1.0 for k, v in evaluation.items() if k != "loss")
    # segment: each test photo's Dice in metrics.csv is numpy's Dice of its written mask
    # against its label in the synthetic STARE folder
    rows = _metrics_csv(w / "segment" / "metrics.csv")
    for image_id in ("im0003", "im0004"):
        mask = cv2.imread(str(w / "segment" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE) > 127
        label = _ppm_gz(w / "stare" / "labels-ah" / f"{image_id}.ah.ppm.gz",
                        cv2.IMREAD_GRAYSCALE) > 127
        dice = 2 * np.sum(mask & label) / max(np.sum(mask) + np.sum(label), 1)
        assert float(rows[image_id]["dice"]) == pytest.approx(dice, abs=1e-4), image_id
    # report: the montage and the curves are pictures
    for picture in ("montage.png", "training_curves.png"):
        assert cv2.imread(str(w / picture)) is not None, picture


def test_deterministic_flag_reaches_the_training_config(finished_run):
    import json
    _, workdir = finished_run
    with open(workdir / "model" / "model_info.json") as f:
        assert json.load(f)["config"]["train"]["deterministic"] is True


def test_segment_stage_covers_exactly_the_test_images_at_native_size(finished_run):
    import cv2
    _, w = finished_run
    rows = _metrics_csv(w / "segment" / "metrics.csv")
    assert set(rows) == {"im0003", "im0004", "mean", "std"}
    mask = cv2.imread(str(w / "segment" / "im0003.png"), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (80, 96)
    assert set(mask.ravel().tolist()) <= {0, 255}


def test_report_metrics_equal_metrics_csv(finished_run):
    _, w = finished_run
    rows = _metrics_csv(w / "segment" / "metrics.csv")
    report = (w / "report.md").read_text()
    for image in ("im0003", "im0004", "mean"):
        line = next(l for l in report.splitlines() if l.startswith(f"| {image} ")
                    or l.startswith(f"| **{image}** "))
        whole = [float(a) for a, _ in re.findall(r"([0-9.]+) / ([0-9.]+)", line)]
        fov = [float(b) for _, b in re.findall(r"([0-9.]+) / ([0-9.]+)", line)]
        names = ["dice", "iou", "sensitivity", "specificity", "accuracy", "auc"]
        assert whole == pytest.approx([float(rows[image][n]) for n in names], abs=1e-4)
        assert fov == pytest.approx([float(rows[image]["fov_" + n]) for n in names], abs=1e-4)


def test_rerun_skips_complete_stages_and_redoes_missing_ones(finished_run):
    config, w = finished_run
    kept = [w / "data" / "dataset_info.json", w / "model" / "best_model.keras",
            w / "model" / "evaluation.csv"]
    before = {p: p.stat().st_mtime_ns for p in kept}
    (w / "segment" / "metrics.csv").unlink()  # as if interrupted during segmentation
    (w / "report.md").unlink()
    assert run_lib.main(["--config", str(config), "--workdir", str(w), "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == before
    assert (w / "segment" / "metrics.csv").exists() and (w / "report.md").exists()


def test_overwrite_redoes_selected_stage_only(finished_run):
    config, w = finished_run
    info = w / "data" / "dataset_info.json"
    report = w / "report.md"
    info_before, report_before = info.stat().st_mtime_ns, report.stat().st_mtime_ns
    assert run_lib.main(["--config", str(config), "--workdir", str(w), "--quiet",
                         "--stages", "report", "--overwrite"]) == 0
    assert info.stat().st_mtime_ns == info_before
    assert report.stat().st_mtime_ns > report_before


def test_bad_stage_and_missing_stare_dir_are_one_line_errors(finished_run, capsys, tmp_path):
    config, w = finished_run
    assert run_lib.main(["--config", str(config), "--workdir", str(w),
                         "--stages", "synth,fly"]) == 2
    assert "unknown stage(s) fly" in capsys.readouterr().err
    assert run_lib.main(["--config", str(config), "--workdir", str(tmp_path),
                         "--stare_dir", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_segment_stage_uses_the_threshold_in_model_info(finished_run, tmp_path):
    """[train] select_threshold writes the chosen threshold into model_info.json, so the
    segment stage must binarise at that one, not at [tiledinfer] threshold (0.5)."""
    import json
    import shutil

    import cv2
    import numpy as np

    config, w = finished_run
    copy = tmp_path / "w"
    shutil.copytree(w, copy)
    info_path = copy / "model" / "model_info.json"
    info = json.loads(info_path.read_text())
    info["threshold"] = 0.0  # every pixel has probability > 0: all vessel
    info_path.write_text(json.dumps(info))
    assert run_lib.main(["--config", str(config), "--workdir", str(copy), "--quiet",
                         "--stages", "segment", "--overwrite"]) == 0
    for image_id in ("im0003", "im0004"):
        mask = cv2.imread(str(copy / "segment" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE)
        assert mask is not None and mask.shape == (80, 96)
        assert np.all(mask == 255), image_id

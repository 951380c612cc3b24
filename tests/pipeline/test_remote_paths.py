"""pipeline/ on remote paths: vessel-run's synth stage, the run report and vessel-cv's
per-fold files on TensorFlow's in-memory filesystem (ram://, the tf.io.gfile code gs://
goes through, with no network).

Each test runs the same call on a local folder and on a ram:// folder and compares what
was written: the local run is the reference. (The preprocess stage is Apache Beam's, whose
filesystems have no ram://; training is not run here.)
"""
from __future__ import annotations

import json
import types

import cv2
import numpy as np
import pytest

from tests.helpers import ram_dir, tree
from tiled_vessel_seg import datasets, imaging, model_info, storage
from tiled_vessel_seg.configs import schema
from tiled_vessel_seg.inference import segment
from tiled_vessel_seg.pipeline import cv, report
from tiled_vessel_seg.pipeline import stages
from tiled_vessel_seg.tfrecords import dataset_info
from tiled_vessel_seg.trainer import callbacks

pytest.importorskip("tensorflow")  # ram:// is TensorFlow's filesystem


def test_run_synth_stage_writes_the_same_photos_to_ram_and_skips_them_on_rerun(tmp_path,
                                                                               capsys):
    config = schema.Config(synth=schema.SynthConfig(num_images=2, width=48, height=40,
                                                    seed=3))
    local = stages.run_pipeline(config, str(tmp_path / "w"), stages=["synth"])
    remote = stages.run_pipeline(config, ram_dir("w"), stages=["synth"])
    assert remote.stare_dir.startswith("ram://") and remote.data_dir.startswith("ram://")
    expected = tree(local.stare_dir)
    assert sorted(expected) == ["labels-ah/im0001.ah.ppm.gz", "labels-ah/im0002.ah.ppm.gz",
                                "stare-images/im0001.ppm.gz", "stare-images/im0002.ppm.gz"]
    assert tree(remote.stare_dir) == expected
    photo = imaging.read_image(storage.join(remote.stare_dir, "stare-images",
                                            "im0001.ppm.gz"))
    assert photo.shape == (40, 48, 3) and photo.dtype == np.uint8
    capsys.readouterr()
    stages.run_pipeline(config, remote.workdir, stages=["synth"])
    assert "skipped: 2 synthetic images already in ram://" in capsys.readouterr().out


def _write_png(path: str, image: np.ndarray) -> None:
    storage.write_bytes_atomic(path, imaging.encode_png(image))


def _report_inputs(root: str, h: int = 40, w: int = 48):
    """A held-out photo, its label, a segment folder (mask, probabilities, metrics.csv) and
    a model dir (model_info.json, history.json) under root; returns (pairs, segment dir,
    model dir)."""
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    truth = (rng.random((h, w)) > 0.85).astype(np.uint8)
    probabilities = rng.random((h, w))
    predicted = (probabilities > 0.5).astype(np.uint8)
    photos, seg, model = (storage.join(root, n) for n in ("photos", "segment", "model"))
    for folder in (photos, seg, model):
        storage.makedirs(folder)
    _write_png(storage.join(photos, "im0001.png"), photo)
    _write_png(storage.join(photos, "im0001_label.png"), truth * 255)
    _write_png(storage.join(seg, "im0001.png"), predicted * 255)
    _write_png(storage.join(seg, "im0001_probabilities.png"),
               np.round(probabilities * 65535).astype(np.uint16))
    row = {c: 0.5 for c in segment.metric_columns()}
    segment.write_metrics_csv(storage.join(seg, "metrics.csv"), [{"image": "im0001", **row}])
    model_info.write_model_info(model, model_info.ModelInfo(tile_size=16, scale=1, overlap=4,
                                                            threshold=0.5))
    history = {"epoch": [0, 1, 2], "loss": [0.9, 0.7, 0.6], "val_loss": [0.8, 0.6, 0.65],
               "dice_coef": [0.1, 0.3, 0.4], "val_dice_coef": [0.2, 0.4, 0.35]}
    storage.write_text_atomic(storage.join(model, callbacks.HISTORY_FILE), json.dumps(history))
    pair = datasets.ImagePair("im0001", storage.join(photos, "im0001.png"),
                              storage.join(photos, "im0001_label.png"))
    return [pair], seg, model, probabilities


def test_report_on_ram_writes_what_the_local_report_writes(tmp_path, monkeypatch):
    split = types.SimpleNamespace(image_ids=["im0001"], tiles=3, augmented_tiles=0)
    monkeypatch.setattr(dataset_info, "read_dataset_info",  # no shards are needed here
                        lambda d: types.SimpleNamespace(splits={"test": split}))
    written = {}
    for name, root in (("local", str(tmp_path)), ("ram", ram_dir("r"))):
        pairs, seg, model, probabilities = _report_inputs(root)
        work = storage.join(root, "w")
        storage.makedirs(work)
        path = report.write_report(work, "photos", "data", model, seg, pairs)
        assert path == storage.join(work, report.REPORT_FILE)
        text = storage.read_text(path)
        written[name] = (text.replace(root, "ROOT"), tree(work))
        np.testing.assert_allclose(report.read_probabilities(seg, "im0001"),
                                   np.round(probabilities * 65535) / 65535, atol=1e-7)
    local_text, local_files = written["local"]
    ram_text, ram_files = written["ram"]
    assert sorted(ram_files) == sorted(local_files) == sorted([
        report.MONTAGE_FILE, f"{report.FULL_SIZE_DIR}/im0001.png", report.REPORT_FILE,
        report.CURVES_FILE])
    assert ram_text.splitlines()[1:] == local_text.splitlines()[1:]  # line 0: the folder
    assert ram_text.splitlines()[0] == "# Run report: ROOT/w"
    for name in (report.MONTAGE_FILE, f"{report.FULL_SIZE_DIR}/im0001.png"):
        assert ram_files[name] == local_files[name]
    curves = cv2.imdecode(np.frombuffer(ram_files[report.CURVES_FILE], np.uint8),
                          cv2.IMREAD_COLOR)
    assert curves is not None and curves.shape == (380, 1000, 3)  # 10 x 3.8 in at 100 dpi


def _fold_segment_dir(workdir: str, fold: cv.Fold, values: dict[str, float]) -> None:
    seg = storage.join(cv.fold_dir(workdir, fold), "segment")
    storage.makedirs(seg)
    rows = [{"image": image_id, **{c: values[image_id] for c in segment.metric_columns()}}
            for image_id in fold.test_ids]
    segment.write_metrics_csv(storage.join(seg, "metrics.csv"), rows)


def test_cv_fold_rows_and_cv_metrics_on_ram_equal_the_local_ones(tmp_path):
    folds = cv.assign_folds(["im0001", "im0002", "im0003", "im0004"], 2, seed=0)
    values = {"im0001": 0.25, "im0002": 0.5, "im0003": 0.75, "im0004": 1.0}
    results = {}
    for name, workdir in (("local", str(tmp_path)), ("ram", ram_dir("cv"))):
        for fold in folds:
            _fold_segment_dir(workdir, fold, values)
        rows = [r for fold in folds for r in cv.read_fold_rows(workdir, fold)]
        cv.write_cv_metrics(storage.join(workdir, cv.CV_METRICS), rows)
        results[name] = rows, storage.read_bytes(storage.join(workdir, cv.CV_METRICS))
    rows, csv_bytes = results["ram"]
    assert results["local"] == (rows, csv_bytes)
    assert sorted((r["fold"], r["image"], r["dice"]) for r in rows) == sorted(
        (f.index, i, values[i]) for f in folds for i in f.test_ids)
    assert b"\n,all,mean," in csv_bytes.replace(b"\r\n", b"\n")


def test_cv_fold_with_its_record_on_ram_is_skipped_not_retrained(tmp_path):
    """A finished fold is found on a remote work dir too (os.path.exists said no, so a
    rerun on gs:// trained every fold again)."""
    workdir = ram_dir("cv")
    fold = cv.Fold(0, ("im0002",), ("im0001",), ("im0003",))
    pairs = [datasets.ImagePair(i, str(tmp_path / f"{i}.png"), str(tmp_path / f"{i}_l.png"))
             for i in ("im0001", "im0002", "im0003")]
    _fold_segment_dir(workdir, fold, {"im0002": 0.5})
    record = {"index": 0, "train_seconds": 1.5, "threshold": 0.42}
    storage.write_text_atomic(storage.join(cv.fold_dir(workdir, fold), cv.FOLD_FILE),
                              json.dumps(record))
    said = []
    got = cv.run_fold(schema.Config(), fold, str(tmp_path), workdir, pairs,
                      stages.RunOptions(), say=said.append)
    assert got == record
    assert said == [f"skipped: {storage.join(cv.fold_dir(workdir, fold), 'segment')}"
                    "/metrics.csv exists"]

"""vessel-preprocess on an unusable output location (issue 11 hardening): a full disk or an
unwritable folder is one line naming the path and the OS error, exit 2, and no Beam
temporary files; the OS error is found in a remote worker's traceback text."""
import errno
import os

import cv2
import numpy as np

from tests.helpers import one_error_line


def _small_pairs(root):
    """Two 64x64 PNG photo/mask pairs in root/images and root/masks."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for stem in ("a", "b"):
        cv2.imwrite(str(root / "images" / f"{stem}.png"),
                    rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "masks" / f"{stem}.png"),
                    (rng.random((64, 64)) > 0.7).astype(np.uint8) * 255)
    return ["--images_dir", str(root / "images"), "--masks_dir", str(root / "masks"),
            "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=32", "--augment",
            "none", "--valid_ids", "b", "--test_ids", "", "--set", "preprocess.shards=1",
            "--direct_running_mode", "in_memory", "--direct_num_workers", "1"]


def test_vessel_preprocess_full_disk_is_one_line_exit_2_and_no_beam_temp(tmp_path, capsys,
                                                                          monkeypatch):
    from apache_beam.io import tfrecordio
    from tiled_vessel_seg.beam_jobs import cli as preprocess_cli

    def full_disk(self, file_handle, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfrecordio._TFRecordSink, "write_encoded_record", full_disk)
    out = tmp_path / "out"
    code = preprocess_cli.main(_small_pairs(tmp_path) + ["--output_dir", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert str(out) in line and "No space left on device" in line
    assert not list(out.rglob("beam-temp-*"))
    assert not (out / "dataset_info.json").exists()


def test_vessel_preprocess_unwritable_output_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    from tiled_vessel_seg.beam_jobs import cli as preprocess_cli
    args = _small_pairs(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = preprocess_cli.main(args + ["--output_dir", str(blocker / "out")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and str(blocker / "out") in line and "Not a directory" in line

    real_makedirs = os.makedirs

    def read_only(path, *a, **k):
        if str(path).startswith(str(tmp_path / "ro")):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_makedirs(path, *a, **k)

    monkeypatch.setattr(os, "makedirs", read_only)
    code = preprocess_cli.main(args + ["--output_dir", str(tmp_path / "ro" / "out")])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2 and str(tmp_path / "ro" / "out") in line and "Permission denied" in line


def test_output_os_error_is_found_in_a_worker_traceback_text():
    from tiled_vessel_seg.beam_jobs import pipeline
    remote = RuntimeError("Traceback ...\n  File \"tfrecordio.py\", line 128\nOSError: [Errno 28] "
                          "No space left on device [while running 'WriteTrain/Write']")
    found = pipeline.output_os_error(remote)
    assert (found.errno, found.strerror) == (errno.ENOSPC, "No space left on device")
    assert pipeline.output_os_error(RuntimeError("ValueError: bad tile")) is None
    assert pipeline.output_os_error(RuntimeError("[Errno 2] No such file")) is None  # an input

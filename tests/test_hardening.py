"""Issue 11 hardening: each test reproduces one failure a hostile or careless user found."""
import errno
import gzip
import io
import logging
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tiled_vessel_seg.pipeline import download_stare as ds


# --- vessel-download-stare: duplicate names, links, truthful counts ------------------------

def _ppm_gz(array):
    ok, encoded = cv2.imencode(".ppm", array)
    assert ok
    return gzip.compress(encoded.tobytes())


def _gunzip_decode(path):
    return cv2.imdecode(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8),
                        cv2.IMREAD_UNCHANGED)


def _write_tar(path, members):
    """members: list of (name, bytes) regular files or (name, ('sym'|'hard', target))."""
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type = tarfile.SYMTYPE if data[0] == "sym" else tarfile.LNKTYPE
                info.linkname = data[1]
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def photos():
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (6, 7, 3), np.uint8) for _ in range(3)]


def test_extract_keeps_the_first_good_file_when_a_corrupt_duplicate_follows(tmp_path, photos):
    good = _ppm_gz(photos[0])
    tar = _write_tar(tmp_path / "a.tar", [("a/im0001.ppm.gz", good),
                                          ("b/im0001.ppm.gz", good[:len(good) // 2])])
    report = ds.ArchiveReport(folder="stare-images", url="file:///a.tar")
    ds.extract_archive(tar, tmp_path / "out", ".ppm.gz", report, progress=False)
    np.testing.assert_array_equal(_gunzip_decode(tmp_path / "out" / "im0001.ppm.gz"), photos[0])
    assert report.written == ["im0001.ppm.gz"]
    assert report.duplicates == {"b/im0001.ppm.gz": "a/im0001.ppm.gz"}


def test_extract_keeps_the_first_of_two_good_files_and_counts_it_once(tmp_path, photos):
    tar = _write_tar(tmp_path / "a.tar", [("a/im0001.ppm.gz", _ppm_gz(photos[0])),
                                          ("b/im0001.ppm.gz", _ppm_gz(photos[1])),
                                          ("im0002.ppm.gz", _ppm_gz(photos[2]))])
    report = ds.ArchiveReport(folder="stare-images", url="file:///a.tar")
    ds.extract_archive(tar, tmp_path / "out", ".ppm.gz", report, progress=False)
    np.testing.assert_array_equal(_gunzip_decode(tmp_path / "out" / "im0001.ppm.gz"), photos[0])
    assert sorted(report.written) == ["im0001.ppm.gz", "im0002.ppm.gz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "im0001.ppm.gz", "im0002.ppm.gz"]


def test_extract_a_good_copy_after_a_corrupt_one_is_written(tmp_path, photos):
    good = _ppm_gz(photos[0])
    tar = _write_tar(tmp_path / "a.tar", [("a/im0001.ppm.gz", good[:10]),
                                          ("b/im0001.ppm.gz", good)])
    report = ds.ArchiveReport(folder="stare-images", url="file:///a.tar")
    ds.extract_archive(tar, tmp_path / "out", ".ppm.gz", report, progress=False)
    np.testing.assert_array_equal(_gunzip_decode(tmp_path / "out" / "im0001.ppm.gz"), photos[0])
    assert report.written == ["im0001.ppm.gz"] and list(report.corrupt) == ["a/im0001.ppm.gz"]


def test_download_warns_on_links_and_duplicates_and_counts_truthfully(tmp_path, photos, caplog,
                                                                      capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write_tar(mirror / "stare-images.tar", [
        ("im0001.ppm.gz", _ppm_gz(photos[0])),
        ("copy/im0001.ppm.gz", _ppm_gz(photos[1])),
        ("im0002.ppm.gz", ("sym", "/etc/passwd")),
        ("im0003.ppm.gz", ("hard", "im0001.ppm.gz")),
    ])
    _write_tar(mirror / "labels-ah.tar", [("im0001.ah.ppm.gz", _ppm_gz(photos[2]))])
    out = tmp_path / "stare"
    with caplog.at_level(logging.WARNING):
        status = ds.main(["--out_dir", str(out), "--url_base", mirror.as_uri(),
                          "--no-progress"])
    assert status == 0  # duplicates and links are warnings: the layout is complete
    assert sorted(p.name for p in (out / "stare-images").iterdir()) == ["im0001.ppm.gz"]
    np.testing.assert_array_equal(_gunzip_decode(out / "stare-images" / "im0001.ppm.gz"),
                                  photos[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("im0002.ppm.gz" in w and "link" in w for w in warnings), warnings
    assert any("im0003.ppm.gz" in w and "link" in w for w in warnings), warnings
    assert any("copy/im0001.ppm.gz" in w and "same file name" in w for w in warnings), warnings
    assert "stare-images 1 files" in capsys.readouterr().out


def test_extract_write_failure_names_the_file_leaves_no_tmp_and_keeps_the_archive(
        tmp_path, photos, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write_tar(mirror / "stare-images.tar", [("im0001.ppm.gz", _ppm_gz(photos[0]))])
    _write_tar(mirror / "labels-ah.tar", [("im0001.ah.ppm.gz", _ppm_gz(photos[1]))])
    real_write = Path.write_bytes

    def full_disk(self, data):
        real_write(self, data[:3])  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    out = tmp_path / "stare"
    with pytest.raises(ds.OutputWriteError) as refused:
        ds.download_stare(out, mirror.as_uri(), progress=False)
    assert str(refused.value) == (f"{out / 'stare-images' / 'im0001.ppm.gz'}: cannot write: "
                                  "No space left on device")
    assert not list(out.rglob("*.tmp"))
    assert (out / "archives" / "stare-images.tar").exists()  # no refetch needed


def test_download_into_an_unusable_folder_is_one_line_exit_2(tmp_path, photos, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write_tar(mirror / "stare-images.tar", [("im0001.ppm.gz", _ppm_gz(photos[0]))])
    _write_tar(mirror / "labels-ah.tar", [("im0001.ah.ppm.gz", _ppm_gz(photos[1]))])
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = ds.main(["--output_dir", str(blocker / "stare"), "--url_base", mirror.as_uri(),
                    "--noprogress"])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(blocker / "stare" / "archives") in lines[0] and "Not a directory" in lines[0]


# --- model files: nothing executes from them ------------------------------------------------

KERAS_FLOOR = "3.15.1"  # docs/security.md: every published safe_mode bypass fixed


def _save_h5_with_code(path, marker):
    """Saves a legacy .h5 model whose Lambda layer creates `marker` when it runs."""
    import keras
    os.environ["VESSEL_TEST_MARKER"] = str(marker)
    inp = keras.Input((4,))
    # The path is read from the environment when the lambda runs: the marshalled
    # bytecode then needs no closure or defaults (which keras 3.10 could not restore).
    out = keras.layers.Lambda(
        lambda x: (open(__import__("os").environ["VESSEL_TEST_MARKER"], "w").close(), x)[1])(inp)
    keras.Model(inp, out).save(str(path))
    os.remove(marker)  # building the model ran the lambda once


def test_installed_keras_refuses_code_in_an_h5_model_under_safe_mode(tmp_path):
    import keras
    marker = tmp_path / "code_ran"
    _save_h5_with_code(tmp_path / "evil.h5", marker)
    with pytest.raises(Exception, match="(?i)lambda|safe_mode"):
        keras.models.load_model(str(tmp_path / "evil.h5"), compile=False, safe_mode=True)
    assert not marker.exists()  # keras 3.10.0 ran it (CVE-2025-9905)


def test_setup_requires_a_keras_with_the_safe_mode_fixes():
    from packaging.requirements import Requirement
    from packaging.version import Version
    import keras
    text = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    line = next(l for l in text.splitlines() if l.strip().startswith('"keras'))
    requirement = Requirement(line.strip().strip(",").strip('"'))
    assert not requirement.specifier.contains("3.15.0")
    assert requirement.specifier.contains(KERAS_FLOOR)
    assert Version(keras.__version__) >= Version(KERAS_FLOOR)


def _model_dir_with_info(path, **fields):
    """A model dir holding only model_info.json with the given raw JSON fields."""
    import json
    path.mkdir(parents=True, exist_ok=True)
    info = {"tile_size": 32, "scale": 2, "overlap": 8, "threshold": 0.5, **fields}
    (path / "model_info.json").write_text(json.dumps(info))
    return path


@pytest.mark.parametrize("model_file", [
    "../best_model.keras", "/etc/shadow.keras", "sub/best_model.keras", "..\\best.keras",
    "gs://bucket/m.keras", "evil.h5", "best_model.hdf5", "saved_model", ".keras"])
def test_model_file_must_be_a_keras_file_inside_the_model_dir(tmp_path, model_file):
    from tiled_vessel_seg import model_info
    model_dir = _model_dir_with_info(tmp_path / "m", model_file=model_file)
    with pytest.raises(model_info.ModelDirError, match="model_file") as refused:
        model_info.read_model_info(str(model_dir))
    assert str(model_dir / "model_info.json") in str(refused.value)
    assert repr(model_file) in str(refused.value)
    built = model_info.ModelInfo(tile_size=32, scale=2, model_file=model_file)
    with pytest.raises(model_info.ModelDirError, match="model_file"):
        built.model_path(str(model_dir))
    assert model_info.ModelInfo(tile_size=32, scale=2).model_path("m") == os.path.join(
        "m", "best_model.keras")


def test_an_h5_named_by_model_info_is_refused_before_its_code_can_run(tmp_path):
    from tiled_vessel_seg import model_info
    from tiled_vessel_seg.inference import predictor
    model_dir = _model_dir_with_info(tmp_path / "m", model_file="evil.h5")
    marker = tmp_path / "code_ran"
    _save_h5_with_code(model_dir / "evil.h5", marker)
    with pytest.raises(model_info.ModelDirError, match="evil.h5"):
        predictor.load_predictor(str(model_dir))
    assert not marker.exists()
    escape = _model_dir_with_info(tmp_path / "m2", model_file="../m/evil.h5")
    with pytest.raises(model_info.ModelDirError, match="model_file"):
        predictor.load_predictor(str(escape))
    assert not marker.exists()


@pytest.mark.parametrize("fields, field", [
    ({"scale": "x"}, "scale"), ({"tile_size": 64.5}, "tile_size"),
    ({"overlap": True}, "overlap"), ({"threshold": "0.5"}, "threshold"),
    ({"threshold": 1.5}, "threshold"), ({"scale": 0}, "scale"),
    ({"model_file": 3}, "model_file"), ({"precision": None}, "precision"),
    ({"data_ids": {"train": "im0001"}}, "data_ids"), ({"data_ids": []}, "data_ids"),
    ({"config": "x" * 400_000}, "config"), ({"tile_sise": 64}, "tile_sise"),
])
def test_model_info_field_errors_name_the_field(tmp_path, fields, field):
    from tiled_vessel_seg import model_info
    model_dir = _model_dir_with_info(tmp_path / "m", **fields)
    with pytest.raises(model_info.ModelDirError) as refused:
        model_info.read_model_info(str(model_dir))
    message = str(refused.value)
    assert f"'{field}'" in message and str(model_dir / "model_info.json") in message
    assert len(message) < 400 and "\n" not in message


def test_model_info_missing_field_or_not_an_object_is_named(tmp_path):
    import json
    from tiled_vessel_seg import model_info
    (tmp_path / "model_info.json").write_text(json.dumps({"scale": 2}))
    with pytest.raises(model_info.ModelDirError, match="'tile_size' is missing"):
        model_info.read_model_info(str(tmp_path))
    (tmp_path / "model_info.json").write_text("[1, 2]")
    with pytest.raises(model_info.ModelDirError, match="JSON object"):
        model_info.read_model_info(str(tmp_path))


def test_every_model_info_field_has_a_type_check():
    import dataclasses
    from tiled_vessel_seg import model_info
    assert {f.name for f in dataclasses.fields(model_info.ModelInfo)} == set(
        model_info._FIELD_TYPES)  # pylint: disable=protected-access


def test_vessel_evaluate_names_the_file_it_refuses_in_safe_mode(tmp_path):
    import keras
    from tiled_vessel_seg import model_info, model_loading
    model_dir = _model_dir_with_info(tmp_path / "m")
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Lambda(lambda x: x[..., :1])(inp)
    keras.Model(inp, out).save(str(model_dir / "best_model.keras"))
    with pytest.raises(model_info.ModelDirError) as refused:
        model_loading.load_model(str(model_dir), compile=True)  # vessel-evaluate's call
    message = str(refused.value)
    assert message.startswith(f"{model_dir / 'best_model.keras'}: cannot load the model: ")
    assert "Lambda" in message and "\n" not in message


# --- messages: one line, nothing echoed in bulk ---------------------------------------------

@pytest.mark.parametrize("where, text", [
    ("file", "[train]\nepochs = " + "9" * 400_000 + "x\n"),           # not a literal
    ("file", "[train]\nepochs = '" + "x" * 400_000 + "'\n"),          # wrong type
    ("file", "[train]\nepochs = 3\n" + "y" * 400_000 + "\n"),          # not INI
    ("set", "train.epochs='" + "x" * 400_000 + "'"),
    ("set", "nosuchsection.key=" + "x" * 400_000),
    ("set", "train." + "k" * 400_000 + "=1"),
])
def test_config_errors_do_not_echo_a_huge_value(tmp_path, where, text):
    from tiled_vessel_seg.configs import config_file
    path = tmp_path / "big.config"
    if where == "file":
        path.write_text(text)
        args = (str(path),)
    else:
        args = (None, [text])
    with pytest.raises(config_file.ConfigError) as refused:
        config_file.load_config(*args)
    message = str(refused.value)
    assert len(message) < 1000, message[:200]
    if "not a valid INI file" in message:  # a file that is not a config: nothing quoted
        assert "yyyy" not in message
    else:
        assert "characters" in message  # says how long the value was


# --- unusable output locations: one line naming the path and the OS error, exit 2 ----------

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
            "--scale", "1", "--tile_size", "32", "--augment", "none", "--valid_ids", "b",
            "--test_ids", "", "--shards", "1", "--direct_running_mode", "in_memory",
            "--direct_num_workers", "1"]


def _one_error_line(err):
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def test_vessel_preprocess_full_disk_is_one_line_exit_2_and_no_beam_temp(tmp_path, capsys,
                                                                          monkeypatch):
    from apache_beam.io import tfrecordio
    from tiled_vessel_seg.beam_jobs import cli as preprocess_cli

    def full_disk(self, file_handle, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfrecordio._TFRecordSink, "write_encoded_record", full_disk)
    out = tmp_path / "out"
    code = preprocess_cli.main(_small_pairs(tmp_path) + ["--output_dir", str(out)])
    line = _one_error_line(capsys.readouterr().err)
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
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and str(blocker / "out") in line and "Not a directory" in line

    real_makedirs = os.makedirs

    def read_only(path, *a, **k):
        if str(path).startswith(str(tmp_path / "ro")):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_makedirs(path, *a, **k)

    monkeypatch.setattr(os, "makedirs", read_only)
    code = preprocess_cli.main(args + ["--output_dir", str(tmp_path / "ro" / "out")])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 2 and str(tmp_path / "ro" / "out") in line and "Permission denied" in line


def test_output_os_error_is_found_in_a_worker_traceback_text():
    from tiled_vessel_seg.beam_jobs import pipeline
    remote = RuntimeError("Traceback ...\n  File \"tfrecordio.py\", line 128\nOSError: [Errno 28] "
                          "No space left on device [while running 'WriteTrain/Write']")
    found = pipeline.output_os_error(remote)
    assert (found.errno, found.strerror) == (errno.ENOSPC, "No space left on device")
    assert pipeline.output_os_error(RuntimeError("ValueError: bad tile")) is None
    assert pipeline.output_os_error(RuntimeError("[Errno 2] No such file")) is None  # an input


# --- vessel-segment: unusable outputs, oversized photos, messages ---------------------------
# Run in a subprocess: vessel-segment and vessel-preprocess share flag names, so both
# cannot run in one process (cli_app.invoke).

SEGMENT = """
import errno, sys
from tiled_vessel_seg import storage
mode = sys.argv.pop(1)
real_write = storage._write_local
writes = []

def failing_write(tmp, path, data):
    writes.append(path)
    if len(writes) > 1:  # the first file is written, then the disk is full
        with open(tmp, "wb") as f:
            f.write(data[:10])
        raise OSError(errno.ENOSPC if mode == "full" else errno.EACCES,
                      "No space left on device" if mode == "full" else "Permission denied")
    return real_write(tmp, path, data)

if mode != "plain":
    storage._write_local = failing_write
from tiled_vessel_seg.inference import cli
sys.argv[0] = "vessel-segment"
cli.run()
"""


def _segment(mode, *args):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-c", SEGMENT, mode, *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def segment_model_dir(tmp_path_factory):
    import keras
    from tiled_vessel_seg.model_info import ModelInfo, write_model_info
    out = tmp_path_factory.mktemp("segment_model")
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inp)
    keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(x)).save(
        str(out / "best_model.keras"))
    write_model_info(str(out), ModelInfo(tile_size=32, scale=2, overlap=8))
    return out


@pytest.fixture(scope="module")
def photos_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for stem in ("p1", "p2", "p3"):
        cv2.imwrite(str(out / f"{stem}.png"), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    return out


@pytest.mark.parametrize("mode, reason", [("full", "No space left on device"),
                                          ("read_only", "Permission denied")])
def test_vessel_segment_unwritable_output_is_one_line_exit_2(segment_model_dir, photos_dir,
                                                             tmp_path, mode, reason):
    out = tmp_path / "out"
    code, _, err = _segment(mode, "--model_dir", segment_model_dir, "--input", photos_dir,
                            "--output_dir", out, "--save_probabilities")
    line = _one_error_line(err)
    assert code == 2
    assert f"{out / 'p1_probabilities.png'}: cannot write: {reason}" in line
    assert "FAILED" not in err  # the run stopped at the first failed write
    assert sorted(p.name for p in out.iterdir()) == ["p1.png"]  # complete, kept
    assert cv2.imread(str(out / "p1.png")).shape == (40, 50, 3)


def test_vessel_segment_output_under_a_file_is_one_line_exit_2(segment_model_dir, photos_dir,
                                                               tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = _segment("plain", "--model_dir", segment_model_dir, "--input", photos_dir,
                            "--output_dir", blocker / "out")
    line = _one_error_line(err)
    assert code == 2 and str(blocker / "out") in line and "Not a directory" in line


def _png_header_only(width, height):
    """A PNG signature and IHDR declaring width x height RGB, then IEND: no pixel data."""
    import struct
    import zlib

    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_vessel_segment_refuses_a_header_bomb_before_decoding_and_names_it_once(
        segment_model_dir, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    (photos / "bomb.ppm").write_bytes(b"P6\n100000 100000\n255\n" + b"\0" * 30)  # 50 bytes
    (photos / "bomb2.png").write_bytes(_png_header_only(100_000, 100_000))
    (photos / "broken.ppm").write_bytes(b"P6\n10 10\n255\n" + b"\x00" * 7)
    cv2.imwrite(str(photos / "ok.png"), np.full((40, 50, 3), 128, np.uint8))
    code, out, err = _segment("plain", "--model_dir", segment_model_dir, "--input", photos,
                              "--output_dir", tmp_path / "out")
    assert code == 1  # three inputs rejected, the other segmented
    failed = {l.split(":")[0][len("FAILED "):]: l for l in err.splitlines()
              if l.startswith("FAILED")}
    assert set(failed) == {str(photos / n) for n in ("bomb.ppm", "bomb2.png", "broken.ppm")}
    for line in failed.values():
        assert line.count(str(photos)) == 1, line  # the path once, not twice
    assert "100000x100000" in failed[str(photos / "bomb.ppm")]
    png_line = failed[str(photos / "bomb2.png")]
    assert "100000x100000" in png_line and "--max_pixels" in png_line and "GB" in png_line
    assert "truncated" in failed[str(photos / "broken.ppm")]
    assert "OOM" not in err and "[Op:" not in err
    assert (tmp_path / "out" / "ok.png").exists() and "1 written" in out


def test_vessel_segment_max_pixels_counts_the_enlargement_and_can_be_raised(
        segment_model_dir, photos_dir, tmp_path):
    common = ["--model_dir", segment_model_dir, "--input", photos_dir / "p1.png"]
    # 50x40 = 2000 pixels; x2 in the graph (native, model scale 2) = 8000
    code, _, err = _segment("plain", *common, "--output_dir", tmp_path / "b",
                            "--max_pixels", 5000, "--input_scale", "native")
    assert code == 1 and "x2 in the graph: 100x80" in err and "8000 pixels" in err
    code, _, err = _segment("plain", *common, "--output_dir", tmp_path / "c",
                            "--max_pixels", 8000, "--input_scale", "native")
    assert code == 0, err[-2000:]
    assert cv2.imread(str(tmp_path / "c" / "p1.png")).shape[:2] == (40, 50)


def test_a_missing_required_flag_exits_2_not_the_rejected_input_code_1(tmp_path):
    # (no --model is not an error: the shipped model is used; issue 8)
    code, _, err = _segment("plain", "--model_dir", tmp_path, "--input", tmp_path)
    assert code == 2 and _one_error_line(err) == "error: --output_dir is required"


def _tool_run(name, *args):
    import subprocess
    import sys
    path = os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"console script {name} is not installed next to {sys.executable}")
    result = subprocess.run([path, *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    return result.returncode, result.stderr


def test_vessel_synth_and_export_unusable_output_is_one_line_exit_2(segment_model_dir,
                                                                    tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, err = _tool_run("vessel-synth", "--output_dir", blocker / "x", "--num_images", 1,
                          "--size", "64x48")
    assert code == 2 and "Not a directory" in _one_error_line(err)
    (tmp_path / "synth").mkdir()
    code, err = _tool_run("vessel-synth", "--output_dir", tmp_path / "synth", "--num_images",
                          1, "--size", "64x48")
    assert code == 0, err
    code, err = _tool_run("vessel-synth", "--output_dir", tmp_path / "synth", "--num_images",
                          1, "--size", "64x48")  # exists, no --overwrite
    assert code == 2 and "overwrite" in _one_error_line(err)
    code, err = _tool_run("vessel-export", "--model_dir", segment_model_dir, "--output_dir",
                          blocker / "saved")
    line = _one_error_line(err)
    assert code == 2 and str(blocker / "saved") in line and "not a directory" in line

"""vessel-segment (and vessel-synth, vessel-export) on unusable outputs and oversized photos
(issue 11 hardening): one line naming the path and the OS error, exit 2; a header bomb is
refused before decoding and named once; --max_pixels counts the in-graph enlargement."""
import errno
import os

import cv2
import numpy as np
import pytest

from tests.helpers import one_error_line


@pytest.fixture
def segment(capsys, monkeypatch):
    """A function (mode, *args) -> (exit code, stdout, stderr) running vessel-segment in
    this process (cli_app.invoke resets the flags another tool defined). mode "full" or
    "read_only": the first file is written, then every write fails as a full disk or a
    read-only folder fails, leaving a partial temporary file; "plain": writes work."""
    from tiled_vessel_seg import cli_app, storage
    from tiled_vessel_seg.inference import cli

    def run(mode, *args):
        if mode != "plain":
            real_write = storage._write_local  # pylint: disable=protected-access
            writes = []

            def failing_write(tmp, path, data):
                writes.append(path)
                if len(writes) > 1:  # the first file is written, then the disk is full
                    with open(tmp, "wb") as f:
                        f.write(data[:10])
                    raise OSError(errno.ENOSPC if mode == "full" else errno.EACCES,
                                  "No space left on device" if mode == "full"
                                  else "Permission denied")
                return real_write(tmp, path, data)

            monkeypatch.setattr(storage, "_write_local", failing_write)
        capsys.readouterr()
        try:
            code = cli_app.invoke(cli.__name__, cli.__doc__, cli.define_flags, cli.main,
                                  ["vessel-segment", *map(str, args)])
        finally:
            monkeypatch.undo()
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


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
                                                             tmp_path, mode, reason, segment):
    out = tmp_path / "out"
    code, _, err = segment(mode, "--model_dir", segment_model_dir, "--input", photos_dir,
                           "--output_dir", out, "--save_probabilities")
    line = one_error_line(err)
    assert code == 2
    assert f"{out / 'p1_probabilities.png'}: cannot write: {reason}" in line
    assert "FAILED" not in err  # the run stopped at the first failed write
    assert sorted(p.name for p in out.iterdir()) == ["p1.png"]  # complete, kept
    assert cv2.imread(str(out / "p1.png")).shape == (40, 50, 3)


def test_vessel_segment_output_under_a_file_is_one_line_exit_2(segment_model_dir, photos_dir,
                                                               tmp_path, segment):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, _, err = segment("plain", "--model_dir", segment_model_dir, "--input", photos_dir,
                           "--output_dir", blocker / "out")
    line = one_error_line(err)
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
        segment_model_dir, tmp_path, segment):
    photos = tmp_path / "in"
    photos.mkdir()
    (photos / "bomb.ppm").write_bytes(b"P6\n100000 100000\n255\n" + b"\0" * 30)  # 50 bytes
    (photos / "bomb2.png").write_bytes(_png_header_only(100_000, 100_000))
    (photos / "broken.ppm").write_bytes(b"P6\n10 10\n255\n" + b"\x00" * 7)
    cv2.imwrite(str(photos / "ok.png"), np.full((40, 50, 3), 128, np.uint8))
    code, out, err = segment("plain", "--model_dir", segment_model_dir, "--input", photos,
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
        segment_model_dir, photos_dir, tmp_path, segment):
    common = ["--model_dir", segment_model_dir, "--input", photos_dir / "p1.png"]
    # 50x40 = 2000 pixels; x2 in the graph (native, model scale 2) = 8000
    code, _, err = segment("plain", *common, "--output_dir", tmp_path / "b",
                           "--max_pixels", 5000, "--input_scale", "native")
    assert code == 1 and "x2 in the graph: 100x80" in err and "8000 pixels" in err
    code, _, err = segment("plain", *common, "--output_dir", tmp_path / "c",
                           "--max_pixels", 8000, "--input_scale", "native")
    assert code == 0, err[-2000:]
    assert cv2.imread(str(tmp_path / "c" / "p1.png")).shape[:2] == (40, 50)


def test_a_missing_required_flag_exits_2_not_the_rejected_input_code_1(tmp_path, segment):
    # (no --model is not an error: the shipped model is used; issue 8)
    code, _, err = segment("plain", "--model_dir", tmp_path, "--input", tmp_path)
    assert code == 2 and one_error_line(err) == "error: --output_dir is required"


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
    assert code == 2 and "Not a directory" in one_error_line(err)
    (tmp_path / "synth").mkdir()
    code, err = _tool_run("vessel-synth", "--output_dir", tmp_path / "synth", "--num_images",
                          1, "--size", "64x48")
    assert code == 0, err
    code, err = _tool_run("vessel-synth", "--output_dir", tmp_path / "synth", "--num_images",
                          1, "--size", "64x48")  # exists, no --overwrite
    assert code == 2 and "overwrite" in one_error_line(err)
    code, err = _tool_run("vessel-export", "--model_dir", segment_model_dir, "--output_dir",
                          blocker / "saved")
    line = one_error_line(err)
    assert code == 2 and str(blocker / "saved") in line and "not a directory" in line

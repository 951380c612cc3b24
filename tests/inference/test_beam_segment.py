"""vessel-segment-beam (issue 19, section 1): the Beam RunInference job writes what
vessel-segment writes, byte for byte; a corrupt or oversized photo is a dead letter and
the others are written; a run killed with kill -9 leaves only complete files under
final names and a rerun completes it; 2 DirectRunner worker processes.

A tiny random-weight Keras model (tile 32, scale 2: auto decides per photo) and the
session's synthetic 160x140 photos keep it fast."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("keras")
pytest.importorskip("apache_beam")

from tiled_vessel_seg import imaging  # noqa: E402

TILE, SCALE = 32, 2
W, H = 160, 140


@pytest.fixture(scope="module")
def model_dir(make_tiny_model_dir):
    return make_tiny_model_dir(TILE, 8, scale=SCALE, hidden=4, source_sizes=[[W, H]])


@pytest.fixture(scope="module")
def photos(synthetic_stare_dir, tmp_path_factory):
    """4 synthetic photos as PNG (one enlarged x2: auto segments it as enlarged) with
    masks named by stem."""
    root = tmp_path_factory.mktemp("photos")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for n in range(1, 5):
        image_id = f"im{n:04d}"
        photo = imaging.read_image(str(synthetic_stare_dir / "stare-images" / f"{image_id}.ppm.gz"))
        truth = imaging.read_mask(str(synthetic_stare_dir / "labels-ah" / f"{image_id}.ah.ppm.gz"))
        if n == 4:
            photo = imaging.enlarge_image(photo, SCALE)
            truth = np.kron(truth, np.ones((SCALE, SCALE), truth.dtype))
        (root / "images" / f"{image_id}.png").write_bytes(imaging.encode_png(photo))
        (root / "masks" / f"{image_id}.png").write_bytes(imaging.encode_png(truth * 255))
    return root


def _beam(*args):
    from tiled_vessel_seg.inference import beam_cli
    return beam_cli.run_in_process([str(a) for a in args])


def _vessel_segment(*args):
    from tiled_vessel_seg import cli_app
    from tiled_vessel_seg.inference import cli
    return cli_app.invoke(cli.__name__, cli.__doc__, cli.define_flags, cli.main,
                          ["vessel-segment", *[str(a) for a in args]])


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


OUTPUTS = ("--save_probabilities", "--overlay", "--error_map")


def test_beam_outputs_are_vessel_segments_byte_for_byte(model_dir, photos, tmp_path):
    common = ["--model", model_dir, "--input", photos / "images", "--masks_dir",
              photos / "masks", *OUTPUTS]
    assert _vessel_segment(*common, "--output_dir", tmp_path / "segment") == 0
    assert _beam(*common, "--output_dir", tmp_path / "beam",
                 "--direct_running_mode", "in_memory") == 0
    reference, beam = _files(tmp_path / "segment"), _files(tmp_path / "beam")
    assert beam.pop("errors.jsonl") == b""
    json_ref, json_beam = (json.loads(d.pop("metrics.json")) for d in (reference, beam))
    assert sorted(beam) == sorted(reference)
    assert len([n for n in beam if n.endswith("_errors.png")]) == 4
    for name in reference:  # masks, probabilities, previews, overlays, error maps, CSV
        assert beam[name] == reference[name], name
    assert json_beam["images"] == json_ref["images"]
    assert json_beam["summary"] == json_ref["summary"]
    assert json_beam["threshold"] == json_ref["threshold"] == 0.5


def test_bad_photos_are_dead_letters(model_dir, photos, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in (1, 2, 3):
        (inputs / f"im{n:04d}.png").write_bytes((photos / "images" / f"im{n:04d}.png").read_bytes())
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (inputs / "huge.png").write_bytes(imaging.encode_png(np.zeros((300, 400, 3), np.uint8)))
    out = tmp_path / "out"
    # 300x400 = 120000 px; the good photos are 160x140 x2 (auto: native) = 89600 px
    assert _beam("--model", model_dir, "--input", inputs, "--output_dir", out,
                 "--max_pixels", 100000, "--direct_running_mode", "in_memory") == 1
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {os.path.basename(e["path"]) for e in errors} == {"corrupt.png", "huge.png"}
    reasons = {os.path.basename(e["path"]): e["reason"] for e in errors}
    assert "100000" in reasons["huge.png"]
    assert sorted(p.name for p in out.glob("*.png")) == ["im0001.png", "im0002.png", "im0003.png"]


def _many_photos(photos, folder, count):
    """`count` photos 3x the synthetic size (so that each takes a while), flipped copies."""
    folder.mkdir()
    sources = [imaging.read_image(str(photos / "images" / f"im{n:04d}.png")) for n in (1, 2, 3)]
    for k in range(count):
        image = np.kron(sources[k % 3], np.ones((3, 3, 1), np.uint8))
        image = image[:, ::-1] if k % 2 else image
        (folder / f"p{k:03d}.png").write_bytes(imaging.encode_png(np.ascontiguousarray(image)))


@pytest.mark.slow  # two runs in subprocesses: ~70 s on the loaded 2-core machine
def test_rerun_after_kill_9(model_dir, photos, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    _many_photos(photos, inputs, 24)
    command = [sys.executable, "-m", "tiled_vessel_seg.inference.beam_cli", "--model",
               model_dir, "--input", str(inputs), "--output_dir", str(out),
               "--save_probabilities", "--input_scale", "enlarged",
               "--direct_running_mode", "in_memory"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)

    def finished():
        """Photos with all their outputs: one killed between its mask and its
        probabilities is not finished, and the rerun writes it again."""
        return sorted(p.name for p in out.glob("p*[0-9].png")
                      if (out / f"{p.stem}_probabilities.png").exists())

    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if out.is_dir() and len(finished()) >= 3:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = finished()
    assert 3 <= len(done) < 24
    # Reference: the same photos through vessel-segment's predictor, in this process.
    from tiled_vessel_seg.inference import predictor as predictor_lib
    from tiled_vessel_seg.inference import tiling
    predictor = predictor_lib.load_predictor(model_dir, input_scale="enlarged",  # the tool's grid
                                             min_overlap=tiling.DEFAULT_MIN_OVERLAP)
    expected = {}
    for k in range(24):
        image = imaging.read_image(str(inputs / f"p{k:03d}.png"))
        probabilities, mask = (t.numpy() for t in predictor(image))
        expected[f"p{k:03d}.png"] = (mask, probabilities)
        expected[f"p{k:03d}_probabilities.png"] = (
            np.round(probabilities * 65535).astype(np.uint16), probabilities)

    def check(path):
        """Complete (decodes whole, right shape and dtype) and the predictor's pixels: in
        another process the convolutions may differ by an ulp, so probabilities within
        one 16-bit step and masks equal away from the threshold."""
        array, probabilities = expected[path.name]
        written = _png(path)
        assert written is not None and written.shape == array.shape, path
        assert written.dtype == array.dtype, path
        if path.name.endswith("_probabilities.png"):
            assert np.abs(written.astype(int) - array).max() <= 1, path
        else:
            decided = np.abs(probabilities - 0.5) > 1e-4
            np.testing.assert_array_equal(written[decided], array[decided])

    for path in out.iterdir():  # every file under a final name is complete and right
        if path.name in expected:
            check(path)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{24 - len(done)} written, {len(done)} skipped" in result.stdout
    for name in expected:
        check(out / name)


def _png(path):
    import cv2
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)


@pytest.mark.slow  # 2 worker processes each load TensorFlow: ~60 s on 2 loaded cores
def test_two_direct_runner_workers(model_dir, photos, tmp_path):
    out = tmp_path / "out"
    assert _beam("--model", model_dir, "--input", photos / "images", "--output_dir", out,
                 "--direct_num_workers", 2, "--direct_running_mode", "multi_processing") == 0
    assert _vessel_segment("--model", model_dir, "--input", photos / "images",
                           "--output_dir", tmp_path / "segment") == 0
    for n in range(1, 5):
        name = f"im{n:04d}.png"
        assert (out / name).read_bytes() == (tmp_path / "segment" / name).read_bytes()
    assert (out / "errors.jsonl").read_text() == ""


def test_refuses_to_write_over_its_inputs(model_dir, photos, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    photo = (photos / "images" / "im0001.png").read_bytes()
    (inputs / "im0001.png").write_bytes(photo)
    assert _beam("--model", model_dir, "--input", inputs, "--output_dir", inputs) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert sorted(p.name for p in inputs.iterdir()) == ["im0001.png"]
    assert (inputs / "im0001.png").read_bytes() == photo

"""Out-of-range numbers are one line and exit 2, before any work (issue 18.5): thresholds
outside (0, 1) in vessel-segment, vessel-export and the API; learning_rate <= 0; a
dilation wider than the tile; a synthetic size that does not fit in memory."""
from __future__ import annotations

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg import cli_app  # noqa: E402
from tiled_vessel_seg.configs import ConfigError, load_config, schema  # noqa: E402
from tiled_vessel_seg.inference import api, cli, export  # noqa: E402
from tiled_vessel_seg.pipeline import train_cli  # noqa: E402
from tiled_vessel_seg.synthetic import cli as synth_cli  # noqa: E402
from tiled_vessel_seg.synthetic import stare_layout  # noqa: E402

TILE = 32
BAD_THRESHOLDS = ["nan", "2.0", "-1", "0", "1"]


@pytest.fixture(scope="module")
def model_dir(make_tiny_model_dir):
    return make_tiny_model_dir(tile=TILE, overlap=8)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    import cv2
    folder = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(folder / "a.png"), np.full((40, 48, 3), 120, np.uint8))
    return str(folder / "a.png")


def _invoke(module, argv):
    """The tool's exit status in this process (a bad flag value exits from the parser)."""
    try:
        return cli_app.invoke(module.__name__, module.__doc__, module.define_flags,
                              module.main, argv)
    except SystemExit as e:
        return e.code


def _errors(err):
    return [line for line in err.splitlines() if line.startswith("error")]


@pytest.mark.parametrize("threshold", BAD_THRESHOLDS)
def test_vessel_segment_refuses_a_threshold_outside_0_1(model_dir, photo, tmp_path, capsys,
                                                         threshold):
    out = tmp_path / "out"
    status = _invoke(cli, [
        "vessel-segment", "--model_dir", model_dir, "--input", photo, "--output_dir", str(out),
        f"--threshold={threshold}"])
    errors = _errors(capsys.readouterr().err)
    assert status == 2
    assert len(errors) == 1 and "--threshold" in errors[0] and "(0, 1)" in errors[0], errors
    assert not out.exists()


@pytest.mark.parametrize("threshold", ["nan", "2.0", "-1"])
def test_vessel_export_refuses_a_threshold_outside_0_1(model_dir, tmp_path, capsys, threshold):
    out = tmp_path / "export"
    status = _invoke(export, [
        "vessel-export", "--model_dir", model_dir, "--output_dir", str(out),
        f"--threshold={threshold}"])
    errors = _errors(capsys.readouterr().err)
    assert status == 2 and len(errors) == 1 and "(0, 1)" in errors[0], errors
    assert not out.exists()


@pytest.mark.parametrize("threshold", [float("nan"), 2.0, -1.0, 0.0, 1.0])
def test_the_api_refuses_a_threshold_outside_0_1(model_dir, threshold):
    image = np.full((40, 48, 3), 120, np.uint8)
    with pytest.raises(ValueError, match=r"threshold must be a number in \(0, 1\)"):
        api.segment(image, model_dir, threshold=threshold, input_scale="native")


@pytest.mark.parametrize("override", ["tiledinfer.threshold=2.0", "tiledinfer.threshold=0.0",
                                      "model.learning_rate=0", "model.learning_rate=-1e-3",
                                      "model.clipvalue=0.0", "model.dilation=(0,1)",
                                      "train.reducer_factor=1.5", "tiledinfer.batch_size=0"])
def test_config_refuses_out_of_range_values(override):
    key = override.split("=")[0].split(".")[1]
    with pytest.raises(ConfigError, match=key):
        load_config(None, [override])


def test_dilation_wider_than_the_tile_is_refused_whatever_the_order_of_the_keys():
    with pytest.raises(ConfigError, match=r"dilation \(100000, 100000\).*spans 800001 px"):
        load_config(None, ["model.dilation=(100000,100000)"])
    # the tile size decides: (9-1) x 100 + 1 = 801 px fits a 1024 tile, not a 512 one
    assert load_config(None, ["model.dilation=(100,100)", "preprocess.tile_size=1024"])
    with pytest.raises(ConfigError, match="801 px"):
        load_config(None, ["model.dilation=(100,100)"])


@pytest.mark.parametrize("override", ["model.learning_rate=0", "model.dilation=(100000,100000)"])
def test_vessel_train_refuses_before_making_the_model_dir(tmp_path, capsys, override):
    model_dir = tmp_path / "model"
    status = train_cli.main(["--data_dir", str(tmp_path / "data"), "--model_dir",
                             str(model_dir), "--set", override])
    errors = _errors(capsys.readouterr().err)
    assert status == 2 and len(errors) == 1, errors
    assert override.split("=")[0].split(".")[1] in errors[0]
    assert not model_dir.exists()


def test_vessel_synth_refuses_a_size_that_does_not_fit_in_memory(tmp_path, capsys):
    out = tmp_path / "synth"
    code = cli_app.invoke(synth_cli.__name__, synth_cli.__doc__, synth_cli.define_flags,
                          synth_cli.main, ["vessel-synth", "--output_dir", str(out),
                                           "--size", "100000x100000", "--num_images", "1"])
    errors = _errors(capsys.readouterr().err)
    assert code == 2 and len(errors) == 1 and "GiB" in errors[0], errors
    assert not out.exists()


def test_memory_check_uses_the_available_memory(monkeypatch, tmp_path):
    monkeypatch.setattr(schema, "available_memory_bytes", lambda: 10 * 2**20)  # 10 MiB
    with pytest.raises(schema.TooLargeError, match="needs about"):
        stare_layout.write_synthetic_stare(str(tmp_path / "s"), 1, width=400, height=300)
    assert not os.path.exists(tmp_path / "s")
    stare_layout.write_synthetic_stare(str(tmp_path / "t"), 1, width=200, height=100)  # fits

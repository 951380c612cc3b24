"""`--set tiledinfer.*` and a --config's [tiledinfer] override only the keys they name
(issue 18.6): `--set tiledinfer.threshold=0.4` on a model whose model_info.json says
overlap 12 used the default overlap 64 and failed on a 32 px tile."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg import cli_app  # noqa: E402
from tiled_vessel_seg.configs import config_file  # noqa: E402
from tiled_vessel_seg.inference import cli  # noqa: E402

TILE = 32


@pytest.fixture(scope="module")
def model_dir(make_tiny_model_dir):
    return make_tiny_model_dir(tile=TILE, overlap=12)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), np.uint8)
    cv2.imwrite(str(folder / "a.png"), image)
    return str(folder / "a.png")


def _segment(model_dir, photo, out, capsys, *extra):
    status = cli_app.invoke(cli.__name__, cli.__doc__, cli.define_flags, cli.main, [
        "vessel-segment", "--model_dir", model_dir, "--input", photo, "--output_dir", str(out),
        "--input_scale", "native", "--save_probabilities", *extra])
    captured = capsys.readouterr()
    line = next((l for l in captured.out.splitlines() if l.startswith("segmenting")), "")
    return status, line, captured.err


def _grid(line):
    """'min overlap 8' / 'overlap 12' and the threshold of the 'segmenting' line."""
    grid = re.search(r"(min overlap|overlap) (\d+), tiler", line)
    threshold = re.search(r"threshold ([0-9.]+)", line)
    return (grid.group(1), int(grid.group(2))), float(threshold.group(1))


def test_set_threshold_keeps_the_grid_the_model_gives(model_dir, photo, tmp_path, capsys):
    status, plain, err = _segment(model_dir, photo, tmp_path / "plain", capsys)
    assert status == 0, err
    status, with_set, err = _segment(model_dir, photo, tmp_path / "set", capsys,
                                     "--set", "tiledinfer.threshold=0.4")
    assert status == 0, err
    assert _grid(with_set) == (_grid(plain)[0], 0.4)
    probabilities = [cv2.imread(str(tmp_path / run / "a_probabilities.png"), cv2.IMREAD_UNCHANGED)
                     for run in ("plain", "set")]
    np.testing.assert_array_equal(probabilities[0], probabilities[1])


def test_set_overlap_only_keeps_the_models_threshold(model_dir, photo, tmp_path, capsys):
    status, line, err = _segment(model_dir, photo, tmp_path / "o", capsys,
                                 "--set", "tiledinfer.overlap=4")
    assert status == 0, err
    assert _grid(line) == (("overlap", 4), 0.5)


def test_a_config_file_overrides_only_the_keys_it_names(model_dir, photo, tmp_path, capsys):
    config = tmp_path / "c.config"
    config.write_text("[tiledinfer]\nthreshold = 0.3\nblend = 'linear'\n")
    status, line, err = _segment(model_dir, photo, tmp_path / "c", capsys,
                                 "--config", str(config))
    assert status == 0, err
    status, plain, _ = _segment(model_dir, photo, tmp_path / "p", capsys)
    assert _grid(line) == (_grid(plain)[0], 0.3)
    assert "blend linear" in line


def test_given_keys_names_file_and_override_keys_with_aliases(tmp_path):
    config = tmp_path / "c.config"
    config.write_text("[tiledinfer]\noverlapping = 16\n[train]\nepochs = 3\n")
    assert config_file.given_keys(str(config), ["tiledinfer.threshold=0.4"]) == {
        ("tiledinfer", "overlap"), ("train", "epochs"), ("tiledinfer", "threshold")}
    assert config_file.given_keys(None, []) == set()

"""vessel-segment never writes an input (issue 18.4): an output path that is an input path
(photo, ground truth, FOV mask; compared as resolved real paths) is refused with exit 2
before anything is written, with or without --overwrite."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.inference import cli, segment  # noqa: E402

TILE = 32


@pytest.fixture(scope="module")
def model_dir(make_tiny_model_dir):
    return make_tiny_model_dir(tile=TILE, overlap=8)


def _photo(path, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), np.uint8)
    assert cv2.imwrite(str(path), image)
    return path.read_bytes()


def _run(model_dir, *args):
    return cli_main(["--model_dir", model_dir, "--input_scale", "native",
                     *args])


def cli_main(argv):
    from tiled_vessel_seg import cli_app
    return cli_app.invoke(cli.__name__, cli.__doc__, cli.define_flags, cli.main,
                          ["vessel-segment", *argv])


@pytest.mark.parametrize("overwrite", [True, False])
def test_output_dir_equal_to_the_photos_folder_is_refused(model_dir, tmp_path, capsys,
                                                           overwrite):
    photos = tmp_path / "photos"
    photos.mkdir()
    before = {name: _photo(photos / name, i) for i, name in enumerate(["a.png", "b.png"])}
    status = _run(model_dir, "--input", str(photos), "--output_dir", str(photos),
                  *(["--overwrite"] if overwrite else []))
    err = capsys.readouterr().err
    assert status == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and str(photos / "a.png") in errors[0], err
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # nothing written


def test_same_folder_through_a_symlink_is_refused(model_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    before = _photo(photos / "a.png")
    (tmp_path / "link").symlink_to(photos)
    status = _run(model_dir, "--input", str(photos / "a.png"), "--output_dir",
                  str(tmp_path / "link"), "--overwrite")
    assert status == 2
    assert (photos / "a.png").read_bytes() == before


def test_an_output_that_is_the_ground_truth_is_refused(model_dir, tmp_path):
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    photos.mkdir()
    masks.mkdir()
    _photo(photos / "a.jpg")
    truth = np.zeros((40, 48), np.uint8)
    truth[10:20] = 255
    cv2.imwrite(str(masks / "a_overlay.png"), truth)
    # the mask of a.jpg is masks/a_overlay.png, and --overlay writes <stem>_overlay.png
    with pytest.raises(segment.InputOverwriteError, match="a_overlay.png"):
        segment.check_outputs_are_not_inputs(
            [str(photos / "a.jpg")], str(masks), {"a": str(masks / "a_overlay.png")},
            overlay=True)


def test_a_separate_output_folder_still_works(model_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    before = _photo(photos / "a.png")
    assert _run(model_dir, "--input", str(photos), "--output_dir", str(tmp_path / "out")) == 0
    assert (photos / "a.png").read_bytes() == before
    assert os.path.exists(tmp_path / "out" / "a.png")

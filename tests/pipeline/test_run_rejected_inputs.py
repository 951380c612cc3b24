"""vessel-run follows the exit-status table when preprocessing rejects an input
(issue 18.7): the input is named, the other stages still run, and the status is 1
(0 with --allow_errors), as for vessel-preprocess."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO_ROOT
from tiled_vessel_seg.pipeline import run as run_lib

STAGES = ["--config", str(REPO_ROOT / "configs" / "demo.config"), "--stages", "preprocess", "--set", "preprocess.scale=1",
          "--set", "preprocess.tile_size=64", "--set", "preprocess.augmentations=()",
          "--set", "preprocess.split='train=0.5,valid=0.25,test=0.25'"]


@pytest.fixture
def stare_with_a_corrupt_photo(synthetic_stare_dir, tmp_path):
    root = tmp_path / "stare"
    shutil.copytree(synthetic_stare_dir, root)
    corrupt = root / "stare-images" / "im0005.ppm.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    shutil.copy(root / "labels-ah" / "im0001.ah.ppm.gz", root / "labels-ah" / "im0005.ah.ppm.gz")
    return root, corrupt


@pytest.mark.parametrize("allow_errors", [False, True])
def test_a_rejected_input_is_named_and_exits_1(stare_with_a_corrupt_photo, tmp_path, capsys,
                                               allow_errors):
    root, corrupt = stare_with_a_corrupt_photo
    workdir = tmp_path / "run"
    status = run_lib.main(["--workdir", str(workdir), "--stare_dir", str(root), *STAGES,
                           *(["--allow_errors"] if allow_errors else [])])
    captured = capsys.readouterr()
    assert status == (0 if allow_errors else 1), captured.err
    assert str(corrupt) in captured.out  # named where it happened
    errors = [json.loads(line) for line in open(workdir / "data" / "errors.jsonl")]
    assert [e["path"] for e in errors] == [str(corrupt)]
    info = json.load(open(workdir / "data" / "dataset_info.json"))  # the rest is written
    assert sorted(i for s in info["splits"].values() for i in s["image_ids"]) == [
        "im0001", "im0002", "im0003", "im0004"]
    if not allow_errors:
        assert "1 input(s) rejected" in captured.err and "--allow_errors" in captured.err

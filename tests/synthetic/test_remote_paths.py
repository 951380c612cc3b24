"""synthetic/ on remote paths: vessel-synth and the CHASE_DB1-layout writer on
TensorFlow's in-memory filesystem (ram://, the tf.io.gfile code gs:// goes through, with
no network) write byte for byte what they write to a local folder."""
from __future__ import annotations


import pytest

from tests.helpers import ram_dir, tree
from tiled_vessel_seg import cli_app, storage
from tiled_vessel_seg.synthetic import chase_layout
from tiled_vessel_seg.synthetic import cli as synth_cli

pytest.importorskip("tensorflow")  # ram:// is TensorFlow's filesystem


def vessel_synth(*args: str) -> int:
    return cli_app.invoke(synth_cli.__name__, synth_cli.__doc__, synth_cli.define_flags,
                          synth_cli.main, ["vessel-synth", *args])


def test_vessel_synth_to_ram_writes_the_local_files_and_refuses_to_overwrite(tmp_path,
                                                                             capsys):
    local, remote = str(tmp_path / "stare"), ram_dir("stare")
    for out in (local, remote):
        assert vessel_synth("--output_dir", out, "--num_images", "2", "--size", "48x40",
                            "--seed", "1") == 0
    expected = tree(local)
    assert sorted(expected) == ["labels-ah/im0001.ah.ppm.gz", "labels-ah/im0002.ah.ppm.gz",
                                "stare-images/im0001.ppm.gz", "stare-images/im0002.ppm.gz"]
    assert tree(remote) == expected
    capsys.readouterr()
    assert vessel_synth("--output_dir", remote, "--num_images", "1", "--size", "48x40") == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and f"{remote}/stare-images/im0001.ppm.gz" in errors[0]
    assert tree(remote) == expected  # nothing replaced


def test_chase_layout_to_ram_writes_the_local_files(tmp_path):
    local, remote = str(tmp_path / "chase"), ram_dir("chase")
    ids = chase_layout.write_synthetic_chase(local, 1, width=48, height=40, seed=2)
    assert chase_layout.write_synthetic_chase(remote, 1, width=48, height=40, seed=2) == ids
    expected = tree(local)
    assert sorted(expected) == sorted(f"{i}{suffix}" for i in ("Image_01L", "Image_01R")
                                      for suffix in (".jpg", "_1stHO.png", "_2ndHO.png"))
    assert tree(remote) == expected

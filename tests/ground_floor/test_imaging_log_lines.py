"""Log lines stay one line per input and say something useful (issue 18, minor): a file
name with a newline is escaped, and a reason never shows `<_io.BytesIO object at 0x...>`."""
from __future__ import annotations

import re

import pytest

from tiled_vessel_seg import imaging
from tiled_vessel_seg.beam_jobs import pipeline


@pytest.mark.parametrize("name, data", [("photo.gif", b"GIF89a\x00garbage"),
                                        ("photo.tif", b"II*\x00garbage"),
                                        ("photo.bmp", b"BM garbage")])
def test_a_reason_names_no_python_object(name, data):
    with pytest.raises(imaging.ImageReadError) as error:
        imaging.decode_image_bytes(name, data)
    assert not re.search(r"object at 0x", str(error.value)), str(error.value)
    assert str(error.value).startswith(f"{name}: ")


def test_one_line_escapes_control_characters_and_keeps_other_text():
    assert imaging.one_line("a\nb\rc\td\x00é.png") == "a\\nb\\rc\\td\\x00é.png"
    assert imaging.one_line("plain/path with spaces.png") == "plain/path with spaces.png"


def test_an_image_error_for_a_name_with_a_newline_is_one_line():
    with pytest.raises(imaging.ImageReadError) as error:
        imaging.decode_image_bytes("evil\nINFO: all good.png", b"not a png")
    assert "\n" not in str(error.value) and "evil\\nINFO: all good.png" in str(error.value)
    assert error.value.path == "evil\nINFO: all good.png"  # the path itself is kept


def test_preprocess_summary_prints_one_line_per_rejected_input():
    summary = pipeline.JobSummary(
        info=None, images_found=2, images_written=0, tiles_kept=0, tiles_dropped=0,
        augmented=0, errors=[{"path": "a\nFAKE LINE.png", "stage": "read",
                              "reason": "bad\nreason"}], output_dir="out")
    lines = pipeline.format_summary(summary).splitlines()
    rejected = [line for line in lines if "FAKE LINE" in line]
    assert len(rejected) == 1 and "a\\nFAKE LINE.png: bad\\nreason" in rejected[0]


def test_vessel_segment_failed_line_is_one_line(tmp_path, capsys):
    keras = pytest.importorskip("keras")
    from tiled_vessel_seg import cli_app
    from tiled_vessel_seg.inference import cli
    from tiled_vessel_seg.model_info import ModelInfo, write_model_info
    inp = keras.Input((16, 16, 3))
    model = keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(inp))
    (tmp_path / "m").mkdir()
    model.save(str(tmp_path / "m" / "best_model.keras"))
    write_model_info(str(tmp_path / "m"), ModelInfo(tile_size=16, scale=1, overlap=4))
    bad = tmp_path / "in" / "x\nFAKE: segmented fine.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png")
    status = cli_app.invoke(cli.__name__, cli.__doc__, cli.define_flags, cli.main, [
        "vessel-segment", "--model_dir", str(tmp_path / "m"), "--input", str(bad),
        "--output_dir", str(tmp_path / "out"), "--input_scale", "native"])
    err = capsys.readouterr().err
    assert status == 1
    assert not any(line.startswith("FAKE") for line in err.splitlines()), err
    assert any("x\\nFAKE: segmented fine.png" in line for line in err.splitlines()), err

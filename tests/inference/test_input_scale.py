"""`--input_scale auto`: the per-image decision from the training photos' sizes."""
import pytest

from tiled_vessel_seg.inference.input_scale import decide_input_scale

STARE = [[700, 605]]


@pytest.mark.parametrize("size, expected, fits", [
    ((700, 605), "native", True),            # a STARE photograph as shipped
    ((3500, 3025), "enlarged", True),        # the 5x enlarged JPEGs
    ((760, 640), "native", True),            # another camera, similar size
    ((3000, 2800), "enlarged", True),
    ((1400, 1210), "native", False),         # 2x native, 0.4x enlarged: fits neither
    ((300, 260), "native", False),           # far too small for both
    ((9000, 8000), "enlarged", False),
])
def test_auto_scale_decision(size, expected, fits):
    d = decide_input_scale(size[0], size[1], 5, STARE)
    assert (d.input_scale, d.fits) == (expected, fits)
    assert ("WARNING" in d.reason) == (not fits)
    assert d.reason.startswith(expected)


def test_nearest_of_several_source_sizes():
    sizes = [[565, 584], [999, 960], [3504, 2336]]  # DRIVE, CHASE_DB1, HRF
    assert decide_input_scale(999, 960, 2, sizes).input_scale == "native"
    assert decide_input_scale(1130, 1168, 2, sizes) == decide_input_scale(1130, 1168, 2, sizes)
    d = decide_input_scale(1130, 1168, 2, sizes)  # DRIVE x2: exactly an enlarged size
    assert d.input_scale == "enlarged" and d.fits and "565x584 x2 = 1130x1168" in d.reason


def test_scale_one_and_models_without_recorded_sizes():
    assert decide_input_scale(1234, 999, 1, STARE).input_scale == "native"
    d = decide_input_scale(700, 605, 5, [])
    assert d.input_scale == "enlarged" and not d.fits and "--input_scale native" in d.reason


def test_source_sizes_round_trip_and_are_checked(tmp_path):
    import dataclasses
    import json
    from tiled_vessel_seg import model_info
    info = model_info.ModelInfo(tile_size=32, scale=5, source_sizes=[[700, 605]])
    model_info.write_model_info(str(tmp_path), info)
    assert model_info.read_model_info(str(tmp_path)).source_sizes == [[700, 605]]
    raw = dataclasses.asdict(info)
    raw["source_sizes"] = [[700, "605"]]
    (tmp_path / model_info.INFO_FILE).write_text(json.dumps(raw))
    with pytest.raises(model_info.ModelDirError, match="'source_sizes'"):
        model_info.read_model_info(str(tmp_path))
    raw.pop("source_sizes")  # model dirs written before the field existed still read
    (tmp_path / model_info.INFO_FILE).write_text(json.dumps(raw))
    assert model_info.read_model_info(str(tmp_path)).source_sizes == []

"""model_info.json is read defensively (issue 11 hardening): model_file must name a .keras
file inside the model dir, and every field error names the field and the file in one line."""
import os

import pytest

from tests.helpers import model_dir_with_info


@pytest.mark.parametrize("model_file", [
    "../best_model.keras", "/etc/shadow.keras", "sub/best_model.keras", "..\\best.keras",
    "gs://bucket/m.keras", "evil.h5", "best_model.hdf5", "saved_model", ".keras"])
def test_model_file_must_be_a_keras_file_inside_the_model_dir(tmp_path, model_file):
    from tiled_vessel_seg import model_info
    model_dir = model_dir_with_info(tmp_path / "m", model_file=model_file)
    with pytest.raises(model_info.ModelDirError, match="model_file") as refused:
        model_info.read_model_info(str(model_dir))
    assert str(model_dir / "model_info.json") in str(refused.value)
    assert repr(model_file) in str(refused.value)
    built = model_info.ModelInfo(tile_size=32, scale=2, model_file=model_file)
    with pytest.raises(model_info.ModelDirError, match="model_file"):
        built.model_path(str(model_dir))
    assert model_info.ModelInfo(tile_size=32, scale=2).model_path("m") == os.path.join(
        "m", "best_model.keras")


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
    model_dir = model_dir_with_info(tmp_path / "m", **fields)
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

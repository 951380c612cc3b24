"""dataset_info.json: typed parameters, a JSON round trip, and files written before the
typed fields existed."""
from __future__ import annotations

import json

import pytest

from tiled_vessel_seg.tfrecords import dataset_info as info_lib


def test_parameters_are_typed_and_the_json_stays_flat(tmp_path):
    info = info_lib.DatasetInfo(
        schema_version=1, compression="none",
        parameters={"scale": 5, "tile_size": 512, "stare_dir": "/data/stare",
                    "split_assignment": {"im0001": "train", "im0002": "valid"}},
        splits={"train": info_lib.SplitInfo(["im0001"], 3, 0, 3, [info_lib.shard_name("train", 0, 1)])})
    assert info.parameters.tile_size == 512 and info.parameters.scale == 5
    assert info.parameters.split_assignment == {"im0001": "train", "im0002": "valid"}
    info_lib.write_dataset_info(str(tmp_path), info)
    raw = json.loads((tmp_path / info_lib.INFO_FILE).read_text())
    assert raw["parameters"] == {"scale": 5, "tile_size": 512, "stare_dir": "/data/stare",
                                 "split_assignment": {"im0001": "train", "im0002": "valid"}}
    assert raw["splits"]["train"]["shards"] == ["train/train-00000-of-00001.tfrecord"]
    back = info_lib.read_dataset_info(str(tmp_path))
    assert back == info and back.parameters.values["stare_dir"] == "/data/stare"
    assert [p for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_missing_typed_keys_take_defaults_and_bad_ones_are_named(tmp_path):
    raw = {"schema_version": 1, "compression": "none", "parameters": {},
           "splits": {"train": {"image_ids": ["a"], "tiles": 1, "augmented_tiles": 0,
                                "records": 1, "shards": []}}}
    (tmp_path / info_lib.INFO_FILE).write_text(json.dumps(raw))
    params = info_lib.read_dataset_info(str(tmp_path)).parameters
    assert (params.tile_size, params.scale, params.split_assignment) == (None, 1, {})
    raw["parameters"] = {"tile_size": "big"}
    (tmp_path / info_lib.INFO_FILE).write_text(json.dumps(raw))
    with pytest.raises(info_lib.DatasetError, match="not a valid dataset_info.json"):
        info_lib.read_dataset_info(str(tmp_path))

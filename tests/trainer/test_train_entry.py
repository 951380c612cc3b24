"""trainer/train.py's entry point: train(config: Config, data_dir, model_dir) builds the
model for the tiles of the dataset it trains on (dataset_info.json), whatever the config's
[preprocess] tile_size (issue 20 item 4)."""
import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import ConfigError, load_config  # noqa: E402
from tiled_vessel_seg.pipeline import train_cli  # noqa: E402
from tiled_vessel_seg.tfrecords import schema  # noqa: E402
from tiled_vessel_seg.trainer import train as train_lib  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

# A tiny model; no [preprocess] tile_size, so the config says 512 px (the default).
TINY = ["model.base_filters=2", "model.num_layers=2", "model.base_kernels=(3,3)",
        "model.dilation=(1,1)", "model.dropout_rate=0.0", "train.batch_size=2",
        "train.steps_per_epoch=2", "train.epochs=1", "tiledinfer.overlap=8"]


@pytest.fixture(scope="module")
def data_64(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tiles_64"))
    write_fake_dataset(out, tile_size=64, tiles={"train": 4, "valid": 2, "test": 2},
                       shards=1, seed=2)
    return out


def test_vessel_train_takes_the_tile_size_from_the_dataset(data_64, tmp_path, capsys):
    # The old trainer refused: "tiles are 64x64 but the model input ([preprocess]
    # tile_size) is 512x512; set them equal (e.g. --set preprocess.tile_size=64)".
    assert load_config(None, TINY).preprocess.tile_size == 512
    model_dir = tmp_path / "model"
    code = train_cli.main(["--data_dir", data_64, "--model_dir", str(model_dir),
                           "--precision", "float32", "--keras_verbose", "0"]
                          + sum((["--set", s] for s in TINY), []))
    assert code == 0, capsys.readouterr().err
    model = keras.models.load_model(os.path.join(model_dir, "best_model.keras"),
                                    safe_mode=True)
    assert tuple(model.input_shape) == (None, 64, 64, 3)
    # The saved model segments a 64 px tile of the dataset's kind to a 64 px map.
    tile = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    assert model.predict(tile, verbose=0).shape == (1, 64, 64, 1)
    import json
    info = json.loads((model_dir / "model_info.json").read_text())
    assert info["tile_size"] == 64
    assert info["config"]["preprocess"]["tile_size"] == 64  # the config as trained


def test_with_dataset_input_sets_the_model_input_and_keeps_the_rest(data_64):
    from tiled_vessel_seg.tfrecords import dataset_info
    config = load_config(None, TINY + ["model.image_channels=1"])
    info = dataset_info.read_dataset_info(data_64)
    fitted = train_lib.with_dataset_input(config, data_64, info)
    assert (fitted.model.image_height, fitted.model.image_width) == (64, 64)
    assert fitted.model.image_channels == schema.IMAGE_CHANNELS == 3  # records are RGB
    assert fitted.preprocess.tile_size == 64
    assert fitted.train == config.train and fitted.tiledinfer == config.tiledinfer
    assert fitted.model.base_filters == config.model.base_filters


def test_a_kernel_wider_than_the_dataset_tiles_is_one_config_error(tmp_path):
    data = str(tmp_path / "tiles_16")
    write_fake_dataset(data, tile_size=16, tiles={"train": 2, "valid": 2}, shards=1)
    # (9 - 1) x 3 + 1 = 25 px: fits the config's 512 px tile, not the dataset's 16 px one
    config = load_config(None, ["model.base_kernels=(9,9)", "model.dilation=(3,3)",
                                "tiledinfer.overlap=4"])
    with pytest.raises(ConfigError, match=r"dataset_info.json: tiles are 16x16: .*spans 25 px"):
        train_lib.train(config, data, str(tmp_path / "model"), verbose=0)
    assert not (tmp_path / "model").exists()

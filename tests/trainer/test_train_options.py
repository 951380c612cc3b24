"""vessel-train with the recipe options: W-Net, cosine schedule, threshold chosen on the
validation tiles, --deterministic (tiny synthetic shards, one replica)."""
import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import load_config  # noqa: E402
from tiled_vessel_seg.tfrecords import reader  # noqa: E402
from tiled_vessel_seg import model_info as model_info_lib  # noqa: E402
from tiled_vessel_seg.trainer import train as train_lib  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

WNET = ["model.image_height=32", "model.image_width=32", "model.base_filters=4",
        "model.num_layers=2", "model.base_kernels=(3,3)", "model.dilation=(1,1)",
        "model.learning_rate=0.01", "model.dropout_rate=0.0", "model.architecture='wnet'",
        "model.input_standardization='per_tile'", "train.batch_size=2",
        "train.steps_per_epoch=6", "train.epochs=2", "train.lr_schedule='cosine'",
        "train.cosine_cycle_epochs=1", "train.select_threshold=True",
        "train.deterministic=True", "tiledinfer.overlapping=8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shards"))
    write_fake_dataset(out, tile_size=32, tiles={"train": 12, "valid": 4}, shards=1,
                       scale=1, seed=2)
    return out


def test_wnet_cosine_trains_saves_one_output_and_stores_the_valid_threshold(data_dir,
                                                                              tmp_path):
    config = load_config(None, WNET)
    history = train_lib.train(config, data_dir, str(tmp_path), precision="float32",
                              verbose=0)
    assert len(history["loss"]) == 2
    model = keras.models.load_model(os.path.join(tmp_path, "best_model.keras"),
                                    safe_mode=True, compile=False)
    assert tuple(model.output_shape) == (None, 32, 32, 1)
    # The threshold in model_info.json maximises F1 over the validation pixels (checked
    # by brute force over the same 99 candidates, from the saved model's probabilities).
    batches = list(reader.make_dataset(data_dir, reader.InputConfig("valid", 64)))
    x = np.concatenate([b[0].numpy() for b in batches])
    truth = np.concatenate([b[1].numpy() for b in batches]) > 0.5
    p = model.predict(x, verbose=0)
    f1 = {k / 100: 2 * np.sum((p >= k / 100) & truth) / (np.sum(p >= k / 100) + truth.sum())
          for k in range(1, 100)}
    stored = model_info_lib.read_model_info(str(tmp_path)).threshold
    assert f1[stored] == pytest.approx(max(f1.values()), abs=1e-9)

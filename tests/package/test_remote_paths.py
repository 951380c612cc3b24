"""Remote paths behave like local ones in every tool that takes a path: model dirs,
datasets and segmentation outputs on TensorFlow's in-memory filesystem (ram://), which
goes through the same tf.io.gfile code as gs:// with no network.

Each test runs the same call on a local copy and on a ram:// copy of the same files and
compares the results: the local run is the reference.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg import keras_objects, model_info, model_loading  # noqa: E402
from tiled_vessel_seg import storage  # noqa: E402
from tiled_vessel_seg.inference import predictor as predictor_lib  # noqa: E402
from tiled_vessel_seg.inference import segment  # noqa: E402
from tiled_vessel_seg.tfrecords import dataset_info, reader, record_counts  # noqa: E402
from tiled_vessel_seg.trainer import evaluate, fake_data, metrics, threshold  # noqa: E402
from tests.helpers import copy_tree, ram_dir  # noqa: E402

TILE = 16


@pytest.fixture(scope="module")
def local_model_dir(tmp_path_factory):
    """A tiny compiled model (the project's loss and metrics) with its model_info.json."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((TILE, TILE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss=keras_objects.BceDiceLoss(),
                  metrics=metrics.segmentation_metrics())
    rng = np.random.default_rng(0)
    x = rng.random((4, TILE, TILE, 3)).astype(np.float32)
    model.fit(x, (x[..., :1] > 0.5).astype(np.float32), epochs=1, verbose=0)
    out = tmp_path_factory.mktemp("model")
    model.save(str(out / model_info.MODEL_FILE))
    model_info.write_model_info(str(out), model_info.ModelInfo(tile_size=TILE, scale=1,
                                                               overlap=4, threshold=0.5))
    return str(out)


@pytest.fixture(scope="module")
def local_data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("data"))
    fake_data.write_fake_dataset(out, tile_size=TILE, tiles={"train": 4, "valid": 4, "test": 4},
                                 shards=2, seed=5)
    return out


def test_fake_datasets_are_written_on_ram_like_locally(local_data_dir):
    remote = ram_dir("data")
    fake_data.write_fake_dataset(remote, tile_size=TILE, tiles={"train": 4, "valid": 4,
                                                                "test": 4}, shards=2, seed=5)
    for split in ("train", "valid", "test"):
        shards = storage.list_shards(local_data_dir, split)
        assert storage.list_shards(remote, split) == shards and len(shards) == 2
        for shard in shards:
            assert (storage.read_bytes(storage.join(remote, shard))
                    == storage.read_bytes(storage.join(local_data_dir, shard)))
    assert (dataset_info.read_dataset_info(remote).splits
            == dataset_info.read_dataset_info(local_data_dir).splits)


def test_a_dataset_on_ram_reads_like_the_local_one(local_data_dir):
    remote = ram_dir("data")
    copy_tree(local_data_dir, remote)
    local_info = dataset_info.read_dataset_info(local_data_dir)
    remote_info = dataset_info.read_dataset_info(remote)
    assert remote_info == local_info
    counts = record_counts.check_splits(remote, remote_info, ("train", "valid", "test"), "test")
    assert counts == {"train": [2, 2], "valid": [2, 2], "test": [2, 2]}
    for split in ("train", "test"):
        local = list(reader.make_dataset(local_data_dir, reader.InputConfig(split, 2)))
        got = list(reader.make_dataset(remote, reader.InputConfig(split, 2)))
        assert len(got) == len(local) == 2
        for (image_a, mask_a), (image_b, mask_b) in zip(local, got):
            np.testing.assert_array_equal(image_a.numpy(), image_b.numpy())
            np.testing.assert_array_equal(mask_a.numpy(), mask_b.numpy())


def test_a_model_dir_on_ram_loads_like_the_local_one(local_model_dir):
    remote = ram_dir("model")
    copy_tree(local_model_dir, remote)
    local, local_info = model_loading.load_model(local_model_dir)
    got, info = model_loading.load_model(remote)
    assert info == local_info
    for a, b in zip(local.get_weights(), got.get_weights()):
        np.testing.assert_array_equal(a, b)
    compiled, _ = model_loading.load_model(remote, compile=True)
    assert isinstance(compiled.loss, keras_objects.BceDiceLoss)
    assert predictor_lib.load_predictor(remote).tile_size == TILE


def test_a_missing_model_file_on_ram_is_named(local_model_dir):
    remote = ram_dir("model")
    storage.makedirs(remote)
    storage.copy(model_info.info_path(local_model_dir), model_info.info_path(remote))
    with pytest.raises(model_info.ModelDirError, match=f"^{remote}/best_model.keras: not found"):
        model_loading.load_model(remote)


def test_evaluate_and_threshold_take_a_model_dir_on_ram(local_model_dir, local_data_dir,
                                                         tmp_path):
    """The bug: both tested the model file with os.path.exists, so a remote model dir was
    refused (evaluate) or silently skipped (threshold)."""
    local = str(tmp_path / "model")
    copy_tree(local_model_dir, local)
    remote, remote_data = ram_dir("model"), ram_dir("data")
    copy_tree(local_model_dir, remote)
    copy_tree(local_data_dir, remote_data)
    expected = evaluate.evaluate(local, local_data_dir, "test", batch_size=2, verbose=0)
    got = evaluate.evaluate(remote, remote_data, "test", batch_size=2, verbose=0)
    assert got == pytest.approx(expected, rel=1e-6)
    assert evaluate.read_evaluation(remote) == pytest.approx(evaluate.read_evaluation(local))

    def valid(data_dir):
        return reader.make_dataset(data_dir, reader.InputConfig("valid", 2))
    chosen_local = threshold.store_valid_threshold(local, valid(local_data_dir))
    chosen = threshold.store_valid_threshold(remote, valid(remote_data))
    assert chosen == chosen_local != model_info.read_model_info(local_model_dir).threshold
    assert model_info.read_model_info(remote).threshold == chosen
    assert json.loads(storage.read_text(model_info.info_path(local)))["threshold"] == chosen


def test_segment_reads_photos_and_writes_outputs_on_ram(local_model_dir, tmp_path):
    rng = np.random.default_rng(1)
    photo = (rng.random((40, 52, 3)) * 255).astype(np.uint8)
    truth = (rng.random((40, 52)) > 0.8).astype(np.uint8) * 255
    remote_in = ram_dir("photos")
    storage.makedirs(remote_in)
    local_in = tmp_path / "photos"
    local_in.mkdir()
    for folder in (str(local_in), remote_in):
        storage.write_bytes_atomic(storage.join(folder, "p1.png"),
                                   cv2.imencode(".png", photo[..., ::-1])[1].tobytes())
        storage.write_bytes_atomic(storage.join(folder, "p1_truth.png"),
                                   cv2.imencode(".png", truth)[1].tobytes())
    predictor = predictor_lib.load_predictor(local_model_dir)
    outputs = {}
    for folder, out in ((str(local_in), str(tmp_path / "out")), (remote_in, ram_dir("out"))):
        summary = segment.segment_files(
            predictor, [storage.join(folder, "p1.png")], out, save_probabilities=True,
            truths={"p1": storage.join(folder, "p1_truth.png")}, progress=False)
        assert summary.written == ["p1"] and not summary.failed
        outputs[folder] = out
    local_out, remote_out = outputs[str(local_in)], outputs[remote_in]
    assert storage.listdir(remote_out) == storage.listdir(local_out)
    for name in ("p1.png", "p1_probabilities.png"):
        a, b = (cv2.imdecode(np.frombuffer(storage.read_bytes(storage.join(d, name)), np.uint8),
                             cv2.IMREAD_UNCHANGED) for d in (local_out, remote_out))
        assert a.shape == (40, 52)
        np.testing.assert_array_equal(a, b)
    local_rows, remote_rows = (
        json.loads(storage.read_text(storage.join(d, "metrics.json")))["images"]
        for d in (local_out, remote_out))
    assert [r["image"] for r in remote_rows] == ["p1"]
    assert remote_rows[0]["dice"] == pytest.approx(local_rows[0]["dice"])

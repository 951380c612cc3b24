"""[train] dataset_weights: the training stream draws each source dataset's tiles with its
weight (tfrecords/reader.py weighted_records), deterministic under the seed, also per
input pipeline under tf.distribute. Tiny synthetic records: dataset "a" tiles are all
pixel value 10, dataset "b" tiles 200, so a batch says which dataset each tile came from."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tiled_vessel_seg.configs import ConfigError, load_config
from tiled_vessel_seg.tfrecords import dataset_info as info_lib
from tiled_vessel_seg.tfrecords import reader, schema
from tiled_vessel_seg.tfrecords.encoding import TileEncoding

TILE = 4
COUNTS = {"a": 70, "b": 200}  # 7 photos' worth against 20
VALUE = {"a": 10, "b": 200}


def _write(data_dir, datasets_recorded=True, shards=3):
    encoding = TileEncoding("raw", "packed")
    records = []
    for name, count in COUNTS.items():
        for n in range(count):
            image = np.full((TILE, TILE, 3), VALUE[name], np.uint8)
            mask = np.zeros((TILE, TILE), np.uint8)
            mask[0, n % TILE] = 1
            records.append(schema.encode_example(schema.TileRecord(
                image, mask, f"{name}{n // 10}", 0, n, 1, "none", "x",
                dataset=name if datasets_recorded else ""), encoding))
    order = np.random.default_rng(0).permutation(len(records))  # datasets mixed in shards
    names = []
    for s in range(shards):
        name = f"train/train-{s:05d}-of-{shards:05d}.tfrecord"
        (data_dir / "train").mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(str(data_dir / name)) as writer:
            for i in order[s::shards]:
                writer.write(records[i])
        names.append(name)
    counts = ({n: {"images": c // 10, "records": c} for n, c in COUNTS.items()}
              if datasets_recorded else {})
    info = info_lib.DatasetInfo(
        schema_version=schema.SCHEMA_VERSION, compression="none",
        parameters={"tile_size": TILE, "scale": 1},
        splits={"train": info_lib.SplitInfo(["x"], len(records), 0, len(records), names,
                                            datasets=counts)},
        encoding=dataclasses.asdict(encoding))
    info_lib.write_dataset_info(str(data_dir), info)
    return str(data_dir)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("weighted"))


def _sources(dataset, batches):
    """The dataset of every tile of the first `batches` batches, from its pixel value."""
    out = []
    for image, _ in dataset.take(batches):
        values = np.round(image.numpy()[:, 0, 0, 0] * 255).astype(int)
        assert set(values) <= set(VALUE.values())
        out.extend("a" if v == VALUE["a"] else "b" for v in values)
    return out


@pytest.mark.parametrize("weights", [{"a": 0.5, "b": 0.5}, {"a": 3.0, "b": 1.0},
                                     {"a": 1.0, "b": 0.0}])
def test_sampled_proportion_matches_the_weights(data_dir, weights):
    data = reader.make_dataset(data_dir, reader.InputConfig("train", 50, training=True, seed=1,
                                                            dataset_weights=weights))
    drawn = _sources(data, 80)  # 4000 tiles
    share = drawn.count("a") / len(drawn)
    expected = weights["a"] / sum(weights.values())
    # Binomial std at 4000 draws is <= 0.008: 0.03 is over 3.5 of them.
    assert share == pytest.approx(expected, abs=0.03)


def test_without_weights_tiles_come_in_proportion_to_their_numbers(data_dir):
    drawn = _sources(reader.make_dataset(
        data_dir, reader.InputConfig("train", 50, training=True, seed=1)), 80)
    assert drawn.count("a") / len(drawn) == pytest.approx(70 / 270, abs=0.03)


def test_weighted_stream_is_deterministic_under_the_seed(data_dir):
    def first(seed):
        return _sources(reader.make_dataset(data_dir, reader.InputConfig(
            "train", 20, training=True, seed=seed, deterministic=True,
            dataset_weights={"a": 0.5, "b": 0.5})), 10)
    assert first(4) == first(4)
    assert first(4) != first(5)


@pytest.mark.parametrize("pipelines", [2])
def test_every_input_pipeline_draws_by_the_weights(data_dir, pipelines):
    # 3 shards: with 2 pipelines the unweighted reader shards by file; weighted, every
    # pipeline reads all shards and keeps every W-th record, then mixes by weight.
    shares = []
    for pipeline in range(pipelines):
        context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                             input_pipeline_id=pipeline,
                                             num_replicas_in_sync=pipelines)
        drawn = _sources(reader.make_dataset(
            data_dir, reader.InputConfig("train", 50 * pipelines, training=True, seed=2,
                                         dataset_weights={"a": 0.5, "b": 0.5}),
            input_context=context), 40)
        shares.append(drawn.count("a") / len(drawn))
    # 2,000 draws per pipeline: binomial std 0.011.
    assert shares == pytest.approx([0.5] * pipelines, abs=0.04)


def test_weights_must_name_the_split_s_datasets(data_dir, tmp_path, caplog):
    for weights, words in (({"a": 1.0}, "no weight for b"),
                           ({"a": 0.0, "b": 0.0, "c": 1.0}, "no records of c")):
        with pytest.raises(info_lib.DatasetError, match=words):
            reader.make_dataset(data_dir, reader.InputConfig("train", 8, training=True,
                                                             dataset_weights=weights))
    # A weighted dataset without records here (all its photos held out): left out, said.
    drawn = _sources(reader.make_dataset(data_dir, reader.InputConfig(
        "train", 50, training=True, seed=3, dataset_weights={"a": 1, "b": 1, "c": 2})), 20)
    assert drawn.count("a") / len(drawn) == pytest.approx(0.5, abs=0.06)
    assert "no records of c; drawing from a, b" in caplog.text
    old = _write(tmp_path / "old", datasets_recorded=False, shards=1)
    with pytest.raises(info_lib.DatasetError, match="carry no dataset names"):
        reader.make_dataset(old, reader.InputConfig("train", 8, training=True,
                                                    dataset_weights={"a": 1.0}))
    # Records written before the dataset field existed read as before.
    image, _ = next(iter(reader.make_dataset(old, reader.InputConfig("train", 8))))
    assert image.shape == (8, TILE, TILE, 3)


def test_config_key_takes_a_dict_and_checks_it():
    config = load_config(None, ['train.dataset_weights={"stare": 0.5, "chase_db1": 0.5}'])
    assert config.train.dataset_weights == {"stare": 0.5, "chase_db1": 0.5}
    with pytest.raises(ConfigError, match="dataset_weights must be >= 0"):
        load_config(None, ['train.dataset_weights={"stare": -1}'])
    assert load_config(None).train.dataset_weights == {}


def test_sharding_note_says_every_worker_reads_every_shard_when_weighted():
    from tiled_vessel_seg.trainer import distributed_input
    note = distributed_input.sharding_note("train", 8, 2, weighted=True)
    assert "every one of 2 workers reads all 8 shard(s)" in note
    assert "each worker reads its own" in distributed_input.sharding_note("train", 8, 2)

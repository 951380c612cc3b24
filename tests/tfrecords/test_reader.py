"""The streaming reader over tiny synthetic shards written with the one schema."""
import os
import shutil

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib  # noqa: E402
from tiled_vessel_seg.tfrecords import reader, schema  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

TILES = {"train": 12, "valid": 4, "test": 5}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shards_gzip"))
    write_fake_dataset(out, tile_size=16, tiles=TILES, shards=3, compression="gzip")
    return out


@pytest.fixture(scope="module")
def uncompressed_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shards_none"))
    write_fake_dataset(out, tile_size=16, tiles=TILES, shards=3, compression="none")
    return out


def expected_tiles(data_dir, split):
    """(image uint8, mask uint8) of every record, decoded by the schema's numpy helper."""
    info = dataset_info_lib.read_dataset_info(data_dir)
    out = []
    for path in info.shard_paths(data_dir, split):
        for record in tf.data.TFRecordDataset(path, compression_type=info.tfrecord_compression):
            image, mask, _ = schema.decode_example_numpy(record.numpy())
            out.append((image, mask))
    return out


@pytest.mark.parametrize("which", ["data_dir", "uncompressed_dir"])
def test_one_pass_yields_every_tile_once_scaled(which, request):
    data_dir = request.getfixturevalue(which)
    batches = list(reader.make_dataset(data_dir, reader.InputConfig("test", 2)))
    assert [int(b[0].shape[0]) for b in batches] == [2, 2, 1]  # partial batch kept
    images = np.concatenate([b[0].numpy() for b in batches])
    masks = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.float32 and masks.dtype == np.float32
    assert masks.shape == (5, 16, 16, 1) and set(np.unique(masks)) <= {0.0, 1.0}
    expected = expected_tiles(data_dir, "test")
    got = sorted((im.tobytes(), m.tobytes()) for im, m in zip(images, masks))
    want = sorted(((im / 255.0).astype(np.float32).tobytes(),
                   (m > 0).astype(np.float32).tobytes()) for im, m in expected)
    assert got == want


def test_training_repeats_shuffles_and_drops_remainder(data_dir):
    ds = reader.make_dataset(data_dir, reader.InputConfig("train", 5, training=True, seed=1,
                                                          shuffle_buffer=8))
    batches = [b for b in ds.take(6)]  # 30 tiles > one pass of 12
    assert all(tuple(b[0].shape) == (5, 16, 16, 3) for b in batches)
    first_pass = np.concatenate([b[1].numpy() for b in batches])[:12]
    in_order = np.stack([m > 0 for _, m in expected_tiles(data_dir, "train")]).astype(np.float32)
    assert not np.array_equal(first_pass, in_order)


def test_deterministic_order_is_reproducible(data_dir):
    def order(seed, shuffle_buffer=256):
        ds = reader.make_dataset(data_dir, reader.InputConfig(
            "train", 4, training=True, seed=seed, deterministic=True,
            shuffle_buffer=shuffle_buffer))
        return np.concatenate([b[0].numpy() for b in ds.take(3)])
    np.testing.assert_array_equal(order(7), order(7))
    assert not np.array_equal(order(7), order(8))  # the seed decides the order
    # every streamed tile is one of the dataset's, and without the record buffer the
    # first 12 (one pass over the 3 shards) are each of its 12 tiles exactly once
    dataset = sorted((im / 255.0).astype(np.float32).tobytes()
                     for im, _ in expected_tiles(data_dir, "train"))
    assert {t.tobytes() for t in order(7)} <= set(dataset)
    assert sorted(t.tobytes() for t in order(7, shuffle_buffer=1)) == dataset


def test_input_context_splits_batch_and_shards(data_dir):
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        batches = list(reader.make_dataset(data_dir, reader.InputConfig("test", 4),
                                           input_context=context))
        assert max(int(b[0].shape[0]) for b in batches) <= 2  # per-replica batch
        seen += [im.tobytes() for b in batches for im in b[0].numpy()]
    assert len(seen) == TILES["test"] and len(set(seen)) == TILES["test"]


def test_online_augmentation_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    mask = (rng.random((8, 8, 1)) > 0.5).astype(np.float32)
    image = np.concatenate([mask, rng.random((8, 8, 2)).astype(np.float32)], axis=-1)
    variants = [np.rot90(m, k) for m in (mask, mask[:, ::-1]) for k in range(4)]
    for seed in range(6):
        aug_image, aug_mask = reader.augment_tile(image, mask, tf.constant([seed, 1]),
                                                  max_brightness=0.0, contrast_range=(1.0, 1.0))
        np.testing.assert_array_equal(aug_image.numpy()[..., :1], aug_mask.numpy())
        assert any(np.array_equal(aug_mask.numpy(), v) for v in variants)
    photometric, _ = reader.augment_tile(image, mask, tf.constant([3, 4]))
    assert 0.0 <= float(tf.reduce_min(photometric)) and float(tf.reduce_max(photometric)) <= 1.0


def _d4(array, k):
    """The k-th symmetry of the square (k in 0..7) of an [H, W, ...] numpy array."""
    return np.rot90(array if k < 4 else array[:, ::-1], k % 4)


def test_augment_tile_draws_every_symmetry_and_one_affine_brightness_contrast():
    rng = np.random.default_rng(0)
    image = rng.integers(70, 190, (12, 12, 3), dtype=np.uint8)  # no clipping at +-20 %
    mask = (rng.random((12, 12, 1)) > 0.5).astype(np.uint8)
    seen = set()
    for seed in range(40):
        out_image, out_mask = reader.augment_tile(tf.constant(image), tf.constant(mask),
                                                  tf.constant([seed, 7], tf.int64))
        assert out_image.dtype == tf.float32 and out_mask.dtype == tf.float32
        k = [j for j in range(8) if np.array_equal(out_mask.numpy(), _d4(mask, j))]
        assert len(k) == 1  # the mask moved by exactly one symmetry (random mask: unique)
        seen.add(k[0])
        moved = _d4(image, k[0]).astype(np.float64) / 255.0
        # the image moved by the same symmetry, then y = (x - m) * c + m + d for scalars
        # c in [0.9, 1.1], d in [-0.1, 0.1], m the tile's mean over all channels
        y = out_image.numpy().astype(np.float64)
        c, offset = np.polyfit(moved.ravel(), y.ravel(), 1)
        d = offset - moved.mean() * (1.0 - c)
        np.testing.assert_allclose(y, moved * c + offset, atol=2e-6)
        assert 0.9 <= c <= 1.1 and -0.1 <= d <= 0.1
    assert seen == set(range(8))
    # non-square tiles are only flipped
    wide_mask = (rng.random((4, 9, 1)) > 0.5).astype(np.uint8)
    for seed in range(12):
        _, out = reader.augment_tile(tf.zeros((4, 9, 3), tf.uint8), tf.constant(wide_mask),
                                     tf.constant([seed, 1], tf.int64))
        assert any(np.array_equal(out.numpy(), f) for f in
                   (wide_mask, wide_mask[::-1], wide_mask[:, ::-1], wide_mask[::-1, ::-1]))


def test_augmented_training_stream(data_dir):
    ds = reader.make_dataset(data_dir, reader.InputConfig("train", 4, training=True,
                                                          augment=True, seed=0))
    image, mask = next(iter(ds))
    assert tuple(image.shape) == (4, 16, 16, 3) and set(np.unique(mask.numpy())) <= {0.0, 1.0}


def test_missing_data_dir_and_split_are_named(tmp_path, data_dir):
    with pytest.raises(dataset_info_lib.DatasetError, match="dataset_info.json: not found"):
        reader.make_dataset(str(tmp_path / "nowhere"),
                            reader.InputConfig("train", 2, training=True))
    with pytest.raises(dataset_info_lib.DatasetError, match="no split 'holdout'"):
        reader.make_dataset(data_dir, reader.InputConfig("holdout", 2))


def test_missing_and_corrupt_shards_are_named(tmp_path, data_dir):
    copy = str(tmp_path / "copy")
    shutil.copytree(data_dir, copy)
    info = dataset_info_lib.read_dataset_info(copy)
    missing, corrupt = info.shard_paths(copy, "train")[:2]
    os.remove(missing)
    with pytest.raises(reader.ShardReadError, match=os.path.basename(missing)):
        reader.make_dataset(copy, reader.InputConfig("train", 2, training=True))
    shutil.copy(missing.replace(copy, data_dir), missing)

    with open(corrupt, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2: len(data) // 2 + 8] = b"garbage!"
    with open(corrupt, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(reader.ShardReadError) as caught:
        with reader.naming_bad_shards(copy, ["train"]):
            for _ in reader.make_dataset(copy, reader.InputConfig("train", 2), info=info):
                pass
    message = str(caught.value)
    assert corrupt in message and "1 shard(s)" in message
    assert all(p not in message for p in info.shard_paths(copy, "train") if p != corrupt)


def test_fill_replicas_gives_no_replica_an_empty_batch(data_dir):
    context = tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                         num_replicas_in_sync=2)
    batches = list(reader.make_dataset(
        data_dir, reader.InputConfig("test", 4, fill_replicas=True, tile_shape=(16, 16)),
        input_context=context))
    # 5 tiles, global batch 4 on 2 replicas: 2 steps x 2 replicas of 2 tiles, wrapping.
    assert [tuple(b[0].shape) for b in batches] == [(2, 16, 16, 3)] * 4
    seen = {im.tobytes() for b in batches for im in b[0].numpy()}
    assert len(seen) == TILES["test"]


def _v1_record(image, mask, image_id, tile_x):
    """A schema-version-1 record, built the way version 1 wrote them (tf.train.Example, PNG)."""
    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))
    png = lambda a: cv2.imencode(".png", a)[1].tobytes()  # noqa: E731
    feature = {"image/png": b(png(image[..., ::-1])), "mask/png": b(png(mask * 255)),
               "image_id": b(image_id.encode()), "tile_y": i(0), "tile_x": i(tile_x),
               "height": i(image.shape[0]), "width": i(image.shape[1]), "scale": i(1),
               "augmentation": b(b"none"), "source_path": b(b"x.ppm"), "schema_version": i(1),
               "vessel_fraction": tf.train.Feature(float_list=tf.train.FloatList(
                   value=[float(mask.mean())]))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def test_version_1_dataset_still_reads(tmp_path):
    import json
    rng = np.random.default_rng(3)
    tiles = [(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8),
              (rng.random((16, 16)) > 0.7).astype(np.uint8)) for _ in range(5)]
    (tmp_path / "test").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "test" / "test-00000-of-00001.tfrecord")) as w:
        for k, (image, mask) in enumerate(tiles):
            w.write(_v1_record(image, mask, f"im{k}", 16 * k))
    # dataset_info.json exactly as version 1 wrote it: no "encoding" field.
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "schema_version": 1, "compression": "none", "parameters": {"tile_size": 16},
        "splits": {"test": {"image_ids": [f"im{k}" for k in range(5)], "tiles": 5,
                            "augmented_tiles": 0, "records": 5,
                            "shards": ["test/test-00000-of-00001.tfrecord"]}}}))
    info = dataset_info_lib.read_dataset_info(str(tmp_path))
    assert info.record_format == schema.VERSION_1
    batches = list(reader.make_dataset(str(tmp_path), reader.InputConfig("test", 5)))
    images, masks = batches[0][0].numpy(), batches[0][1].numpy()
    np.testing.assert_array_equal(images, np.stack([t[0] for t in tiles]) / np.float32(255))
    np.testing.assert_array_equal(masks[..., 0], np.stack([t[1] for t in tiles]))
    assert reader.peek_tile_shape(str(tmp_path), "test") == (16, 16)
    image, mask, meta = schema.decode_example_numpy(_v1_record(*tiles[0], "im0", 0))
    np.testing.assert_array_equal(image, tiles[0][0])
    assert meta["schema_version"] == 1 and set(np.unique(mask)) <= {0, 255}


@pytest.mark.parametrize("image_encoding,mask_encoding", [("png", "png"), ("raw", "packed")])
def test_lossless_encodings_read_back_exactly(tmp_path, image_encoding, mask_encoding):
    from tiled_vessel_seg.tfrecords.encoding import TileEncoding
    from tiled_vessel_seg.trainer.fake_data import fake_tile
    enc = TileEncoding(image_encoding, mask_encoding)
    info = write_fake_dataset(str(tmp_path), tile_size=24, tiles={"valid": 3}, shards=1,
                              compression="none", seed=5, encoding=enc)
    assert dataset_info_lib.read_dataset_info(str(tmp_path)).record_format == info.record_format
    rng = np.random.default_rng(5)
    expected = [fake_tile(rng, 24) for _ in range(3)]  # the same stream write_fake_dataset drew
    images, masks = next(iter(reader.make_dataset(str(tmp_path), reader.InputConfig("valid", 3))))
    np.testing.assert_array_equal(images.numpy(), np.stack([e[0] for e in expected]) / np.float32(255))
    np.testing.assert_array_equal(masks.numpy()[..., 0], np.stack([e[1] > 0 for e in expected]))


def test_dataset_info_encoding_is_checked(tmp_path, data_dir):
    import json
    shutil.copytree(data_dir, tmp_path / "d")
    path = tmp_path / "d" / "dataset_info.json"
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == 2 and raw["encoding"]["image"] == "jpeg"
    for change, words in (({"encoding": None}, "needs an encoding"),
                          ({"encoding": {"image": "webp", "mask": "packed", "jpeg_quality": 95}},
                           "image encoding"),
                          ({"schema_version": 3}, "schema version 3")):
        path.write_text(json.dumps({**raw, **change}))
        with pytest.raises(dataset_info_lib.DatasetError, match=words):
            dataset_info_lib.read_dataset_info(str(tmp_path / "d"))

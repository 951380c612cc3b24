"""The streaming tf.data input pipeline over the TFRecord shards of a dataset directory.

    shard paths (dataset_info.json) -> [shuffle per epoch, repeat] -> interleave of
    TFRecordDataset -> [per-dataset streams mixed by weight] -> [shuffle serialized
    records] -> parse + decode (parallel)
    -> float32 image in [0, 1], {0, 1} mask -> [online augmentation] -> batch -> prefetch

The parse + decode function is built once per dataset from the record format in
dataset_info.json (schema version 1: PNG; version 2: the dataset's image and mask
encodings), so no per-record branch on the encoding runs in the graph. With `with_fov`
(datasets written with FOV planes) the "mask" is the label planes [H, W, 2]: vessels,
then field of view; every geometric step (flips, transposes, zoom) moves both alike.

Nothing is materialised beyond the buffers: the shuffle buffer holds serialized (encoded)
records, not decoded tiles, and the number of open shards is the interleave's cycle
length, whatever the number of shards. Paths may be local or `gs://` (TensorFlow's own
filesystems).

TF does not name the file in a read error (it says "corrupted record at 50800"), so the
shards are checked for existence up front, and `naming_bad_shards` turns a read or decode
error raised while iterating into a `ShardReadError` naming the bad shard(s), found by
reading each shard of the split on its own.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from typing import Iterable, Iterator, Mapping, Optional

import numpy as np
import tensorflow as tf

from tiled_vessel_seg.configs.schema import TrainConfig
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
from tiled_vessel_seg.tfrecords import robust_augment as robust_lib
from tiled_vessel_seg.tfrecords import schema

AUTOTUNE = tf.data.AUTOTUNE


class ShardReadError(dataset_info_lib.DatasetError):
    """A shard that is missing or cannot be read; the message names the file."""


def to_float(image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """uint8 image [H, W, 3] and mask {0, 1} -> float32 image in [0, 1], float32 mask."""
    return tf.cast(image, tf.float32) / 255.0, tf.cast(mask, tf.float32)


def tile_decoder(record_format: schema.RecordFormat, with_fov: bool = False):
    """The dataset's decode function: serialized record -> (image float32 [H, W, 3] in
    [0, 1], mask float32 {0, 1} [H, W, 1], or [H, W, 2] vessels and FOV with `with_fov`)."""
    parse = schema.tile_decoder(record_format, with_fov=with_fov)
    return lambda serialized: to_float(*parse(serialized))


def augment_tile(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor,
                 max_brightness: float = 0.1, contrast_range: tuple[float, float] = (0.9, 1.1)
                 ) -> tuple[tf.Tensor, tf.Tensor]:
    """A random symmetry of the square (flips only for non-square tiles) and mild
    brightness/contrast; pure TF, stateless.

    image: uint8 [H, W, 3] (or float32 in [0, 1]); mask [H, W, C] {0, 1}, any dtype (C
    label planes, e.g. vessels and FOV, all moved alike); seed: int64 [2]. Returns float32
    image [H', W', 3] in [0, 1] and float32 mask [H', W', C].

    The 8 symmetries are drawn uniformly as (transpose or not) x (reverse rows or not) x
    (reverse columns or not), the same transform for image and mask. Brightness
    (+ delta, |delta| < max_brightness) and contrast (factor in contrast_range about the
    tile's mean value over all channels, as torchvision's adjust_contrast) touch the image
    only. The geometry runs on the decoded uint8 tile and the photometric part is one
    scalar multiply-add per value, ~3x cheaper than tf.image's flips, rot90 and per-channel
    brightness/contrast on float32 tensors.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    square = tf.equal(tf.shape(image)[0], tf.shape(image)[1])
    transpose = tf.logical_and(square, tf.random.stateless_uniform([], seeds[0]) < 0.5)
    flip_rows, flip_columns = tf.unstack(tf.random.stateless_uniform([2], seeds[1]) < 0.5)

    def move(x, perm):
        # Each step copies only when drawn; reversing rows by a row gather (contiguous
        # copies) is ~2.5x cheaper than tf.reverse on axis 0.
        x = tf.cond(transpose, lambda: tf.transpose(x, perm), lambda: x)
        x = tf.cond(flip_rows, lambda: tf.gather(x, tf.range(tf.shape(x)[0] - 1, -1, -1)),
                    lambda: x)
        return tf.cond(flip_columns, lambda: tf.reverse(x, [1]), lambda: x)
    # One mask plane moves as [H, W]: TF's CPU kernels move a trailing axis of 1 ~2x slower.
    image = move(image, [1, 0, 2])
    mask = (move(mask[..., 0], [1, 0])[..., None] if mask.shape[-1] == 1
            else move(mask, [1, 0, 2]))

    unit = 1.0 / 255.0 if image.dtype == tf.uint8 else 1.0
    x = tf.cast(image, tf.float32)
    delta = tf.random.stateless_uniform([], seeds[2], -max_brightness, max_brightness)
    factor = tf.random.stateless_uniform([], seeds[3], *contrast_range)
    mean = tf.reduce_mean(x) * unit
    # ((x * unit + delta) - (mean + delta)) * factor + (mean + delta), with scalars only:
    # a per-channel offset (broadcast over [H, W, 3]) costs TF's CPU kernels 4x more.
    x = x * (unit * factor) + (mean * (1.0 - factor) + delta)
    return tf.clip_by_value(x, 0.0, 1.0), tf.cast(mask, tf.float32)


def dataset_weight_list(data_dir: str, info: dataset_info_lib.DatasetInfo, split: str,
                        weights: Mapping[str, float]) -> list[tuple[str, float]]:
    """[(dataset name, normalised weight > 0)] of `split`, sorted by name.

    A weight for a dataset without records in the split (a cross-validation fold whose
    few photos of it are all held out) is left out with a warning. Raises DatasetError
    when the split's records carry no dataset names (written before they did), a dataset
    of the split has no weight, or no dataset with a weight > 0 is left.
    """
    where = f"{dataset_info_lib.join(data_dir, dataset_info_lib.INFO_FILE)}: split {split!r}"
    present = {name for name, counts in info.splits[split].datasets.items()
               if counts.get("records")} if split in info.splits else set()
    if not present or present == {""}:
        raise dataset_info_lib.DatasetError(
            f"{where}: its records carry no dataset names, which [train] dataset_weights "
            "needs; re-run vessel-preprocess (vessel-run: --overwrite)")
    absent = sorted(n for n, w in weights.items() if w > 0 and n not in present)
    missing = sorted(present - set(weights))
    total = float(sum(w for n, w in weights.items() if n in present))
    if missing or not total > 0:
        problem = (f"no weight for {', '.join(missing)} (0 leaves a dataset out)" if missing
                   else f"no records of {', '.join(absent)}")
        raise dataset_info_lib.DatasetError(
            f"{where}: [train] dataset_weights: {problem}; the split holds "
            f"{', '.join(sorted(present))}")
    if absent:
        logging.warning("%s: [train] dataset_weights: no records of %s; drawing from %s",
                        where, ", ".join(absent), ", ".join(sorted(present)))
    return [(name, weights[name] / total) for name in sorted(present) if weights[name] > 0]


def record_dataset(serialized: tf.Tensor) -> tf.Tensor:
    """The dataset name of one serialized record (b"" for records written before it)."""
    return tf.io.parse_single_example(serialized, {schema.DATASET_KEY: tf.io.FixedLenFeature(
        [], tf.string, default_value=b"")})[schema.DATASET_KEY]


def weighted_records(records: tf.data.Dataset, weights: list[tuple[str, float]],
                     seed: int) -> tf.data.Dataset:
    """An endless record stream drawing from each dataset's records with its weight:
    one filtered copy of the (endless) `records` stream per dataset, mixed by
    `tf.data.Dataset.sample_from_datasets` seeded with `seed` (the same draw order on
    every run). Only the dataset feature is parsed to filter; the tiles are decoded
    after the mix."""
    if len(weights) == 1:
        name = weights[0][0]
        return records.filter(lambda s: tf.equal(record_dataset(s), name))
    streams = [records.filter(lambda s, name=name: tf.equal(record_dataset(s), name))
               for name, _ in weights]
    return tf.data.Dataset.sample_from_datasets(
        streams, weights=[w for _, w in weights], seed=seed, stop_on_empty_dataset=False)


def check_shards_exist(paths: Iterable[str]) -> None:
    """Raises ShardReadError naming every listed shard that does not exist."""
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise ShardReadError(f"{len(missing)} shard(s) listed in {dataset_info_lib.INFO_FILE} "
                             f"are missing: {', '.join(missing)}")


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """What `make_dataset` reads from a dataset directory and how (the input section of one
    split, as official/vision's DataConfig): `InputConfig("test", 4)` is one pass over the
    test split in batches of 4; `for_training` builds the training stream from [train].

    split: "train", "valid" or "test" (any split the dataset has).
    global_batch_size: GLOBAL batch; with an input context each pipeline batches
      `input_context.get_per_replica_batch_size(global_batch_size)`.
    training: shuffle shards each epoch and records in a buffer, repeat forever, drop the
      last partial batch. Otherwise one pass in file order.
    shuffle_buffer: records in the shuffle buffer (training only).
    augment: in-graph random symmetry of the square, brightness and contrast
      (`augment_tile`; training only).
    robust: zoom, blur, gamma, channel gains, JPEG (`robust_augment`; training only),
      after `augment`.
    deterministic: element order reproducible; default: True unless training.
    seed: seed of the shard/record shuffles and of the augmentation (None: drawn).
    take_batches: keep only the first N batches (a fixed validation subset).
    tile_shape: (H, W) every tile must have; makes the shapes static, which
      MirroredStrategy needs to give a replica an empty last batch.
    fill_replicas: (not training, with an input context of several replicas per pipeline)
      wrap the last global step around to the first tiles so no replica gets an empty
      batch - TF cannot run a dilated convolution on an empty batch. A few tiles then count
      twice: use it for validation, not for final figures.
    with_fov: the mask gets the tile's field of view as a second plane (the dataset must
      have been written with FOV planes, [preprocess] fov_masks).
    dataset_weights: (training only) {dataset name: weight}: the share of tiles drawn from
      each source dataset ([train] dataset_weights; `weighted_records`). Every dataset of
      the split needs a weight; 0 leaves it out.
    """
    split: str
    global_batch_size: int
    training: bool = False
    shuffle_buffer: int = 256
    augment: bool = False
    robust: Optional[robust_lib.RobustAugmentation] = None
    deterministic: Optional[bool] = None
    seed: Optional[int] = None
    take_batches: Optional[int] = None
    tile_shape: Optional[tuple[int, int]] = None
    fill_replicas: bool = False
    with_fov: bool = False
    dataset_weights: Optional[Mapping[str, float]] = None

    def __post_init__(self):
        if self.global_batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.global_batch_size}")

    @classmethod
    def for_training(cls, train: TrainConfig, global_batch_size: int,
                     tile_shape: Optional[tuple[int, int]] = None) -> "InputConfig":
        """The training stream of the [train] section: its shuffle buffer, online and
        robust augmentation, seed, determinism, dataset weights and FOV loss mask."""
        return cls("train", global_batch_size, training=True,
                   shuffle_buffer=train.shuffle_buffer, augment=train.online_augmentation,
                   robust=robust_lib.from_train_config(train),
                   deterministic=train.deterministic or None, seed=train.seed,
                   tile_shape=tile_shape, with_fov=train.loss_mask == "fov",
                   dataset_weights=train.dataset_weights or None)


def make_dataset(data_dir: str, params: InputConfig, *,
                 input_context: Optional[tf.distribute.InputContext] = None,
                 info: Optional[dataset_info_lib.DatasetInfo] = None) -> tf.data.Dataset:
    """The batched (image, mask) dataset of one split, read as `params` says.

    Args:
      data_dir: dataset directory holding dataset_info.json (local or gs://).
      params: the split, batch and options (`InputConfig`).
      input_context: from `strategy.distribute_datasets_from_function`; with several
        input pipelines the shards (or, if fewer shards than pipelines, the records)
        are split by `input_pipeline_id`.
      info: an already-read DatasetInfo (else read from data_dir).

    Returns:
      Dataset of (image float32 [b, H, W, 3] in [0, 1], mask float32 [b, H, W, 1] in {0, 1};
      [b, H, W, 2], vessels then FOV, with `params.with_fov`).

    Raises:
      DatasetError: no dataset_info.json, no such split, a listed shard is missing, or
        with_fov on a dataset without FOV planes.
    """
    split, batch_size, training = params.split, params.global_batch_size, params.training
    with_fov, seed, deterministic = params.with_fov, params.seed, params.deterministic
    info = info or dataset_info_lib.read_dataset_info(data_dir)
    if with_fov:
        dataset_info_lib.require_fov(data_dir, info, "reading tiles with their FOV")
    paths = info.shard_paths(data_dir, split)
    if not paths:
        raise dataset_info_lib.DatasetError(
            f"{dataset_info_lib.join(data_dir, dataset_info_lib.INFO_FILE)}: split {split!r} "
            f"has no shards")
    check_shards_exist(paths)
    if deterministic is None:
        deterministic = not training

    weights = dataset_weight_list(data_dir, info, split, params.dataset_weights) if (
        training and params.dataset_weights) else None
    shard_records = False
    if input_context is not None:
        batch_size = input_context.get_per_replica_batch_size(batch_size)
        if input_context.num_input_pipelines > 1:
            # Weighted: every pipeline reads every shard (and keeps every W-th record), so
            # each of its per-dataset streams has records whatever the shards hold.
            if len(paths) >= input_context.num_input_pipelines and not weights:
                paths = paths[input_context.input_pipeline_id::input_context.num_input_pipelines]
            else:
                shard_records = True
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    if training:
        # Pass e over the shards uses the permutation seeded by (seed, e): stateless, so
        # every iterator of this dataset sees the same stream, however many were made
        # before (Keras peeks at distributed datasets), and each pass has a new order.
        path_tensor = tf.constant(paths)
        files = tf.data.Dataset.counter().map(
            lambda epoch: tf.random.experimental.stateless_shuffle(
                path_tensor, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        ).unbatch()
    else:
        files = tf.data.Dataset.from_tensor_slices(paths)

    records = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=info.tfrecord_compression),
        cycle_length=max(1, min(len(paths), 8)), block_length=1,
        num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if shard_records:
        records = records.shard(input_context.num_input_pipelines,
                                input_context.input_pipeline_id)
    if weights:
        records = weighted_records(records, weights, seed)
    if training and params.shuffle_buffer > 1:
        # The stream is endless (repeated above), so no per-iteration reshuffle is needed.
        records = records.shuffle(params.shuffle_buffer, seed=seed,
                                  reshuffle_each_iteration=False)

    parse = schema.tile_decoder(info.record_format, with_fov=with_fov)
    augment, robust = params.augment, params.robust
    robust = robust if robust is not None and not robust.is_identity else None
    if training and (augment or robust):  # decode and augment in one map: one element pass
        def decode_and_augment(serialized, tile_seed):
            seeds = tf.random.experimental.stateless_split(tile_seed, num=2)
            image, mask = parse(serialized)
            image, mask = (augment_tile(image, mask, seeds[0]) if augment
                           else to_float(image, mask))
            if robust:
                image, mask = robust_lib.robust_augment(image, mask, seeds[1], robust)
            return image, mask
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        tiles = tf.data.Dataset.zip((records, seeds)).map(
            decode_and_augment, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    else:
        tiles = records.map(lambda serialized: to_float(*parse(serialized)),
                            num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if params.tile_shape is not None:
        height, width = params.tile_shape
        planes = 2 if with_fov else 1
        tiles = tiles.map(lambda image, mask: (tf.ensure_shape(image, [height, width, 3]),
                                               tf.ensure_shape(mask, [height, width, planes])))
    replicas = (input_context.num_replicas_in_sync // input_context.num_input_pipelines
                if input_context is not None else 1)
    if params.fill_replicas and not training and replicas > 1:
        records_here = -(-info.splits[split].records // input_context.num_input_pipelines)
        steps = -(-records_here // (batch_size * replicas))
        batches = tiles.repeat().batch(batch_size, drop_remainder=True).take(steps * replicas)
    else:
        # A sequential batch: the copy is cheap next to decoding, and a parallel one
        # costs ~15 % more CPU per tile in thread hand-offs (benchmarks/records_bench.py).
        batches = tiles.batch(batch_size, drop_remainder=training)
    if params.take_batches is not None:
        batches = batches.take(params.take_batches)
    options = tf.data.Options()
    options.deterministic = deterministic
    return batches.with_options(options).prefetch(AUTOTUNE)


def find_unreadable_shards(paths: Iterable[str], compression_type: str,
                           record_format: schema.RecordFormat) -> list[tuple[str, str]]:
    """Reads and decodes every record of each shard on its own.

    Returns [(path, "record N: error message")] for each shard that fails; [] if all read.
    """
    bad = []
    decode = tile_decoder(record_format, with_fov=record_format.has_fov)
    for path in paths:
        if not tf.io.gfile.exists(path):
            bad.append((path, "file not found"))
            continue
        count = 0
        try:
            records = tf.data.TFRecordDataset(path, compression_type=compression_type)
            for batch in records.map(decode).batch(32):
                count += int(tf.shape(batch[0])[0])
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
                tf.errors.NotFoundError, tf.errors.UnknownError) as e:
            bad.append((path, f"after {count} readable record(s): {_tf_message(e)}"))
    return bad


def _tf_message(error: tf.errors.OpError) -> str:
    """The op error's own message without TF's function-node and op decorations."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", error.message)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text, flags=re.S).strip()


@contextlib.contextmanager
def naming_bad_shards(data_dir: str, splits: Iterable[str],
                      info: Optional[dataset_info_lib.DatasetInfo] = None) -> Iterator[None]:
    """Re-raises a read/decode error from the block as ShardReadError naming the shard(s).

    Wrap the code that iterates `make_dataset` datasets (e.g. `model.fit`). On such an
    error every shard of `splits` is re-read to find the culprit(s).
    """
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
        info = info or dataset_info_lib.read_dataset_info(data_dir)
        bad = []
        for split in splits:
            bad += find_unreadable_shards(info.shard_paths(data_dir, split),
                                          info.tfrecord_compression, info.record_format)
        if not bad:
            raise
        details = "; ".join(f"{path}: {why}" for path, why in bad)
        raise ShardReadError(f"cannot read {len(bad)} shard(s): {details}") from error


def peek_tile_shape(data_dir: str, split: str,
                    info: Optional[dataset_info_lib.DatasetInfo] = None) -> tuple[int, int]:
    """(height, width) of the first record of `split`, read from its metadata."""
    info = info or dataset_info_lib.read_dataset_info(data_dir)
    path = info.shard_paths(data_dir, split)[0]
    with naming_bad_shards(data_dir, [split], info):
        for serialized in tf.data.TFRecordDataset(path, compression_type=info.tfrecord_compression
                                                  ).take(1):
            meta = tf.io.parse_single_example(serialized, {
                "height": tf.io.FixedLenFeature([], tf.int64),
                "width": tf.io.FixedLenFeature([], tf.int64)})
            return int(meta["height"]), int(meta["width"])
    raise dataset_info_lib.DatasetError(f"{path}: shard holds no record")

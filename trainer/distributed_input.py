"""Which tiles each worker and replica reads under tf.distribute.

Training (`reader.make_dataset` with the input context): each worker reads its own
shards (sharding by FILE) when the split has at least as many shards as workers. With
fewer shards every worker reads all of them and keeps every W-th record: correct, but
each worker then reads the whole split (`sharding_note` says so in the log). With
[train] dataset_weights every worker reads every shard and keeps every W-th record, so
each worker's per-dataset streams (`reader.weighted_records`) hold records of every
dataset whatever the shards hold, and each worker mixes them by the weights.

Validation (`validation_dataset`): every validation tile counts exactly once across all
replicas of all workers, and every replica gets the same number of non-empty batches. A
replica with nothing in the last step would need an empty batch (TF cannot run a dilated
convolution on one, and MultiWorkerMirroredStrategy would have to pad it), and wrapping
around to earlier tiles would count those twice. So each worker reads every validation
shard and keeps every W-th record (the validation split is small and read once per
epoch), and its tiles are cut into the same number of batches as every other worker's,
of as equal sizes as possible (`validation_batches`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
from tiled_vessel_seg.tfrecords import reader


def sharding_note(split: str, num_shards: int, num_workers: int,
                  weighted: bool = False) -> Optional[str]:
    """One log line on how the training shards are divided among workers (None for one).
    weighted: [train] dataset_weights is set (every worker reads every shard)."""
    if num_workers <= 1:
        return None
    if weighted:
        return (f"{split} split: [train] dataset_weights: every one of {num_workers} workers "
                f"reads all {num_shards} shard(s), keeps every {num_workers}th record and "
                f"mixes its per-dataset streams by the weights")
    if num_shards >= num_workers:
        return (f"{split} split: {num_shards} shards over {num_workers} workers, each worker "
                f"reads its own (sharded by file)")
    return (f"{split} split: {num_shards} shard(s) for {num_workers} workers: every worker "
            f"reads all of them and keeps every {num_workers}th record; write at least "
            f"{num_workers} shards (vessel-preprocess --set preprocess.shards={num_workers}) "
            f"so that each worker reads only its own files")


@dataclasses.dataclass(frozen=True)
class ValidationBatches:
    """steps: global validation steps per pass. sizes[p]: the batch sizes of input
    pipeline (worker) p, in order; batch i goes to replica i % R of step i // R."""
    steps: int
    sizes: tuple[tuple[int, ...], ...]


def validation_batches(records: int, num_pipelines: int, replicas_per_pipeline: int,
                       per_replica_batch: int) -> ValidationBatches:
    """Cuts `records` tiles, dealt round-robin to `num_pipelines` workers, into the same
    number of non-empty batches per replica everywhere, each tile in exactly one batch.

    Batches hold at most `per_replica_batch` tiles, except when that would leave some
    replica without a tile in the last step: then there are fewer, slightly larger
    batches (at most about twice the size). Raises ValueError if a worker has fewer
    tiles than replicas.
    """
    if min(records, num_pipelines, replicas_per_pipeline, per_replica_batch) < 1:
        raise ValueError(f"records {records}, pipelines {num_pipelines}, replicas "
                         f"{replicas_per_pipeline} and batch {per_replica_batch} must be >= 1")
    counts = [records // num_pipelines + (1 if p < records % num_pipelines else 0)
              for p in range(num_pipelines)]
    if counts[-1] < replicas_per_pipeline:
        raise ValueError(
            f"{records} validation tile(s) for {num_pipelines * replicas_per_pipeline} "
            f"replicas: every replica needs at least one")
    steps = -(-counts[0] // (per_replica_batch * replicas_per_pipeline))
    steps = min(steps, counts[-1] // replicas_per_pipeline)
    batches = steps * replicas_per_pipeline
    sizes = tuple(tuple(n // batches + (1 if i < n % batches else 0) for i in range(batches))
                  for n in counts)
    return ValidationBatches(steps=steps, sizes=sizes)


def _batch_by_sizes(tiles: tf.data.Dataset, sizes: tuple[int, ...]) -> tf.data.Dataset:
    """Consecutive batches of exactly `sizes[0]`, `sizes[1]`, ... tiles."""
    ends = tf.constant(list(_cumulative(sizes)), tf.int64)
    size_table = tf.constant(list(sizes), tf.int64)
    return tiles.enumerate().group_by_window(
        key_func=lambda index, tile: tf.searchsorted(ends, [index], side="right",
                                                     out_type=tf.int64)[0],
        reduce_func=lambda key, window: window.map(lambda index, tile: tile).batch(
            max(sizes)),
        window_size_func=lambda key: size_table[key])


def _cumulative(sizes):
    total = 0
    for size in sizes:
        total += size
        yield total


def validation_dataset(data_dir: str, info: dataset_info_lib.DatasetInfo, global_batch: int,
                       context: Optional[tf.distribute.InputContext], *,
                       tile_shape: tuple[int, int], take_steps: Optional[int] = None,
                       split: str = "valid", with_fov: bool = False) -> tf.data.Dataset:
    """The validation batches of one input pipeline (see the module docstring).

    Returns (image float32 [b, H, W, 3] in [0, 1], mask float32 [b, H, W, 1]) batches,
    b varying by at most one between batches. `take_steps` keeps the first N global steps.
    with_fov: masks [b, H, W, 2], vessels then field of view (reader.make_dataset).
    Raises DatasetError if some replica would get no tile at all.
    """
    pipelines = context.num_input_pipelines if context else 1
    replicas = context.num_replicas_in_sync // pipelines if context else 1
    if pipelines * replicas == 1:
        return reader.make_dataset(
            data_dir, reader.InputConfig(split, global_batch, take_batches=take_steps,
                                         tile_shape=tile_shape, with_fov=with_fov),
            input_context=context, info=info)
    per_replica = context.get_per_replica_batch_size(global_batch)
    try:
        layout = validation_batches(info.splits[split].records, pipelines, replicas,
                                    per_replica)
    except ValueError as e:
        raise dataset_info_lib.DatasetError(
            f"{data_dir}: split {split!r}: {e}; add validation images or use fewer "
            f"replicas") from None
    paths = info.shard_paths(data_dir, split)
    reader.check_shards_exist(paths)
    # One sequential pass in file order, so every worker sees the same record order.
    records = tf.data.TFRecordDataset(paths, compression_type=info.tfrecord_compression)
    if pipelines > 1:
        records = records.shard(pipelines, context.input_pipeline_id)
    height, width = tile_shape
    if with_fov:
        dataset_info_lib.require_fov(data_dir, info, "validating with FOV masks")
    decode = reader.tile_decoder(info.record_format, with_fov=with_fov)
    planes = 2 if with_fov else 1
    tiles = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).map(
        lambda image, mask: (tf.ensure_shape(image, [height, width, 3]),
                             tf.ensure_shape(mask, [height, width, planes])))
    pipeline = context.input_pipeline_id if pipelines > 1 else 0
    batches = _batch_by_sizes(tiles, layout.sizes[pipeline])
    if take_steps is not None:
        batches = batches.take(take_steps * replicas)
    return batches.prefetch(tf.data.AUTOTUNE)

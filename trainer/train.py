"""Trains the U-Net on the TFRecord shards of a dataset directory (vessel-train's library;
the tool is pipeline/train_cli.py, which also builds the per-epoch tiled-inference
callback: the trainer never imports inference/).

Writes into M:
    best_model.keras        best `[train] monitor` value (ModelCheckpoint): lowest val_loss
                            (default), or highest val_dice / val_auc
    model_info.json         what inference needs (tile size, scale, overlap, threshold, ...),
                            written once best_model.keras exists
    history.json            every logged value per epoch (whole run, across restarts)
    eval/train_losses.csv, eval/train_metrics.csv and their .png plots
    logs/                   TensorBoard
    backup/                 BackupAndRestore state while training, with the config it was
                            made with (run_config.json); a run killed (even by SIGKILL) and
                            started again with the same command and config continues from
                            the last finished epoch. Removed when training ends.

`[train] batch_size` is per replica: the global batch is batch_size x replicas (all the
replicas of all workers).
With several workers (`--strategy multi_worker`, TF_CONFIG) only the chief writes M; the
others write the same files into temporary directories that are removed, and restore
from the chief's backup/.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import warnings
from typing import Optional, Sequence

import keras
import tensorflow as tf

from tiled_vessel_seg import model_info as model_info_lib
from tiled_vessel_seg import model_loading, models, storage
from tiled_vessel_seg.configs import ConfigError, to_dict
from tiled_vessel_seg.configs.schema import Config
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
from tiled_vessel_seg.tfrecords import reader, record_counts
from tiled_vessel_seg.tfrecords.schema import IMAGE_CHANNELS
from tiled_vessel_seg.trainer import callbacks as callbacks_lib
from tiled_vessel_seg.trainer import cluster as cluster_lib
from tiled_vessel_seg.trainer import distributed_input, losses, metrics
from tiled_vessel_seg.trainer import model as model_lib
from tiled_vessel_seg.trainer import schedules
from tiled_vessel_seg.trainer import strategy as strategy_lib
from tiled_vessel_seg.trainer import threshold as threshold_lib

_LOG = logging.getLogger("vessel-train")

BACKUP_DIR = "backup"
BACKUP_CONFIG = "run_config.json"  # the config backup/ was made with
EVAL_DIR = "eval"
LOGS_DIR = "logs"


def with_dataset_input(config: Config, data_dir: str,
                       info: dataset_info_lib.DatasetInfo) -> Config:
    """`config` with the model's input size taken from the dataset it trains on: the tile
    size of dataset_info.json (else the first training record's) and the records' RGB
    channels. The config's own [preprocess] tile_size is vessel-preprocess's; here it
    follows the dataset, so model_info.json and the backup's config say what was trained.

    Raises ConfigError when the config does not fit these tiles (a dilated kernel wider
    than the tile, an overlap inference would refuse).
    """
    size = info.parameters.tile_size
    height, width = ((int(size), int(size)) if size
                     else reader.peek_tile_shape(data_dir, "train", info))
    if (height, width) != (config.model.image_height, config.model.image_width):
        _LOG.info("model input %dx%d: the tiles of %s ([preprocess] tile_size %d is "
                  "vessel-preprocess's)", height, width, data_dir, config.preprocess.tile_size)
    model = dataclasses.replace(config.model, image_height=height, image_width=width,
                                image_channels=IMAGE_CHANNELS)
    preprocess = (dataclasses.replace(config.preprocess, tile_size=height)
                  if height == width else config.preprocess)
    where = dataset_info_lib.join(data_dir, dataset_info_lib.INFO_FILE)
    try:
        config = dataclasses.replace(config, model=model, preprocess=preprocess)
    except ValueError as e:  # Config.__post_init__: a kernel wider than these tiles
        raise ConfigError(f"{where}: tiles are {height}x{width}: {e}") from None
    check_config(config)
    return config


def check_config(config: Config) -> None:
    """Refuses an overlap inference would refuse for the model's tile (the config's
    single values are checked by the schema); raises ConfigError."""
    height, width = config.model.image_height, config.model.image_width
    overlap = config.tiledinfer.overlap
    if overlap >= min(height, width):
        raise ConfigError(f"[tiledinfer] overlap {overlap} must be smaller than the tile "
                          f"({height}x{width}, the dataset's tiles); inference would refuse "
                          f"the model")


def _check_model_dir(model_dir: str) -> None:
    """Refuses a model dir written for another record schema (read_model_info raises)."""
    if storage.exists(storage.join(model_dir, model_info_lib.INFO_FILE)):
        model_info_lib.read_model_info(model_dir)


def _resume_epoch(model_dir: str) -> int:
    """The epoch BackupAndRestore will resume at (0 for a fresh run)."""
    path = storage.join(model_dir, BACKUP_DIR, "training_metadata.json")
    if not storage.exists(path):
        return 0
    return int(json.loads(storage.read_text(path)).get("epoch", 0))


def _config_snapshot(config: Config) -> str:
    return json.dumps(to_dict(config), indent=1, sort_keys=True)


def check_backup_config(model_dir: str, config: Config) -> None:
    """Refuses to resume from M/backup/ made with another config (BackupAndRestore would
    restore weights into a different model or schedule, or fail with a long Keras
    error). Raises ModelDirError; a backup without run_config.json is accepted."""
    path = storage.join(model_dir, BACKUP_DIR, BACKUP_CONFIG)
    if not _resume_epoch(model_dir) or not storage.exists(path):
        return
    saved = json.loads(storage.read_text(path))
    current = json.loads(_config_snapshot(config))
    if saved != current:
        changed = sorted(f"[{section}] {key}" for section in set(saved) | set(current)
                         for key in set(saved.get(section, {})) | set(current.get(section, {}))
                         if saved.get(section, {}).get(key) != current.get(section, {}).get(key))
        raise model_info_lib.ModelDirError(
            f"{storage.join(model_dir, BACKUP_DIR)}: backup/ was made with another config: "
            f"remove it or use the original config (differs in {', '.join(changed[:5])}"
            f"{' ...' if len(changed) > 5 else ''})")


def _record_backup_config(model_dir: str, config: Config) -> None:
    """Writes the config into M/backup/ before the first backup of a run exists."""
    if not _resume_epoch(model_dir):
        storage.makedirs(storage.join(model_dir, BACKUP_DIR))
        storage.write_text_atomic(storage.join(model_dir, BACKUP_DIR, BACKUP_CONFIG),
                                  _config_snapshot(config))


def _steps(records: int, global_batch: int, split: str, data_dir: str) -> int:
    if records < global_batch:
        raise dataset_info_lib.DatasetError(
            f"{data_dir}: split {split!r} has {records} tiles, fewer than one global batch "
            f"of {global_batch}; lower [train] batch_size or add data")
    return records // global_batch


def make_callbacks(config: Config, model_dir: str, resume_epoch: int, *,
                   write_dir: Optional[str] = None, model_info=None,
                   extra: Sequence = ()) -> list:
    """The callbacks in the order their epoch-end work must happen: logs first, the
    backup last (so a finished backup implies finished logs).

    model_dir is the chief's (the history to resume from, the backup to restore);
    write_dir is where this process writes (model_dir on the chief, else a temporary
    directory); every worker gets the same callbacks, so that the collective ops some of
    them run (saving) happen on all. `model_info` is written once a best model exists;
    `extra` callbacks (chief only) come before the backup.

    The checkpoint, early stopping and plateau reduction watch `[train] monitor` in its
    direction (`monitor_mode`); on a resumed run they start from the monitor's values of
    the epochs before `resume_epoch` in history.json.
    """
    write_dir = write_dir or model_dir
    past = callbacks_lib.history_before(
        callbacks_lib.read_history(storage.join(model_dir, callbacks_lib.HISTORY_FILE)),
        resume_epoch)
    monitor, mode = config.train.monitor, config.train.monitor_mode
    past_values = past.get(monitor, [])
    metrics = config.train.metrics if len(config.train.metrics) >= 2 else (
        "dice_coef", "val_dice_coef")
    finite = [v for v in past_values if v is not None and math.isfinite(v)]
    best_so_far = (min if mode == "min" else max)(finite, default=None)
    callbacks = [
        callbacks_lib.EpochLogs(write_dir, metrics=metrics[:2], monitor=monitor),
        model_lib.InferenceCheckpoint(
            storage.join(write_dir, model_info_lib.MODEL_FILE), monitor=monitor, mode=mode,
            save_best_only=True, initial_value_threshold=best_so_far, verbose=1),
    ]
    if model_info is not None:
        callbacks.append(callbacks_lib.WriteModelInfo(write_dir, model_info))
    callbacks.append(callbacks_lib.ResumableEarlyStopping(
        past_values=past_values, monitor=monitor, mode=mode, patience=config.train.patience,
        verbose=1))
    if schedules.uses_plateau_reduction(config):
        callbacks.append(callbacks_lib.ResumableReduceLROnPlateau(
            past_values=past_values, monitor=monitor, mode=mode,
            factor=config.train.reducer_factor, patience=config.train.reducer_patience,
            min_lr=0.0, verbose=1))
    callbacks.append(keras.callbacks.TensorBoard(storage.join(write_dir, LOGS_DIR),
                                                 profile_batch=0))
    if write_dir == model_dir:
        callbacks.extend(extra)
    backup_dir = storage.join(model_dir, BACKUP_DIR)
    if write_dir == model_dir:
        callbacks.append(keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True))
    else:
        callbacks.append(callbacks_lib.WorkerBackupAndRestore(
            backup_dir, storage.join(write_dir, BACKUP_DIR)))
    return callbacks


def init_weights(model: keras.Model, init_model: str) -> str:
    """Sets `model`'s weights to those of `init_model` (a shipped model name or a model
    dir, loaded in safe_mode); returns where they came from.

    Raises:
      ConfigError: an unknown name, or a model of another architecture (names the first
        weight that differs).
      ModelDirError: the model dir is unusable.
    """
    try:
        folder = models.resolve_model(init_model)
    except models.UnknownModelError as e:
        raise ConfigError(f"[train] init_model: {e}") from None
    source, _ = model_loading.load_model(folder)
    theirs, ours = source.weights, model.weights
    for index, ours_w in enumerate(ours):
        theirs_w = theirs[index] if index < len(theirs) else None
        if theirs_w is None or tuple(theirs_w.shape) != tuple(ours_w.shape):
            got = (f"{theirs_w.path} {tuple(theirs_w.shape)}" if theirs_w is not None
                   else "nothing")
            raise ConfigError(
                f"[train] init_model {init_model}: another architecture: weight {index} is "
                f"{ours_w.path} {tuple(ours_w.shape)} here, {got} there; use its [model] "
                f"section (model_info.json's config; for a shipped model: --config "
                f"{init_model})")
    if len(theirs) != len(ours):
        raise ConfigError(f"[train] init_model {init_model}: another architecture: "
                          f"{len(theirs)} weights there, {len(ours)} here")
    model.set_weights(source.get_weights())
    return f"{init_model} ({folder})"


def train(config: Config, data_dir: str, model_dir: str, *, strategy: Optional[str] = None,
          num_cpu_replicas: int = 0, precision: str = "auto",
          global_batch: Optional[int] = None, worker_timeout: Optional[float] = None,
          callbacks: Sequence = (), verbose: int = 2) -> dict:
    """Trains per `config` on the dataset in `data_dir` into `model_dir`; returns the
    history of this process' epochs {key: [values]}.

    The model's input size is the dataset's tile size (`with_dataset_input`), whatever
    the config's [preprocess] tile_size.

    strategy: auto, one_device, mirrored or multi_worker (trainer/strategy.py); default
      [train] strategy. With multi_worker every worker of TF_CONFIG runs this with the
      same arguments; only the chief writes model_dir.
    worker_timeout: seconds to wait for every worker of TF_CONFIG to come up.
    callbacks: extra Keras callbacks, run on the chief only, after the logs, checkpoint
      and model_info.json of each epoch and before its backup.

    Raises:
      ConfigError: a config value training or inference would refuse later.
      ClusterError: an unusable TF_CONFIG.
      DatasetError: no dataset_info.json, a missing split or shard,
        [train] loss_mask = "fov" on records without FOV planes.
      ModelDirError: model_dir was written for another record schema, or its backup/
        with another config.
      ShardReadError: a shard cannot be read (the message names it).
      ValueError: global batch not divisible by the replica count.
    """
    distribution = strategy_lib.make_distribution(  # before any other TF work
        strategy or config.train.strategy, num_cpu_replicas,
        strategy_lib.DEFAULT_WORKER_TIMEOUT if worker_timeout is None else worker_timeout)
    strategy = distribution.strategy
    replicas = distribution.num_replicas
    batch = strategy_lib.global_batch_size(config.train.batch_size, replicas, global_batch)
    where = (f"; this is task {distribution.cluster.this_task}"
             f"{' (chief)' if distribution.is_chief else ''}" if distribution.cluster else "")
    _LOG.info("strategy %s: %d worker(s), %d replica(s) in sync, global batch %d "
              "(%d per replica)%s", distribution.name, distribution.num_workers, replicas,
              batch, batch // replicas, where)
    policy = strategy_lib.set_precision(precision)

    # The validation pass is one finite pass of unknown length: Keras learns its length by
    # running out of data in epoch 1 and says "interrupting training", which it is not.
    # (The training stream repeats forever, so it never runs out.)
    warnings.filterwarnings("ignore", message="Your input ran out of data")

    info = dataset_info_lib.read_dataset_info(data_dir)
    # An empty split would make fit() spin on an endless empty stream (train) or end
    # with no val_loss to select a model by (valid): refused here, naming the shard.
    record_counts.check_splits(data_dir, info, ("train", "valid"), "training")
    config = with_dataset_input(config, data_dir, info)
    tile_size = (config.model.image_height, config.model.image_width)
    with_fov = config.train.loss_mask == "fov"  # labels [b, H, W, 2]: vessels, FOV
    if with_fov:
        dataset_info_lib.require_fov(data_dir, info, '[train] loss_mask = "fov"')
    _check_model_dir(model_dir)
    check_backup_config(model_dir, config)
    if distribution.is_chief:
        storage.makedirs(model_dir)

    steps_per_epoch = config.train.steps_per_epoch or _steps(
        info.splits["train"].records, batch, "train", data_dir)
    _LOG.info("precision %s, %d steps per epoch", policy, steps_per_epoch)
    shards = len(info.splits["train"].shards)
    note = distributed_input.sharding_note("train", shards, distribution.num_workers,
                                           weighted=bool(config.train.dataset_weights))
    if note:
        (_LOG.info if shards >= distribution.num_workers else _LOG.warning)(note)

    keras.utils.set_random_seed(config.train.seed)
    if config.train.deterministic:  # same seed and data -> same weights, bit for bit
        tf.config.experimental.enable_op_determinism()
    with strategy.scope():
        model = model_lib.build_model(config.model)
        optimizer = keras.optimizers.Adam(
            learning_rate=schedules.learning_rate(config, steps_per_epoch),
            clipvalue=config.model.clipvalue)
        model.compile(optimizer=optimizer, loss=losses.get_loss(config.model.loss),
                      metrics=metrics.segmentation_metrics(config.tiledinfer.threshold))
    if config.model.show_summary:
        model.summary()
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    _LOG.info("model %s: %s parameters (%s trainable)", config.model.architecture,
              f"{model.count_params():,}", f"{trainable:,}")
    if config.train.init_model:  # fine-tuning (a resumed run's backup/ overrides it)
        _LOG.info("initial weights: %s", init_weights(model, config.train.init_model))
    strategy_lib.adapt_keras(model, distribution)

    train_input = reader.InputConfig.for_training(config.train, batch, tile_size)

    def train_fn(context):
        return reader.make_dataset(data_dir, train_input, input_context=context, info=info)

    def valid_fn(context):  # every validation tile counted once, whatever the replicas
        return distributed_input.validation_dataset(
            data_dir, info, batch, context, tile_shape=tile_size,
            take_steps=config.train.validation_steps, with_fov=with_fov)

    train_data = strategy.distribute_datasets_from_function(train_fn)
    valid_data = strategy.distribute_datasets_from_function(valid_fn)

    model_info = model_info_lib.ModelInfo(
        tile_size=tile_size[0], scale=info.parameters.scale,
        overlap=config.tiledinfer.overlap, threshold=config.tiledinfer.threshold,
        precision=policy, data_ids={s: list(v.image_ids) for s, v in info.splits.items()},
        config=to_dict(config), source_sizes=[list(s) for s in info.source_sizes],
        fov_diameter=info.fov_diameter)

    resume_epoch = _resume_epoch(model_dir)
    if resume_epoch:
        _LOG.info("resuming from %s after epoch %d", storage.join(model_dir, BACKUP_DIR),
                  resume_epoch)
    with cluster_lib.worker_write_dir(model_dir, distribution.cluster) as write_dir:
        if distribution.is_chief:
            _record_backup_config(model_dir, config)
        try:
            with reader.naming_bad_shards(data_dir, ["train", "valid"], info):
                history = model.fit(
                    train_data, epochs=config.train.epochs, steps_per_epoch=steps_per_epoch,
                    validation_data=valid_data, shuffle=False, verbose=verbose,
                    callbacks=make_callbacks(config, model_dir, resume_epoch,
                                             write_dir=write_dir, model_info=model_info,
                                             extra=callbacks))
        except tf.errors.UnavailableError as e:
            if distribution.cluster is None:
                raise
            raise cluster_lib.WorkerLostError(
                cluster_lib.worker_lost_message(e, model_dir)) from None
    if (config.train.select_threshold and distribution.is_chief
            and storage.exists(model_info.model_path(model_dir))):
        threshold_lib.store_valid_threshold(model_dir, valid_fn(None))
    if distribution.cluster is not None:
        # Every worker leaves together: a worker exiting while the chief still works makes
        # the chief's coordination service log a heartbeat error (tensorflow#58434).
        ones = tf.function(lambda: strategy.run(lambda: tf.constant(1.0)))()
        strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)
    return history.history

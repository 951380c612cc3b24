"""Scores the best model of a model dir on one split of a dataset (vessel-evaluate's
library; the tool is trainer/evaluate_cli.py).

Loads M/best_model.keras with safe_mode=True, evaluates every tile of the split once and
writes M/evaluation.csv ("metric,value": loss, dice_coef, dice, iou, sensitivity,
specificity, accuracy, auc).

loss and dice_coef are the reference's per-batch values averaged over batches (the loss
weighted by batch size); the thresholded metrics and AUC count every pixel of the split.
"""
from __future__ import annotations

import warnings
from typing import Optional

import tensorflow as tf

from tiled_vessel_seg import keras_objects, model_loading, storage
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
from tiled_vessel_seg.tfrecords import reader, record_counts
from tiled_vessel_seg.trainer import metrics

EVALUATION_FILE = "evaluation.csv"


def write_evaluation(model_dir: str, results: dict[str, float]) -> str:
    """Writes results as "metric,value" rows to M/evaluation.csv; returns its path."""
    return storage.write_text_atomic(
        storage.join(model_dir, EVALUATION_FILE),
        "metric,value\n" + "".join(f"{name},{value:.6f}\n" for name, value in results.items()))


def read_evaluation(model_dir: str) -> dict[str, float]:
    lines = storage.read_text(storage.join(model_dir, EVALUATION_FILE)).splitlines()
    rows = [line.strip().split(",") for line in lines[1:] if line.strip()]
    return {name: float(value) for name, value in rows}


def evaluate(model_dir: str, data_dir: str, split: str = "test", *,
             batch_size: Optional[int] = None, verbose: int = 2,
             output_dir: Optional[str] = "") -> dict[str, float]:
    """Evaluates M/best_model.keras on `split`; writes and returns {metric: value}.

    output_dir: where evaluation.csv goes; "" = model_dir, None = nowhere (a shipped
    model's folder, inside the installed package, is never written).

    Runs on one device (the first GPU if any): every tile counts exactly once, which a
    multi-replica pass cannot promise (a replica may get an empty last batch, and TF
    cannot run a dilated convolution on one).
    """
    strategy = tf.distribute.get_strategy()
    data_info = dataset_info_lib.read_dataset_info(data_dir)
    record_counts.check_splits(data_dir, data_info, [split], "vessel-evaluate")
    with strategy.scope():
        model, info = model_loading.load_model(model_dir, compile=True)
        model.compile(optimizer=model.optimizer, loss=keras_objects.BceDiceLoss(),
                      metrics=metrics.segmentation_metrics(info.threshold))
    height, width = model.input_shape[1:3]
    size = data_info.parameters.tile_size
    tile = (int(size), int(size)) if size else reader.peek_tile_shape(data_dir, split, data_info)
    if tile != (height, width):
        raise dataset_info_lib.DatasetError(
            f"{data_dir}: tiles are {tile[0]}x{tile[1]} but the model in {model_dir} takes "
            f"{height}x{width}")

    params = reader.InputConfig(
        split, batch_size or int(info.config.get("train", {}).get("batch_size", 2)),
        tile_shape=tile)
    data = strategy.distribute_datasets_from_function(
        lambda context: reader.make_dataset(data_dir, params, input_context=context,
                                            info=data_info))
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    with reader.naming_bad_shards(data_dir, [split], data_info):
        results = model.evaluate(data, return_dict=True, verbose=verbose)
    ordered = {name: float(results[name]) for name in ("loss",) + metrics.METRIC_NAMES}
    if output_dir is not None:
        write_evaluation(output_dir or model_dir, ordered)
    return ordered

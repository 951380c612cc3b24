"""vessel-evaluate: scores the best model of a model dir on one split of a dataset.

    vessel-evaluate --model_dir M --data_dir D [--split test]

Loads M/best_model.keras with safe_mode=True, evaluates every tile of the split once and
writes M/evaluation.csv ("metric,value": loss, dice_coef, dice, iou, sensitivity,
specificity, accuracy, auc), which it also prints.

loss and dice_coef are the reference's per-batch values averaged over batches (the loss
weighted by batch size); the thresholded metrics and AUC count every pixel of the split.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import Optional, Sequence

EVALUATION_FILE = "evaluation.csv"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vessel-evaluate",
        description="Evaluate M/best_model.keras (written by vessel-train) on one split of "
                    "a dataset written by vessel-preprocess; writes M/evaluation.csv.")
    parser.add_argument("--model_dir", required=True, help="model dir written by vessel-train")
    parser.add_argument("--data_dir", required=True,
                        help="dataset directory with dataset_info.json (local path or gs://)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--batch_size", type=int, default=None,
                        help="batch (default: the training config's per-replica batch_size)")
    parser.add_argument("--verbose", default="auto", choices=("auto", "0", "1", "2"),
                        help="Keras verbosity (auto = progress bar on a terminal)")
    return parser


def write_evaluation(model_dir: str, results: dict[str, float]) -> str:
    """Writes results as "metric,value" rows to M/evaluation.csv; returns its path."""
    from tiled_vessel_seg import storage
    return storage.write_text_atomic(
        storage.join(model_dir, EVALUATION_FILE),
        "metric,value\n" + "".join(f"{name},{value:.6f}\n" for name, value in results.items()))


def read_evaluation(model_dir: str) -> dict[str, float]:
    from tiled_vessel_seg import storage
    lines = storage.read_text(storage.join(model_dir, EVALUATION_FILE)).splitlines()
    rows = [line.strip().split(",") for line in lines[1:] if line.strip()]
    return {name: float(value) for name, value in rows}


def load_model(model_dir: str):
    """(model, ModelInfo): the best model loaded with safe_mode=True and compile=True."""
    from tiled_vessel_seg.trainer import model as model_lib
    from tiled_vessel_seg import model_info as model_info_lib
    info = model_info_lib.read_model_info(model_dir)
    path = info.model_path(model_dir)
    if not os.path.exists(path):
        raise model_info_lib.ModelDirError(
            f"{path}: not found; vessel-train saves it after the first epoch whose val_loss "
            f"improves")
    try:
        model = model_lib.load_model(path, compile=True)
    except Exception as e:  # keras raises many types; its safe_mode refusal names no file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise model_info_lib.ModelDirError(f"{path}: cannot load the model: {reason}") from e
    return model, info


def evaluate(model_dir: str, data_dir: str, split: str = "test", *,
             batch_size: Optional[int] = None, verbose: int = 2) -> dict[str, float]:
    """Evaluates M/best_model.keras on `split`; writes and returns {metric: value}.

    Runs on one device (the first GPU if any): every tile counts exactly once, which a
    multi-replica pass cannot promise (a replica may get an empty last batch, and TF
    cannot run a dilated convolution on one).
    """
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()

    from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
    from tiled_vessel_seg.tfrecords import reader
    from tiled_vessel_seg.trainer import losses, metrics

    data_info = dataset_info_lib.read_dataset_info(data_dir)
    data_info.shard_paths(data_dir, split)  # raises naming the splits it has
    with strategy.scope():
        model, info = load_model(model_dir)
        model.compile(optimizer=model.optimizer, loss=losses.BceDiceLoss(),
                      metrics=metrics.segmentation_metrics(info.threshold))
    height, width = model.input_shape[1:3]
    size = data_info.parameters.tile_size
    tile = (int(size), int(size)) if size else reader.peek_tile_shape(data_dir, split, data_info)
    if tile != (height, width):
        raise dataset_info_lib.DatasetError(
            f"{data_dir}: tiles are {tile[0]}x{tile[1]} but the model in {model_dir} takes "
            f"{height}x{width}")

    batch = batch_size or int(info.config.get("train", {}).get("batch_size", 2))
    if batch < 1:
        raise ValueError(f"--batch_size must be >= 1, got {batch}")
    data = strategy.distribute_datasets_from_function(
        lambda context: reader.make_dataset(data_dir, split, batch, training=False,
                                            input_context=context, info=data_info,
                                            tile_shape=tile))
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    with reader.naming_bad_shards(data_dir, [split], data_info):
        results = model.evaluate(data, return_dict=True, verbose=verbose)
    ordered = {name: float(results[name]) for name in ("loss",) + metrics.METRIC_NAMES}
    write_evaluation(model_dir, ordered)
    return ordered


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # Our progress at INFO; TensorFlow's own INFO chatter (per-variable reduce logs) stays out.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("vessel-train").setLevel(logging.INFO)
    from tiled_vessel_seg.tfrecords.dataset_info import DatasetError
    from tiled_vessel_seg.model_info import ModelDirError
    from tiled_vessel_seg.trainer.train import resolve_verbose
    try:
        results = evaluate(args.model_dir, args.data_dir, args.split,
                           batch_size=args.batch_size,
                           verbose=resolve_verbose(args.verbose))
    except (DatasetError, ModelDirError, ValueError) as e:
        print(f"vessel-evaluate: error: {e}", file=sys.stderr)
        return 2
    print(f"{args.split} split of {args.data_dir}:")
    for name, value in results.items():
        print(f"  {name:12s} {value:.4f}")
    print(f"vessel-evaluate: wrote {os.path.join(args.model_dir, EVALUATION_FILE)}")
    return 0


if __name__ == "__main__":
    sys.exit(run())

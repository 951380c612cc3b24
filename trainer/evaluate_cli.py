"""vessel-evaluate: scores the best model of a model dir on one split of a dataset.

    vessel-evaluate --model M --data_dir D [--split test]
    vessel-evaluate --model stare_small --data_dir D --output_dir O

Loads M/best_model.keras with safe_mode=True, evaluates every tile of the split once on
one device and writes M/evaluation.csv ("metric,value": loss, dice_coef, dice, iou,
sensitivity, specificity, accuracy, auc), which it also prints. --model also takes a
shipped model's name; its folder is never written: its figures go to --output_dir.

Exit status: 0 evaluated; 2 flags, model dir or dataset unusable.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, models, storage
from tiled_vessel_seg.lazy_imports import lazy_imports
from tiled_vessel_seg.model_info import ModelDirError
from tiled_vessel_seg.tfrecords.dataset_info import DatasetError
from tiled_vessel_seg.trainer import cli_flags

with lazy_imports():  # TensorFlow: not for --help
    from tiled_vessel_seg.trainer import evaluate

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("model", None, "A shipped model name (stare_small) or a model dir "
                        "written by vessel-train (local or gs://). --model_dir is an alias.")
    flags.DEFINE_alias("model_dir", "model")
    flags.DEFINE_string("output_dir", None, "Where evaluation.csv is written (default: the "
                        "model dir; for a shipped model the figures are only printed unless "
                        "this is given).")
    flags.DEFINE_string("data_dir", None, "Dataset directory with dataset_info.json (local "
                        "or gs://).")
    flags.DEFINE_string("split", "test", "Split to evaluate.")
    flags.DEFINE_integer("batch_size", None, "Tiles per batch (default: the training "
                         "config's per-replica batch_size).", lower_bound=1)
    cli_flags.define_keras_verbose()
    flags.declare_key_flag("keras_verbose")  # listed by --help with this tool's flags


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    for name in ("model", "data_dir"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    try:
        model_dir = models.resolve_model(FLAGS.model)
    except models.UnknownModelError as e:
        raise cli_app.ToolError(str(e)) from None
    shipped = model_dir != FLAGS.model  # a name: the installed package's folder
    output_dir = FLAGS.output_dir or (None if shipped else "")
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        if FLAGS.output_dir:
            storage.makedirs(FLAGS.output_dir)
        results = evaluate.evaluate(model_dir, FLAGS.data_dir, FLAGS.split,
                                    batch_size=FLAGS.batch_size,
                                    verbose=cli_flags.keras_verbose(), output_dir=output_dir)
    except (DatasetError, ModelDirError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    print(f"{FLAGS.split} split of {FLAGS.data_dir}:")
    for name, value in results.items():
        print(f"  {name:12s} {value:.4f}")
    if output_dir is None:
        print(f"vessel-evaluate: the shipped model {FLAGS.model} is not written to; pass "
              "--output_dir to keep these figures in evaluation.csv")
    else:
        print(f"vessel-evaluate: wrote "
              f"{storage.join(output_dir or model_dir, evaluate.EVALUATION_FILE)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs vessel-evaluate in this process (tests, notebooks); argv without the program
    name."""
    args = cli_flags.accept_old_verbose(list(sys.argv[1:] if argv is None else argv))
    return cli_app.invoke(__name__, __doc__, define_flags, _main, ["vessel-evaluate", *args])


def run() -> None:
    """Console entry point `vessel-evaluate`."""
    argv = [sys.argv[0], *cli_flags.accept_old_verbose(sys.argv[1:])]
    cli_app.run(__name__, __doc__, define_flags, _main, argv=argv)


if __name__ == "__main__":
    run()

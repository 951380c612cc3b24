"""vessel-train: trains the vessel-segmentation U-Net on the TFRecord shards written by
vessel-preprocess.

    vessel-train --config configs/stare.config --data_dir D --model_dir M [--set k=v ...]
    vessel-train --data_dir D --model_dir M --num_cpu_replicas 2     # 2 CPU replicas
    TF_CONFIG='{"cluster": ..., "task": ...}' vessel-train --config C --data_dir gs://... \\
        --model_dir gs://...      # on every machine of a multi-worker job (same command)

--strategy (or [train] strategy): auto picks multi_worker when TF_CONFIG lists more than
one worker, mirrored with several GPUs (or --num_cpu_replicas > 1), else one_device. With
multi_worker every worker runs the same command; only the chief (task 0) writes M, and a
worker that is not up within --worker_timeout seconds ends the wait with an error.

Writes into M: best_model.keras, model_info.json (with the first best model),
history.json, eval/train_losses.csv and train_metrics.csv with plots, logs/
(TensorBoard), backup/ while training: the same command continues a killed run from its
last finished epoch. With [train] epoch_change_tiledinfer = True, masks of [tiledinfer]
images_dir after every epoch in M/epoch_change_tiledinfer/.

Exit status: 0 trained; 1 a worker of the cluster stopped during training (restart every
worker: training resumes); 2 flags, config, dataset or model dir unusable.
"""
from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from absl import app, flags

from tiled_vessel_seg import cli_app, model_info, storage
from tiled_vessel_seg.configs import ConfigError, tool_config
from tiled_vessel_seg.lazy_imports import lazy_imports
from tiled_vessel_seg.names import PRECISIONS, STRATEGIES
from tiled_vessel_seg.trainer import cli_flags, cluster

with lazy_imports():  # TensorFlow: not imported for --help
    from tiled_vessel_seg.pipeline import training_callbacks
    from tiled_vessel_seg.tfrecords import dataset_info
    from tiled_vessel_seg.trainer import train

FLAGS = flags.FLAGS


def define_flags() -> None:
    flags.DEFINE_string("data_dir", None, "Dataset directory written by vessel-preprocess "
                        "(dataset_info.json, train/ and valid/ shards); local or gs://.")
    flags.DEFINE_string("model_dir", None, "Output directory, local or gs:// (default: "
                        "[train] model_dir of the config).")
    flags.DEFINE_enum("strategy", None, list(STRATEGIES),
                      "auto: multi_worker if TF_CONFIG lists several workers, mirrored with "
                      "several GPUs (or --num_cpu_replicas > 1), else one_device. "
                      "multi_worker: MultiWorkerMirroredStrategy over the machines of "
                      "TF_CONFIG (default: [train] strategy, auto).")
    flags.DEFINE_float("worker_timeout", 600.0, "multi_worker: seconds to wait for every "
                       "worker of TF_CONFIG to come up before stopping with an error.")
    flags.DEFINE_integer("num_cpu_replicas", 0, "Split the CPU into N logical devices and "
                         "mirror over them (the multi-replica path without GPUs).",
                         lower_bound=0)
    flags.DEFINE_enum("precision", "auto", list(PRECISIONS),
                      "auto: mixed_float16 on GPU, float32 on CPU.")
    flags.DEFINE_integer("global_batch_size", None, "Global batch, a multiple of the "
                         "replica count (default: [train] batch_size x replicas).")
    flags.DEFINE_bool("deterministic", False, "Reproducible bit for bit: seeded, ordered "
                      "input and TF's op determinism (slower); same as --set "
                      "train.deterministic=True.")
    cli_flags.define_keras_verbose()
    flags.declare_key_flag("keras_verbose")  # listed by --help with this tool's flags
    cli_flags.define_init_model()


def _log_progress(name: str) -> None:
    """The trainer's progress lines at INFO as "vessel-train: ..." on stderr; TensorFlow's
    own INFO chatter (per-variable reduce logs) stays out."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if FLAGS.verbose else logging.INFO)
    if not FLAGS.verbose:  # absl's handler passes INFO: per-step all-reduce lines
        logging.getLogger("tensorflow").setLevel(logging.WARNING)


def _main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.data_dir:
        raise app.UsageError("--data_dir is required")
    _log_progress("vessel-train")
    config = tool_config.load_config({"train.init_model": cli_flags.init_model_value(),
                                      "train.strategy": FLAGS.strategy,
                                  "train.deterministic": FLAGS.deterministic or None})
    model_dir = FLAGS.model_dir or config.train.model_dir

    try:
        callbacks = training_callbacks.for_training(config, FLAGS.data_dir, model_dir)
        train.train(config, FLAGS.data_dir, model_dir, num_cpu_replicas=FLAGS.num_cpu_replicas,
                    precision=FLAGS.precision, global_batch=FLAGS.global_batch_size,
                    worker_timeout=FLAGS.worker_timeout,
                    callbacks=callbacks,
                    verbose=cli_flags.keras_verbose())
    except (ConfigError, dataset_info.DatasetError, model_info.ModelDirError, ValueError,
            storage.StorageError) as e:  # StorageError: a model dir that cannot be written
        raise cli_app.ToolError(str(e)) from None
    except cluster.WorkerLostError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"vessel-train: model and logs in {model_dir}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs vessel-train in this process (tests, notebooks); argv without the program name."""
    args = cli_flags.accept_old_verbose(list(sys.argv[1:] if argv is None else argv))
    return cli_app.invoke(__name__, __doc__, define_flags, _main, ["vessel-train", *args])


def run() -> None:
    """Console entry point `vessel-train`."""
    argv = [sys.argv[0], *cli_flags.accept_old_verbose(sys.argv[1:])]
    cli_app.run(__name__, __doc__, define_flags, _main, argv=argv)


if __name__ == "__main__":
    run()

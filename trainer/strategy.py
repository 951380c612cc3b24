"""Device setup: the distribution strategy and the mixed-precision policy.

Order matters: the strategy (and `configure_cpu_replicas`) must come before anything
initialises TF's devices (creating a tensor or a model); MultiWorkerMirroredStrategy in
particular must be created before any other TF op of the process. CLIs call it first.

Strategies (`--strategy`, `[train] strategy`):
  one_device    the default strategy: the first GPU if any, else the CPU
  mirrored      MirroredStrategy over this machine's GPUs (or N logical CPUs with
                --num_cpu_replicas N)
  multi_worker  MultiWorkerMirroredStrategy over the machines of TF_CONFIG (trainer/cluster.py),
                each with its GPUs or its CPU
  auto          multi_worker if TF_CONFIG lists more than one worker, else mirrored with
                several GPUs (or --num_cpu_replicas > 1), else one_device
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Mapping, Optional

import tensorflow as tf

from tiled_vessel_seg.names import PRECISIONS, STRATEGIES
from tiled_vessel_seg.trainer import cluster as cluster_lib

# Seconds a worker waits for every other worker of TF_CONFIG to come up. Cloud workers
# start minutes apart (machine and container start-up); TF's own limit is an hour.
DEFAULT_WORKER_TIMEOUT = 600.0

_LOG = logging.getLogger(__name__)


def configure_cpu_replicas(num_replicas: int) -> None:
    """Splits the (first) CPU into `num_replicas` logical devices "/cpu:0".."/cpu:N-1".

    This is how the multi-replica path runs (and is tested) without GPUs.
    Raises RuntimeError if TF's devices are already initialised in this process.
    """
    if num_replicas < 1:
        raise ValueError(f"--num_cpu_replicas must be >= 1, got {num_replicas}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) == num_replicas:
        return  # already split this way (a second run in the same process)
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(num_replicas)])
    except RuntimeError as e:
        raise RuntimeError("cannot split the CPU into logical devices: TensorFlow devices are "
                           "already initialised in this process; configure replicas before "
                           f"creating tensors or models ({e})") from None


def resolve_strategy(name: str, cluster: Optional[cluster_lib.Cluster], num_gpus: int,
                     num_cpu_replicas: int = 0) -> str:
    """The strategy `name` stands for here: one_device, mirrored or multi_worker.

    Pure: `cluster` is TF_CONFIG's (None if unset), `num_gpus` this machine's GPUs.
    Raises ValueError for an unknown name or --num_cpu_replicas with a strategy that
    does not use it.
    """
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "auto":
        if cluster is not None and cluster.num_workers > 1:
            name = "multi_worker"
        elif num_cpu_replicas > 1 or num_gpus > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if num_cpu_replicas > 1 and name != "mirrored":
        raise ValueError(f"--num_cpu_replicas {num_cpu_replicas} splits one machine's CPU for "
                         f"the mirrored strategy; the {name} strategy does not use it"
                         + (" (each worker is one CPU replica)" if name == "multi_worker" else ""))
    return name


@dataclasses.dataclass(frozen=True)
class Distribution:
    """A strategy and this process' place in it.

    name: one_device, mirrored or multi_worker. cluster: TF_CONFIG's cluster for
    multi_worker with several workers, else None (one process is the whole job).
    """
    name: str
    strategy: tf.distribute.Strategy
    cluster: Optional[cluster_lib.Cluster] = None

    @property
    def num_workers(self) -> int:
        return self.cluster.num_workers if self.cluster else 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the model dir (always, without a cluster)."""
        return self.cluster is None or self.cluster.is_chief

    @property
    def num_replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


def make_distribution(name: str = "auto", num_cpu_replicas: int = 0,
                      worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
                      environ: Mapping[str, str] = os.environ) -> Distribution:
    """Creates the strategy `name` resolves to (see the module docstring).

    Call it before any other TF work. For multi_worker with several workers this blocks
    until every worker of TF_CONFIG is up; after `worker_timeout` seconds it prints which
    cluster it waited for and ends the process (see cluster.StartupWatchdog).

    Raises ClusterError (a ValueError) for an unusable TF_CONFIG, ValueError for an
    unknown name or a --num_cpu_replicas the strategy does not use.
    """
    if environ is os.environ and cluster_lib.TF_CONFIG in environ \
            and not environ[cluster_lib.TF_CONFIG].strip():
        # Blank means no cluster, as read_tf_config reads it; TensorFlow's own resolver
        # failed on it with "Expecting value", naming no variable.
        del os.environ[cluster_lib.TF_CONFIG]
    cluster = cluster_lib.read_tf_config(environ)
    gpus = tf.config.list_physical_devices("GPU")
    name = resolve_strategy(name, cluster, len(gpus), num_cpu_replicas)
    if name == "multi_worker":
        return _multi_worker(cluster, bool(gpus), worker_timeout)
    if name == "mirrored":
        if num_cpu_replicas > 1:
            configure_cpu_replicas(num_cpu_replicas)
            devices = [f"/cpu:{i}" for i in range(num_cpu_replicas)]
            return Distribution(name, tf.distribute.MirroredStrategy(devices=devices))
        return Distribution(name, tf.distribute.MirroredStrategy())
    return Distribution(name, tf.distribute.get_strategy())


def _multi_worker(cluster: Optional[cluster_lib.Cluster], gpus: bool,
                  worker_timeout: float) -> Distribution:
    if worker_timeout <= 0:
        raise ValueError(f"--worker_timeout must be > 0 seconds, got {worker_timeout:g}")
    CommunicationImplementation = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        # NCCL between GPUs (AUTO picks it); ring all-reduce over gRPC between CPUs.
        implementation=(CommunicationImplementation.AUTO if gpus
                        else CommunicationImplementation.RING))
    if cluster is None or cluster.num_workers == 1:
        return Distribution("multi_worker",
                            tf.distribute.MultiWorkerMirroredStrategy(communication_options=options))
    logging.getLogger("vessel-train").info(
        "strategy multi_worker: task %d of %d, waiting up to %g s for every worker of "
        "TF_CONFIG: %s", cluster.this_task, cluster.num_workers, worker_timeout,
              cluster.describe())
    message = (f"vessel-train: error: not every worker of TF_CONFIG came up within "
               f"{worker_timeout:g} s (cluster: {cluster.describe()}; this is task "
               f"{cluster.this_task}, {cluster.task_type} {cluster.task_index}); start every "
               f"worker with the same TF_CONFIG cluster, or raise --worker_timeout")
    with cluster_lib.StartupWatchdog(worker_timeout, message):
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    return Distribution("multi_worker", strategy, cluster)



def resolve_precision(precision: str) -> str:
    """The Keras dtype policy for `--precision`: auto = mixed_float16 on GPU, else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    if precision == "mixed_float16" and not tf.config.list_physical_devices("GPU"):
        _LOG.warning("mixed_float16 without a GPU is slow on CPU; mixed_bfloat16 or float32 "
                     "are the CPU choices")
    return precision


def set_precision(precision: str) -> str:
    """Sets the global Keras dtype policy (before building the model); returns its name.

    Keras wraps the optimizer in a LossScaleOptimizer itself for mixed_float16.
    """
    import keras
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy


def global_batch_size(per_replica: int, num_replicas: int,
                      global_batch: int | None = None) -> int:
    """The global batch: `global_batch` if given (must split evenly), else per_replica x N."""
    if global_batch is None:
        return per_replica * num_replicas
    if global_batch < 1 or global_batch % num_replicas:
        raise ValueError(f"global batch {global_batch} cannot be split evenly over "
                         f"{num_replicas} replicas; use a multiple of {num_replicas}")
    return global_batch




def adapt_keras(model, distribution: Distribution) -> None:
    """Works around two failures of Keras 3 (3.5 to 3.15 at least) under tf.distribute;
    call it on the compiled model before `fit`.

    1. `fit`/`evaluate` build the metrics and loss from the first batch, which Keras first
       averages over the replicas with `strategy.reduce`: that fails when replicas hold
       batches of different sizes (validation's last steps, see distributed_input) and
       across workers ("Attempt to convert a value (PerReplica ...)",
       keras-team/keras#20585). Only the batch's shapes and dtypes matter, so the model
       takes them from this process' first replica instead.
    2. With several workers, each step's logged values (scalars) are averaged across them
       with `strategy.reduce("MEAN", v, axis=0)`, which needs a batch axis: the train and
       test steps return them with shape [1], so that mean is over the replicas.

    The epoch's logs (what callbacks, history and the CSVs see) are read from the metric
    variables, summed over every replica of every worker, as on one device.
    """
    import types

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda v: (self.distribute_strategy.experimental_local_results(v)[0]
                               if isinstance(v, tf.distribute.DistributedValues) else v),
                    next(batches))
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def with_replica_axis(step):
        def step_with_axis(self, data):
            return tf.nest.map_structure(lambda v: tf.reshape(v, [1]), step(data))
        return step_with_axis

    if distribution.num_replicas > 1:
        model._maybe_symbolic_build = types.MethodType(maybe_symbolic_build, model)
    if distribution.num_workers > 1:
        model.train_step = types.MethodType(with_replica_axis(model.train_step), model)
        model.test_step = types.MethodType(with_replica_axis(model.test_step), model)

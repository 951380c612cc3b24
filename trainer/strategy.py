"""Device setup: the distribution strategy and the mixed-precision policy.

Order matters: `configure_cpu_replicas` must run before anything initialises TF's
devices (creating a tensor, a strategy or a model), so CLIs call it first thing.
"""
from __future__ import annotations

import logging

import tensorflow as tf

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")

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


def make_strategy(num_cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """MirroredStrategy over N logical CPUs if requested, over all GPUs if any, else the
    default one-device strategy."""
    if num_cpu_replicas and num_cpu_replicas > 1:
        configure_cpu_replicas(num_cpu_replicas)
        devices = [f"/cpu:{i}" for i in range(num_cpu_replicas)]
        return tf.distribute.MirroredStrategy(devices=devices)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


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

"""Plain helper functions shared by test modules (`from tests.helpers import ...`).
Fixtures live in tests/conftest.py."""
import json
import os
import subprocess
import sys
import uuid


def one_error_line(err: str) -> str:
    """The one `error:` line of a tool's stderr; fails the test unless there is exactly one
    and no traceback."""
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def model_dir_with_info(path, **fields):
    """A model dir holding only model_info.json with the given raw JSON fields."""
    path.mkdir(parents=True, exist_ok=True)
    info = {"tile_size": 32, "scale": 2, "overlap": 8, "threshold": 0.5, **fields}
    (path / "model_info.json").write_text(json.dumps(info))
    return path


def ram_dir(name: str) -> str:
    """A fresh folder on TensorFlow's in-memory filesystem (ram://: the tf.io.gfile code
    gs:// goes through, with no network)."""
    return f"ram://{uuid.uuid4().hex[:8]}/{name}"


def tree(root: str) -> dict[str, bytes]:
    """{path relative to root: bytes} of every file under root (any scheme)."""
    from tiled_vessel_seg import storage  # pylint: disable=import-outside-toplevel
    files = {}
    for name in storage.listdir(root):
        path = storage.join(root, name)
        if storage.isdir(path):
            files.update({f"{name}/{k}": v for k, v in tree(path).items()})
        else:
            files[name] = storage.read_bytes(path)
    return files


def copy_tree(source: str, destination: str) -> None:
    """Copies every file under source to destination (any schemes)."""
    from tiled_vessel_seg import storage  # pylint: disable=import-outside-toplevel
    storage.makedirs(destination)
    for name in storage.listdir(source):
        path = storage.join(source, name)
        if storage.isdir(path):
            copy_tree(path, storage.join(destination, name))
        else:
            storage.copy(path, storage.join(destination, name))


# 2 logical CPUs must be made before TF initialises: a fresh interpreter. Each replica
# gets 2 of the 4 tiles of the global batch.
_REPLICA_LOSS_SCRIPT = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tiled_vessel_seg import keras_objects
y, p = (np.array(a, np.float32) for a in json.loads(sys.argv[1]))
loss = getattr(keras_objects, sys.argv[2])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
batches = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices((y, p)).batch(4))
values = strategy.run(tf.function(loss), args=next(iter(batches)))
print(json.dumps([float(v) for v in strategy.experimental_local_results(values)]))
"""


def loss_on_two_replicas(loss_function: str, labels, probabilities) -> list[float]:
    """keras_objects.<loss_function>(labels, probabilities) under a MirroredStrategy over
    2 logical CPUs, in a fresh interpreter: labels float32 [4, H, W, C] (C = 2 with a FOV
    plane), probabilities float32 [4, H, W, 1], split 2 + 2 over the replicas. Returns the
    value each replica computed (both must be the global batch's loss)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", _REPLICA_LOSS_SCRIPT,
         json.dumps([labels.tolist(), probabilities.tolist()]), loss_function],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])

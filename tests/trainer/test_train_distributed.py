"""vessel-train in subprocesses: 2 CPU replicas vs 1, and resumption after SIGKILL
(compared with an uninterrupted run, weights and optimizer state).

Logical CPU devices are process-wide and must be set before TF initialises, hence
subprocesses (`python -m tiled_vessel_seg.pipeline.train_cli ...`).
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["preprocess.tile_size=32", "model.base_filters=4",
        "model.num_layers=3", "model.base_kernels=(3,3)", "model.dilation=(1,1)",
        "model.dropout_rate=0.0", "model.learning_rate=0.01", "train.deterministic=True",
        "tiledinfer.overlap=8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("dist_shards"))
    # 5 validation tiles on 2 replicas: batches of 2, 1, 1, 1 (each tile counted once).
    write_fake_dataset(out, tile_size=32, tiles={"train": 16, "valid": 5, "test": 4},
                       shards=2, seed=2)
    return out


def command(data_dir, model_dir, overrides, *flags):
    cmd = [sys.executable, "-m", "tiled_vessel_seg.pipeline.train_cli", "--data_dir", data_dir,
           "--model_dir", model_dir, "--keras_verbose", "2", *flags]
    for item in TINY + overrides:
        cmd += ["--set", item]
    return cmd


def environment():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_train(data_dir, model_dir, overrides, *flags):
    result = subprocess.run(command(data_dir, model_dir, overrides, *flags), cwd=REPO,
                            env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


# Runs in a fresh interpreter: 2 logical CPUs, then the same step on 2 replicas
# (per-replica batch 2) and on one device (batch 4), and a global batch of 5.
REPLICA_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.INFO)
from tiled_vessel_seg.configs import load_config
from tiled_vessel_seg.trainer import train
data_dir, out, tiny = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
steps = ["train.epochs=1", "train.steps_per_epoch=3"]
two = train.train(load_config(None, tiny + steps + ["train.batch_size=2"]), data_dir,
                  out + "/two", num_cpu_replicas=2, verbose=0)
try:
    train.train(load_config(None, tiny + steps), data_dir, out + "/bad", num_cpu_replicas=2,
                global_batch=5, verbose=0)
    refused = ""
except ValueError as e:
    refused = str(e)
one = train.train(load_config(None, tiny + steps + ["train.batch_size=4"]), data_dir,
                  out + "/one", num_cpu_replicas=0, verbose=0)
print(json.dumps({"two": two, "one": one, "refused": refused}))
"""


@pytest.mark.slow  # three trainings in a subprocess
def test_two_replicas_train_exactly_like_one(data_dir, tmp_path):
    result = subprocess.run([sys.executable, "-c", REPLICA_SCRIPT, data_dir, str(tmp_path),
                             json.dumps(TINY)], cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert ("strategy mirrored: 1 worker(s), 2 replica(s) in sync, global batch 4 "
            "(2 per replica)") in result.stderr
    assert ("strategy one_device: 1 worker(s), 1 replica(s) in sync, global batch 4 "
            "(4 per replica)") in result.stderr
    assert "global batch 5 cannot be split evenly over 2 replicas" in report["refused"]
    two, one = report["two"], report["one"]
    assert two["loss"][0] == pytest.approx(one["loss"][0], rel=1e-5)
    # Pixel counts do not depend on how tiles are batched: equal when each of the 5
    # validation tiles counts exactly once on 2 replicas as on one device.
    for name in ("val_accuracy", "val_specificity", "val_sensitivity", "val_auc"):
        assert two[name][0] == pytest.approx(one[name][0], rel=1e-6, abs=1e-7), name
    from tiled_vessel_seg.model_loading import load_model
    one, two = (load_model(str(tmp_path / name))[0].get_weights() for name in ("one", "two"))
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    # The comparison means something: three Adam steps at lr 0.01 moved the weights.
    from tiled_vessel_seg.configs import load_config
    from tiled_vessel_seg.trainer.model import build_unet
    keras.utils.set_random_seed(0)
    initial = build_unet(load_config(None, TINY).model).get_weights()
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(initial, one)) > 1e-3


def test_cli_refuses_an_indivisible_global_batch(data_dir, tmp_path):
    result = subprocess.run(
        command(data_dir, str(tmp_path / "m"), ["train.epochs=1"], "--num_cpu_replicas", "2",
                "--global_batch_size", "5"),
        cwd=REPO, env=environment(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "global batch 5 cannot be split evenly over 2 replicas" in result.stderr


def _backup_epoch(model_dir):
    path = os.path.join(model_dir, "backup", "training_metadata.json")
    try:
        with open(path) as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def _csv_epochs(model_dir, name):
    with open(os.path.join(model_dir, "eval", name)) as f:
        return [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]


@pytest.fixture(scope="module")
def one_shard_dir(tmp_path_factory):
    # One training shard read in order (shuffle_buffer=1) and one pass per epoch: every
    # epoch sees the same batches, so a resumed run can be compared with one that was not.
    out = str(tmp_path_factory.mktemp("one_shard"))
    write_fake_dataset(out, tile_size=32, tiles={"train": 32, "valid": 4}, shards=1, seed=4)
    return out


def _weights_and_optimizer(model_dir):
    from tiled_vessel_seg.model_loading import load_model
    model, _ = load_model(model_dir, compile=True)
    return ([np.array(w) for w in model.get_weights()],
            {v.path: np.array(v) for v in model.optimizer.variables})


@pytest.mark.slow  # three vessel-train processes, one killed
def test_sigkill_after_first_epoch_then_resume(one_shard_dir, tmp_path):
    data_dir = one_shard_dir
    overrides = ["train.epochs=3", "train.steps_per_epoch=16", "train.batch_size=2",
                 "train.patience=50", "train.shuffle_buffer=1"]
    reference_dir = str(tmp_path / "uninterrupted")
    run_train(data_dir, reference_dir, overrides)
    reference = json.load(open(os.path.join(reference_dir, "history.json")))
    # best_model.keras is the last epoch's (so it holds the final weights and optimizer).
    assert int(np.argmin(reference["val_loss"])) == 2, reference["val_loss"]

    model_dir = str(tmp_path / "resumable")
    process = subprocess.Popen(command(data_dir, model_dir, overrides), cwd=REPO,
                               env=environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while _backup_epoch(model_dir) < 1:
            assert process.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no epoch finished in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed_after = _backup_epoch(model_dir)
    assert killed_after == 1
    assert _csv_epochs(model_dir, "train_losses.csv")[:1] == [0]

    result = run_train(data_dir, model_dir, overrides)
    epochs = [line.split()[1] for line in result.stdout.splitlines()
              if line.startswith("Epoch ") and "/" in line.split()[1]]
    assert epochs == ["2/3", "3/3"]  # resumed at epoch 2 (1-based)
    for name in ("train_losses.csv", "train_metrics.csv"):
        assert _csv_epochs(model_dir, name) == [0, 1, 2], name  # 0-based, each once
    history = json.load(open(os.path.join(model_dir, "history.json")))
    assert history["epoch"] == [0, 1, 2] and len(history["loss"]) == 3
    assert not os.path.exists(os.path.join(model_dir, "backup"))
    # The resumed run continued from the backed-up weights and optimizer state: it ends
    # where the uninterrupted run ends (deterministic ops, seeds, the same batches).
    np.testing.assert_allclose(history["loss"], reference["loss"], rtol=1e-6)
    weights, optimizer = _weights_and_optimizer(model_dir)
    reference_weights, reference_optimizer = _weights_and_optimizer(reference_dir)
    for a, b in zip(weights, reference_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert sorted(optimizer) == sorted(reference_optimizer) and len(optimizer) > 3
    for name, value in optimizer.items():  # iterations, learning rate, Adam's moments
        np.testing.assert_allclose(value, reference_optimizer[name], rtol=0, atol=1e-6,
                                   err_msg=name)

"""vessel-train with MultiWorkerMirroredStrategy: two real worker processes on 127.0.0.1.

Each worker is a separate `vessel-train` process with TF_CONFIG naming both (ports picked
free at run time), one CPU device and one thread pool thread each, on tiny synthetic
shards and a tiny U-Net.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import load_config  # noqa: E402
from tiled_vessel_seg.trainer import train as train_lib  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = "tiled_vessel_seg.pipeline.train_cli"
TINY = ["preprocess.tile_size=32", "model.base_filters=4", "model.num_layers=3",
        "model.base_kernels=(3,3)", "model.dilation=(1,1)", "model.dropout_rate=0.0",
        "model.learning_rate=0.01", "train.batch_size=2", "train.shuffle_buffer=1",
        "train.deterministic=True", "tiledinfer.overlap=8"]
# The confusion-count metrics do not depend on how tiles are grouped into batches: equal
# on two workers and on one process exactly when each validation tile counts once.
COUNT_METRICS = ("val_accuracy", "val_sensitivity", "val_specificity", "val_dice", "val_iou")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # 16 training tiles in 2 shards (one per worker); 5 validation tiles: 3 + 2 per worker.
    out = str(tmp_path_factory.mktemp("mw_shards"))
    write_fake_dataset(out, tile_size=32, tiles={"train": 16, "valid": 5, "test": 2},
                       shards=2, seed=3)
    return out


def test_tf_config_names_this_task_and_the_chief():
    from tiled_vessel_seg.trainer import cluster
    assert cluster.read_tf_config({}) is None
    two = cluster.read_tf_config({"TF_CONFIG": tf_config([5000, 5001], 1)})
    assert (two.num_workers, two.this_task, two.is_chief) == (2, 1, False)
    with_chief = cluster.read_tf_config({"TF_CONFIG": json.dumps({
        "cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]},
        "task": {"type": "worker", "index": 0}})})
    assert with_chief.addresses == ("c:1", "w:1", "w:2") and with_chief.this_task == 1
    for bad, reason in [("{", "not valid JSON"),
                        ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, '
                         '"task": {"type": "worker", "index": 0}}', r"job\(s\) ps"),
                        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", '
                         '"index": 3}}', "task index 3"),
                        ('{"cluster": {"worker": ["a:1"]}}', 'no "task"')]:
        with pytest.raises(cluster.ClusterError, match=reason):
            cluster.read_tf_config({"TF_CONFIG": bad})


def test_auto_strategy_choice():
    from tiled_vessel_seg.trainer import cluster, strategy
    two = cluster.read_tf_config({"TF_CONFIG": tf_config([5000, 5001], 0)})
    one = cluster.read_tf_config({"TF_CONFIG": tf_config([5000], 0)})
    assert strategy.resolve_strategy("auto", two, num_gpus=0) == "multi_worker"
    assert strategy.resolve_strategy("auto", one, num_gpus=4) == "mirrored"
    assert strategy.resolve_strategy("auto", None, num_gpus=1) == "one_device"
    assert strategy.resolve_strategy("auto", None, num_gpus=0, num_cpu_replicas=2) == "mirrored"
    assert strategy.resolve_strategy("one_device", two, num_gpus=2) == "one_device"
    with pytest.raises(ValueError, match="num_cpu_replicas 2 .* multi_worker"):
        strategy.resolve_strategy("auto", two, num_gpus=0, num_cpu_replicas=2)
    with pytest.raises(ValueError, match="--strategy must be one of"):
        strategy.resolve_strategy("tpu", None, num_gpus=0)


def test_validation_batches_give_every_replica_the_same_steps_and_each_tile_once():
    from tiled_vessel_seg.trainer.distributed_input import validation_batches
    for records in range(4, 40):
        for pipelines, replicas, batch in [(2, 1, 2), (2, 2, 1), (3, 1, 4), (1, 4, 2)]:
            if records < pipelines * replicas:
                continue
            layout = validation_batches(records, pipelines, replicas, batch)
            assert sum(map(sum, layout.sizes)) == records
            for p, sizes in enumerate(layout.sizes):
                assert len(sizes) == layout.steps * replicas and min(sizes) >= 1
                assert sum(sizes) == len(range(p, records, pipelines))  # round-robin share
                assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 2 * batch
    assert validation_batches(5, 2, 1, 2).sizes == ((2, 1), (1, 1))
    with pytest.raises(ValueError, match="3 validation tile.* 4 replicas"):
        validation_batches(3, 2, 2, 2)


def test_validation_dataset_splits_the_tiles_between_workers(data_dir):
    import tensorflow as tf
    from tiled_vessel_seg.tfrecords import dataset_info, reader
    from tiled_vessel_seg.trainer.distributed_input import validation_dataset
    info = dataset_info.read_dataset_info(data_dir)
    seen, steps = [], []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                             num_replicas_in_sync=2)
        batches = list(validation_dataset(data_dir, info, 4, context, tile_shape=(32, 32)))
        steps.append(len(batches))
        seen += [image.tobytes() for x, _ in batches for image in x.numpy()]
    everything = [image.tobytes() for x, _ in reader.make_dataset(data_dir,
                                                                   reader.InputConfig("valid", 8))
                  for image in x.numpy()]
    assert steps == [2, 2] and sorted(seen) == sorted(everything) and len(seen) == 5


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_worker(ports, index, data_dir, model_dir, overrides, tmp_dir, *flags):
    os.makedirs(tmp_dir, exist_ok=True)
    env = dict(os.environ, TF_CONFIG=tf_config(ports, index), TMPDIR=str(tmp_dir),
               PYTHONUNBUFFERED="1", TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="1",
               CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", CLI, "--data_dir", data_dir, "--model_dir", model_dir,
           "--keras_verbose", "2", *flags]
    for item in TINY + overrides:
        cmd += ["--set", item]
    log = open(os.path.join(tmp_dir, f"worker{index}.log"), "w")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def worker_log(tmp_dir, index):
    with open(os.path.join(tmp_dir, f"worker{index}.log")) as f:
        return f.read()


def worker_dirs(tmp_dir):
    """The temporary directories vessel-train workers made in `tmp_dir` (TMPDIR)."""
    return sorted(n for n in os.listdir(tmp_dir) if n.startswith("vessel-train-"))


def wait_all(processes, timeout=240):
    deadline = time.time() + timeout
    try:
        return [p.wait(timeout=max(1, deadline - time.time())) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()


def started_epochs(log):
    return [line.split()[1] for line in log.splitlines()
            if line.startswith("Epoch ") and "/" in line.split()[1]]


def _backup_epoch(model_dir):
    try:
        with open(os.path.join(model_dir, "backup", "training_metadata.json")) as f:
            return json.load(f)["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def _csv_epochs(model_dir, name):
    with open(os.path.join(model_dir, "eval", name)) as f:
        return [int(line.split(",")[0]) for line in f.read().splitlines()[1:]]


@pytest.mark.slow  # two vessel-train worker processes, killed and restarted
def test_two_workers_killed_and_restarted_train_like_one_process(data_dir, tmp_path):
    # Each worker reads its one shard in order, 4 steps = one pass per epoch, so every
    # epoch sees the same batches and a resumed run can match one that never stopped.
    steps = ["train.epochs=3", "train.steps_per_epoch=4"]
    model_dir = str(tmp_path / "model")
    tmp_dirs = [tmp_path / "tmp0", tmp_path / "tmp1"]
    ports = free_ports(2)
    workers = [start_worker(ports, i, data_dir, model_dir, steps, tmp_dirs[i],
                            "--strategy", "auto") for i in range(2)]
    try:
        deadline = time.time() + 240
        while _backup_epoch(model_dir) < 1:
            assert all(p.poll() is None for p in workers), "a worker ended before the kill"
            assert time.time() < deadline, "no epoch finished in time"
            time.sleep(0.01)
        workers[1].send_signal(signal.SIGKILL)
        workers[1].wait(timeout=30)
    finally:
        for p in workers:  # the chief cannot go on alone: a restart is of the whole job
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    assert _backup_epoch(model_dir) == 1 and _csv_epochs(model_dir, "train_losses.csv") == [0]
    logs = [worker_log(tmp_dirs[i], i) for i in range(2)]
    first = [line for line in logs[0].splitlines() if line.startswith("vessel-train:")][:2]
    assert "strategy multi_worker: task 0 of 2, waiting" in first[0], first
    assert ("strategy multi_worker: 2 worker(s), 2 replica(s) in sync, global batch 4 "
            "(2 per replica); this is task 0 (chief)") in first[1], first
    assert "train split: 2 shards over 2 workers, each worker reads its own" in logs[0]
    # SIGKILL left worker 1's temporary dir behind; the restarted workers leave none.
    leftovers = worker_dirs(tmp_dirs[1])

    ports = free_ports(2)
    workers = [start_worker(ports, i, data_dir, model_dir, steps, tmp_dirs[i])
               for i in range(2)]
    codes = wait_all(workers)
    logs = [worker_log(tmp_dirs[i], i) for i in range(2)]
    assert codes == [0, 0], logs
    for log in logs:
        assert started_epochs(log) == ["2/3", "3/3"], log  # every worker resumed at epoch 2
    for name in ("train_losses.csv", "train_metrics.csv"):
        assert _csv_epochs(model_dir, name) == [0, 1, 2], name
    # One complete model dir, written by the chief; no worker's temporary dir is left.
    assert sorted(os.listdir(model_dir)) == [
        "best_model.keras", "eval", "history.json", "logs", "model_info.json"]
    assert sorted(os.listdir(os.path.join(model_dir, "eval"))) == [
        "train_losses.csv", "train_losses.png", "train_metrics.csv", "train_metrics.png"]
    assert worker_dirs(tmp_dirs[1]) == leftovers and worker_dirs(tmp_dirs[0]) == []

    # The same 12 steps in one process on the global batch of 4 (both shards interleave:
    # each global batch holds the same tiles as the two workers' batches together).
    reference_dir = str(tmp_path / "one_process")
    reference = train_lib.train(load_config(None, TINY + steps + ["train.batch_size=4"]),
                                data_dir, reference_dir, strategy="one_device",
                                precision="float32", verbose=0)
    chief = json.load(open(os.path.join(model_dir, "history.json")))
    assert chief["epoch"] == [0, 1, 2]
    np.testing.assert_allclose(chief["loss"], reference["loss"], rtol=1e-5)
    for name in COUNT_METRICS:
        np.testing.assert_allclose(chief[name], reference[name], rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    # best_model.keras is the last epoch's in both: it holds the final weights.
    assert int(np.argmin(reference["val_loss"])) == 2, reference["val_loss"]
    from tiled_vessel_seg.model_loading import load_model
    two = load_model(model_dir)[0].get_weights()
    one = load_model(reference_dir)[0].get_weights()
    for a, b in zip(two, one):
        np.testing.assert_allclose(a, b, atol=2e-5, rtol=0)
    from tiled_vessel_seg.trainer.model import build_model
    keras.utils.set_random_seed(0)
    initial = build_model(load_config(None, TINY).model).get_weights()
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(initial, one)) > 1e-3


@pytest.mark.slow  # a vessel-train worker process waiting for its peer
def test_a_worker_whose_peer_never_comes_up_stops_with_a_timeout_message(data_dir, tmp_path):
    # Two one-sided clusters at once: a chief whose worker never starts, and a worker whose
    # chief never starts.
    started = time.time()
    workers = [start_worker(free_ports(2), i, data_dir, str(tmp_path / f"m{i}"), [],
                            tmp_path / f"tmp{i}", "--worker_timeout", "4") for i in range(2)]
    codes = wait_all(workers, timeout=120)
    elapsed = time.time() - started
    for i, code in enumerate(codes):
        log = worker_log(tmp_path / f"tmp{i}", i)
        assert code != 0, log
        assert "not every worker of TF_CONFIG came up within 4 s" in log, log
        assert f"this is task {i}, worker {i}" in log, log
        assert not os.path.exists(tmp_path / f"m{i}")
    assert elapsed < 100

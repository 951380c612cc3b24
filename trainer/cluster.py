"""The cluster a training process belongs to, from the `TF_CONFIG` environment variable.

`TF_CONFIG` is what Vertex AI custom jobs, Kubeflow's TFJob and GKE set for each worker of
a multi-machine job, and what `tf.distribute.MultiWorkerMirroredStrategy` reads:

    {"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
     "task": {"type": "worker", "index": 1}}

(optionally with a "chief" job of one task, which is then worker 0). Only "chief" and
"worker" tasks train; a parameter server ("ps") or "evaluator" task is refused.

Also here, because they follow from the cluster and not from TensorFlow:
* `StartupWatchdog`: TF blocks inside the strategy's constructor until every worker has
  registered, for up to an hour and holding Python's GIL (no thread or signal handler of
  this process runs meanwhile), so a separate tiny process ends it after a timeout;
* `worker_write_dir`: only the chief writes the model dir; the other workers write the
  same files into a temporary directory of their own that is removed afterwards, as
  Keras' multi-worker guide does (saving may run collective ops, so every worker saves).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Iterator, Mapping, Optional

TF_CONFIG = "TF_CONFIG"
TRAINING_JOBS = ("chief", "worker")


class ClusterError(ValueError):
    """A TF_CONFIG that cannot be used; the message says what is wrong."""


class WorkerLostError(RuntimeError):
    """A worker of the cluster stopped (crashed, killed, preempted) during training."""


def worker_lost_message(error: Exception, model_dir: str) -> str:
    """One line for a collective op aborted because a peer is gone (TF's message is a
    paragraph naming the task, e.g. "Task /job:worker/replica:0/task:1 heartbeat timeout")."""
    text = str(getattr(error, "message", error))
    match = re.search(r"Task \S+ heartbeat timeout", text)
    if match:
        reason = match.group(0)
    else:
        text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text).strip()
        reason = text.split("aborted by: ", 1)[-1].splitlines()[0][:200]
    return (f"a worker of the cluster stopped during training ({reason}); restart every "
            f"worker with the same command: training resumes from "
            f"{model_dir.rstrip('/')}/backup/ at the last finished epoch")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The training tasks of TF_CONFIG and which one this process is.

    addresses: "host:port" of every training task, the chief (if any) first, then the
    workers in order: index i is the task's id in the cluster. this_task: its index.
    """
    addresses: tuple[str, ...]
    this_task: int
    task_type: str
    task_index: int

    @property
    def num_workers(self) -> int:
        return len(self.addresses)

    @property
    def is_chief(self) -> bool:
        """Task 0: the "chief" task, or worker 0 when there is no chief job."""
        return self.this_task == 0

    def describe(self) -> str:
        return ", ".join(f"{address}{' (chief)' if i == 0 else ''}"
                         for i, address in enumerate(self.addresses))


def read_tf_config(environ: Mapping[str, str] = os.environ) -> Optional[Cluster]:
    """The Cluster described by environ["TF_CONFIG"]; None if it is unset or empty.

    Raises ClusterError for malformed JSON, a missing "cluster" or "task", a task type
    other than chief/worker, more than one chief, or a task index out of range.
    """
    text = environ.get(TF_CONFIG, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ClusterError(f"{TF_CONFIG} is not valid JSON ({e})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError(f'{TF_CONFIG} has no "cluster" mapping of job name -> addresses')
    if not isinstance(task, dict) or "type" not in task:
        raise ClusterError(f'{TF_CONFIG} has no "task": {{"type": ..., "index": ...}}')
    unknown = sorted(set(cluster) - set(TRAINING_JOBS))
    if unknown:
        raise ClusterError(
            f"{TF_CONFIG} has job(s) {', '.join(unknown)}: vessel-train's multi-worker mode "
            f"(MultiWorkerMirroredStrategy) has only chief and worker tasks")
    jobs = {job: list(cluster.get(job) or []) for job in TRAINING_JOBS}
    if len(jobs["chief"]) > 1:
        raise ClusterError(f"{TF_CONFIG} lists {len(jobs['chief'])} chiefs; at most one")
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in TRAINING_JOBS:
        raise ClusterError(f"{TF_CONFIG} task type {task_type!r} cannot train; "
                           f"expected chief or worker")
    if not isinstance(task_index, int) or not 0 <= task_index < len(jobs[task_type]):
        raise ClusterError(f"{TF_CONFIG} task index {task_index!r} is not one of the "
                           f"{len(jobs[task_type])} {task_type} task(s) of the cluster")
    addresses = tuple(jobs["chief"] + jobs["worker"])
    this_task = task_index + (len(jobs["chief"]) if task_type == "worker" else 0)
    return Cluster(addresses=addresses, this_task=this_task, task_type=task_type,
                   task_index=task_index)


# Runs in a fresh interpreter (no TensorFlow): waits until the parent closes our stdin
# (it is up) or the timeout passes (then names the problem and ends the parent).
_WATCHDOG = """
import os, select, signal, sys
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if not ready:
    sys.stderr.write(message + "\\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""


class StartupWatchdog:
    """Ends this process with `message` on stderr if the block has not finished within
    `timeout` seconds.

    For a call that blocks in C++ holding the GIL (so a thread or SIGALRM handler of this
    process would never run): a separate small Python process waits on a pipe and, at
    the timeout, prints the message and sends SIGKILL (TensorFlow's coordination service
    catches SIGTERM as a preemption notice). Leaving the block closes the pipe; if this
    process dies first, the pipe closes too and the watchdog exits.
    """

    def __init__(self, timeout: float, message: str):
        self.timeout = timeout
        self.message = message
        self._process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "StartupWatchdog":
        self._process = subprocess.Popen(
            [sys.executable, "-S", "-c", _WATCHDOG, str(os.getpid()), str(self.timeout),
             self.message], stdin=subprocess.PIPE)
        return self

    def __exit__(self, *exc_info) -> None:
        self._process.stdin.close()
        self._process.wait()


@contextlib.contextmanager
def worker_write_dir(model_dir: str, cluster: Optional[Cluster]) -> Iterator[str]:
    """Yields where this process writes its training outputs: `model_dir` on the chief
    (and without a cluster), else a new temporary directory removed on exit."""
    if cluster is None or cluster.is_chief:
        yield model_dir
        return
    path = tempfile.mkdtemp(prefix=f"vessel-train-{cluster.task_type}{cluster.task_index}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)

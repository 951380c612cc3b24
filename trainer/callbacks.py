"""Training callbacks: per-epoch logs that survive a restart, and resumable monitors.

Files written by `EpochLogs` (rewritten whole at every epoch end, so a run killed and
resumed by BackupAndRestore never duplicates or loses a row):

    M/eval/train_losses.csv    "epoch, loss, val_loss"            (the reference's format)
    M/eval/train_metrics.csv   "epoch,dice_coef,val_dice_coef,"   (the reference's format)
    M/eval/train_losses.png, M/eval/train_metrics.png             line plots
    M/history.json             every logged value per epoch, full precision, and each
                               epoch's wall and CPU seconds (epoch_seconds, epoch_cpu_seconds)

Epochs are 0-based in the CSVs and history.json, as the reference writes them; the plots
number them as Keras' log does ("Epoch 6/6" is the sixth, epoch 5 in the CSV):
`keras_epoch` and `best_epoch_number`. The best epoch is the one best_model.keras comes
from: the lowest val_loss, or the highest val_dice / val_auc (`[train] monitor`).

Also here: `WriteModelInfo` (model_info.json once a best model exists) and
`WorkerBackupAndRestore` (BackupAndRestore of a worker that is not the chief).
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from typing import Optional, Sequence

import keras
import numpy as np

from tiled_vessel_seg import model_info as model_info_lib
from tiled_vessel_seg import storage
from tiled_vessel_seg.configs.schema import MONITOR_MODES

HISTORY_FILE = "history.json"
EPOCH_SECONDS = "epoch_seconds"          # wall seconds of the epoch, training + validation
EPOCH_CPU_SECONDS = "epoch_cpu_seconds"  # CPU seconds of the writing process in that time
LOSSES_CSV = "train_losses.csv"
METRICS_CSV = "train_metrics.csv"


def read_history(path: str) -> dict[str, list]:
    """{"epoch": [...], key: [...]} from a history.json; {} if there is none."""
    if not storage.exists(path):
        return {}
    return json.loads(storage.read_text(path))


def history_before(history: dict[str, list], epoch: int) -> dict[str, list]:
    """The part of `history` for epochs < `epoch`."""
    keep = [i for i, e in enumerate(history.get("epoch", [])) if e < epoch]
    return {k: [v[i] for i in keep] for k, v in history.items()}


_write_atomic = storage.write_text_atomic  # local or gs://, never a partial file


@dataclasses.dataclass(frozen=True)
class CarriedEpochs:
    """The epochs of a finished training that an earlier, stopped run trained.

    seconds, cpu_seconds: their time from history.json; timed is False when some of them
    have none (a history.json written before epoch times were recorded).
    """
    epochs: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    timed: bool = True


def carried_epochs(before: dict[str, list], after: dict[str, list]) -> CarriedEpochs:
    """The rows of `after` (history.json when training ended) that `before` (history.json
    when it started) already held, unchanged: what a resumed run kept of a killed one.
    A row the resumed run trained again differs at least in its epoch_seconds."""
    def rows(history):  # a key an older row lacks is None in the rewritten file
        return {e: {k: v[i] for k, v in history.items() if v[i] is not None}
                for i, e in enumerate(history.get("epoch", []))}

    def same(a, b):  # as JSON text, so that NaN (a metric without a value) equals NaN
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    old, new = rows(before), rows(after)
    kept = [row for e, row in new.items() if e in old and same(old[e], row)]
    seconds = [r.get(EPOCH_SECONDS) for r in kept]
    cpu = [r.get(EPOCH_CPU_SECONDS) for r in kept]
    return CarriedEpochs(len(kept), sum(v or 0.0 for v in seconds),
                         sum(v or 0.0 for v in cpu),
                         all(v is not None for v in seconds + cpu))


def _fmt(value) -> str:
    return "nan" if value is None else f"{value:.4f}"


class EpochLogs(keras.callbacks.Callback):
    """Writes the CSV logs, their plots and history.json after every epoch.

    The rows of epochs >= the current one (left by a run killed before its backup was
    saved) are replaced, so the files always hold each finished epoch exactly once.
    """

    def __init__(self, model_dir: str, metrics: Sequence[str] = ("dice_coef", "val_dice_coef"),
                 monitor: str = "val_loss"):
        super().__init__()
        self.model_dir = model_dir
        self.monitor = monitor  # the plots mark its best epoch
        self.eval_dir = storage.join(model_dir, "eval")
        self.metrics = tuple(metrics)
        self.history_path = storage.join(model_dir, HISTORY_FILE)
        self.rows: Optional[list[dict]] = None
        self.epoch_start = (0.0, 0.0)

    def on_train_begin(self, logs=None):
        storage.makedirs(self.eval_dir)
        history = read_history(self.history_path)
        keys = [k for k in history if k != "epoch"]
        self.rows = [dict({"epoch": e}, **{k: history[k][i] for k in keys})
                     for i, e in enumerate(history.get("epoch", []))]

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = (time.time(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        row[EPOCH_SECONDS] = round(time.time() - self.epoch_start[0], 3)
        row[EPOCH_CPU_SECONDS] = round(time.process_time() - self.epoch_start[1], 3)
        self.rows = [r for r in self.rows if r["epoch"] < epoch] + [row]
        self._write()

    def _write(self):
        keys = sorted({k for r in self.rows for k in r if k != "epoch"})
        history = {"epoch": [r["epoch"] for r in self.rows]}
        history.update({k: [r.get(k) for r in self.rows] for k in keys})
        _write_atomic(self.history_path, json.dumps(history, indent=1))
        m0, m1 = self.metrics[0], self.metrics[1]
        _write_atomic(storage.join(self.eval_dir, LOSSES_CSV),
                      "epoch, loss, val_loss\n" + "".join(
                          f"{r['epoch']}, {_fmt(r.get('loss'))}, {_fmt(r.get('val_loss'))}\n"
                          for r in self.rows))
        _write_atomic(storage.join(self.eval_dir, METRICS_CSV),
                      f"epoch,{m0},{m1},\n" + "".join(
                          f"{r['epoch']}, {_fmt(r.get(m0))}, {_fmt(r.get(m1))}\n"
                          for r in self.rows))
        _plot(history, ("loss", "val_loss"), storage.join(self.eval_dir, "train_losses.png"),
              "loss", "Loss per epoch (lower is better)", self.monitor)
        _plot(history, (m0, m1), storage.join(self.eval_dir, "train_metrics.png"),
              m0, f"{m0} per epoch", self.monitor)


def keras_epoch(epoch: int) -> int:
    """A 0-based epoch of history.json / the CSVs as Keras' log numbers it (1-based)."""
    return int(epoch) + 1


def best_index(history: dict[str, list], monitor: str = "val_loss") -> Optional[int]:
    """The position in `history` of the best finite `monitor` value (lowest for val_loss,
    highest for val_dice / val_auc: `[train] monitor`); None without one."""
    values = np.array([np.nan if v is None else v for v in history.get(monitor, [])], float)
    if not np.isfinite(values).any():
        return None
    values = np.where(np.isfinite(values), values, np.nan)
    pick = np.nanargmin if MONITOR_MODES[monitor] == "min" else np.nanargmax
    return int(pick(values))


def best_epoch_number(history: dict[str, list], monitor: str = "val_loss") -> Optional[int]:
    """The epoch with the best `monitor` value (where best_model.keras comes from),
    numbered as Keras' log does ("Epoch N/M", "Epoch N: val_loss improved"); None
    without one."""
    best = best_index(history, monitor)
    return None if best is None else keras_epoch(history["epoch"][best])


def draw_curves(ax, history: dict[str, list], keys: Sequence[str], monitor: str = "val_loss",
                marker: str = "o") -> None:
    """Draws `keys` per epoch on the matplotlib axes `ax`, with a star on each validation
    curve and a dashed line at the best epoch of `monitor` (the one best_model.keras was
    saved at); the x axis numbers epochs as Keras' log does."""
    best = best_index(history, monitor)
    which = f"{'lowest' if MONITOR_MODES[monitor] == 'min' else 'highest'} {monitor}"
    epochs = [keras_epoch(e) for e in history["epoch"]]
    for key in keys:
        if key in history:
            values = [np.nan if v is None else v for v in history[key]]
            ax.plot(epochs, values, marker=marker, label=key)
            if best is not None and key.startswith("val_") and best < len(values):
                ax.plot([epochs[best]], [values[best]], marker="*", markersize=15,
                        color="tab:red", linestyle="none",
                        label=f"best epoch {epochs[best]} ({which})")
    if best is not None:
        ax.axvline(epochs[best], color="tab:red", alpha=0.3, linestyle="--")
    ax.set_xlabel("epoch (as in the training log: 1 = the first)")


def _plot(history: dict[str, list], keys: Sequence[str], path: str, ylabel: str,
          title: str, monitor: str = "val_loss") -> None:
    """Line plot of `keys` per epoch (draw_curves) written to `path` as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_curves(ax, history, keys, monitor)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    storage.write_bytes_atomic(path, buf.getvalue())


def _replay(values: Sequence[float], min_delta: float, reset_after: int = 0,
            mode: str = "min") -> tuple[float, int]:
    """(best, epochs since best or since the last reset) of a monitor over past values,
    as Keras' callbacks count them: in mode "min" a value improves on the best when
    below best - min_delta, in mode "max" when above best + min_delta (the start is inf
    or -inf; None and nan never improve). `reset_after` > 0 zeroes the count when it
    reaches that (a LR reduction)."""
    sign = 1.0 if mode == "min" else -1.0  # "max": the "min" rule on negated values
    best, wait = sign * math.inf, 0
    for v in values:
        if v is not None and sign * v < sign * best - min_delta:
            best, wait = v, 0
        else:
            wait += 1
            if reset_after and wait >= reset_after:
                wait = 0
    return best, wait


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping (mode "min" or "max") that starts from the past epochs' values."""

    def __init__(self, past_values: Sequence[float] = (), mode: str = "min", **kwargs):
        super().__init__(mode=mode, **kwargs)
        self.past_values = list(past_values)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.past_values:
            self.best, self.wait = _replay(self.past_values, abs(self.min_delta),
                                           mode=self.mode)


class ResumableReduceLROnPlateau(keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau (mode "min" or "max") that starts from the past epochs' values.

    The learning rate itself is an optimizer variable, restored by BackupAndRestore.
    """

    def __init__(self, past_values: Sequence[float] = (), mode: str = "min", **kwargs):
        super().__init__(mode=mode, **kwargs)
        self.past_values = list(past_values)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.past_values:
            self.best, self.wait = _replay(self.past_values, abs(self.min_delta),
                                           reset_after=self.patience, mode=self.mode)


class WriteModelInfo(keras.callbacks.Callback):
    """Writes M/model_info.json at the end of the first epoch after which M/best_model.keras
    exists, so the two come as a pair: a run that fails before its first checkpoint
    leaves no model_info.json. Put it after the checkpoint callback."""

    def __init__(self, model_dir: str, info: model_info_lib.ModelInfo):
        super().__init__()
        self.model_dir = model_dir
        self.info = info
        self.written = False

    def on_epoch_end(self, epoch, logs=None):
        if not self.written and storage.exists(self.info.model_path(self.model_dir)):
            model_info_lib.write_model_info(self.model_dir, self.info)
            self.written = True


class WorkerBackupAndRestore(keras.callbacks.Callback):
    """BackupAndRestore of a worker that is not the chief: restores the training state
    from the chief's `backup_dir`, so every worker resumes at the same epoch with the same
    weights, and saves its own into `write_dir` (its temporary directory), like the chief.

    Every worker saves: saving reads variables that may need a collective op, which every
    worker must join.
    """

    def __init__(self, backup_dir: str, write_dir: str):
        super().__init__()
        self.restore = keras.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False,
                                                        double_checkpoint=True)
        self.save = keras.callbacks.BackupAndRestore(write_dir, double_checkpoint=True)

    def set_model(self, model):
        super().set_model(model)
        self.restore.set_model(model)
        self.save.set_model(model)

    def on_train_begin(self, logs=None):
        self.restore.on_train_begin(logs)

    def on_train_batch_end(self, batch, logs=None):
        self.save.on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.save.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        self.save.on_train_end(logs)

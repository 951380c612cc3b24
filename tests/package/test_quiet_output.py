"""Noise (issue 18 item 14): without --verbose a tool prints its own lines and real
warnings only; vessel-run's training shows progress within an epoch on a terminal and
its log states the parameter count; the curves number epochs as the training log does."""
from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tiled_vessel_seg import console

# Lines seen on stderr of a small vessel-preprocess job and vessel-export before the fix.
NOISE_LINES = [
    "W1202 11:37:50.955193 140064183626624 __init__.py:32] apitools not found, and bigquery "
    "client libraries are not available despite the import not raising an ImportError.",
    "I1202 11:37:51.608042 140064183626624 native_type_compatibility.py:421] Converting "
    "string literal type hint to Any: \"WorkItem\"",
    "WARNING:root:apitools not found, and bigquery client libraries are not available",
    "INFO:__main__:Logging handler created.",
    "WARNING:__main__:No semi_persistent_directory found:  User registered objects",
    "WARNING:apache_beam.options.pipeline_options:Discarding unparseable args: "
    "['--direct_runner_use_stacked_bundle', '--pipeline_type_check']",
    "INFO:apache_beam.runners.worker.sdk_worker:Control channel established.",
    "W1202 11:37:59.383362 140062683547328 local_job_service.py:367] Worker: severity: WARN "
    "timestamp {   seconds: 1796211479 } message: \"No semi_persistent_directory found\"",
    "I1202 11:37:59.410260 140062683547328 local_job_service.py:367] Worker: severity: INFO "
    "timestamp {   seconds: 1796211479 } message: \"Pipeline_options: {'runner': ...}\"",
    "I1202 11:39:25.833828 139631450995584 functional_saver.py:440] Sharding callback "
    "duration: 444",
    "2026-12-02 11:36:33.410926: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:485]"
    " Unable to register cuFFT factory: Attempting to register factory for plugin cuFFT",
    "2026-12-02 11:36:33.388475: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could "
    "not find cuda drivers on your machine, GPU will not be used.",
]
REAL_LINES = [
    "vessel-preprocess: 4 image pairs, 1 rejected input(s); runner DirectRunner",
    "error: /data/x: cannot write: Read-only file system",
    "WARNING: split valid has no tile (every image assigned to it was rejected)",
    "W1202 11:40:00.000000 1 train.py:10] the train split has 1 shard for 2 workers",
    "Traceback (most recent call last):",
    "  0%|          | 0/3 [00:00<?, ?image/s]",
]


@pytest.mark.parametrize("line", NOISE_LINES)
def test_library_chatter_is_noise(line):
    assert console.is_noise(line)


@pytest.mark.parametrize("line", REAL_LINES)
def test_our_lines_and_real_warnings_are_not(line):
    assert not console.is_noise(line)


CHILD = r"""
import sys, time
sys.stderr.write("INFO:__main__:Logging handler created.\n")
sys.stderr.write("our line 1\n")
sys.stderr.write("WARNING:root:apitools not found, and bigquery client libraries\n")
sys.stderr.flush()
sys.stderr.write("progress 50%\r")
sys.stderr.flush()
time.sleep(0.5)
sys.stderr.write("our line 2\n")
"""


def test_child_processes_stderr_goes_through_the_filter(capfd):
    with console.quiet_subprocesses(enabled=True):
        subprocess.run([sys.executable, "-c", CHILD], check=True)
        print("in the block", file=sys.stderr, flush=True)
    print("after the block", file=sys.stderr, flush=True)
    err = capfd.readouterr().err
    assert err == "our line 1\nprogress 50%\rour line 2\nin the block\nafter the block\n"


def test_verbose_keeps_everything(capfd):
    with console.quiet_subprocesses(enabled=False):
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    assert "apitools" in capfd.readouterr().err


@pytest.mark.slow  # vessel-preprocess in a subprocess with multi-processing Beam workers
def test_a_small_preprocess_job_prints_only_its_own_lines(synthetic_stare_dir, tmp_path):
    def run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "tiled_vessel_seg.beam_jobs.cli", "--stare_dir",
             str(synthetic_stare_dir), "--output_dir", str(tmp_path / f"d{len(extra)}"),
             "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=64", "--augment",
             "none", "--set", "preprocess.shards=1",
             "--direct_num_workers", "1", "--direct_running_mode", "multi_processing", *extra],
            capture_output=True, text=True, timeout=300)
    quiet = run()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    lines = quiet.stderr.splitlines()
    assert lines == ["vessel-preprocess: 4 image pairs, 0 rejected input(s); runner "
                     "DirectRunner"], lines[:20]
    assert "written" in quiet.stdout or "records" in quiet.stdout


def test_vessel_export_prints_no_tensorflow_info_lines(tmp_path):
    keras = pytest.importorskip("keras")
    from tiled_vessel_seg.model_info import ModelInfo, write_model_info
    inp = keras.Input((32, 32, 3))
    keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)).save(
        str(tmp_path / "best_model.keras"))
    write_model_info(str(tmp_path), ModelInfo(tile_size=32, scale=1, overlap=8, threshold=0.5))
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.inference.export", "--model", str(tmp_path),
         "--output_dir", str(tmp_path / "serving")], capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    assert (tmp_path / "serving" / "saved_model.pb").exists()


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_vessel_run_training_shows_progress_within_an_epoch_on_a_terminal():
    from tiled_vessel_seg.pipeline import run
    assert run.keras_verbosity(False, _Tty()) == 1      # Keras' progress bar
    assert run.keras_verbosity(False, io.StringIO()) == 2   # one line per epoch in a log
    assert run.keras_verbosity(True, _Tty()) == 0


# ----------------------------------------------- one tiny training: count and epochs

@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    pytest.importorskip("keras")
    from tiled_vessel_seg.configs import load_config
    from tiled_vessel_seg.trainer import train
    from tiled_vessel_seg.trainer.fake_data import write_fake_dataset
    data = str(tmp_path_factory.mktemp("data"))
    write_fake_dataset(data, tile_size=32, tiles={"train": 8, "valid": 4, "test": 2},
                       shards=1, scale=1, seed=2)
    config = load_config(None, [
        "preprocess.tile_size=32", "model.base_filters=2", "model.num_layers=2",
        "model.base_kernels=(3,3)", "model.dilation=(1,1)", "model.dropout_rate=0.0",
        "model.learning_rate=0.05", "train.batch_size=2", "train.steps_per_epoch=2",
        "train.epochs=4", "train.deterministic=True", "tiledinfer.overlap=8"])
    model_dir = str(tmp_path_factory.mktemp("model"))
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("vessel-train")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    stdout = io.StringIO()
    real_stdout, sys.stdout = sys.stdout, stdout
    try:
        train.train(config, data, model_dir, precision="float32", verbose=2)
    finally:
        sys.stdout = real_stdout
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return model_dir, records, stdout.getvalue()


def test_the_training_log_states_the_parameter_count(tiny_training):
    import keras
    model_dir, records, _ = tiny_training
    model = keras.models.load_model(os.path.join(model_dir, "best_model.keras"), compile=False,
                                    safe_mode=True)
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    line = next(r for r in records if "parameters" in r)
    assert f"{total:,} parameters ({trainable:,} trainable)" in line


def test_curves_number_the_best_epoch_as_the_training_log(tiny_training, monkeypatch,
                                                           tmp_path):
    from tiled_vessel_seg.pipeline import report
    from tiled_vessel_seg.trainer import callbacks
    model_dir, _, log = tiny_training
    # Keras' checkpoint says "Epoch N: val_loss improved ..." for each better epoch
    improved = [int(n) for n in re.findall(r"Epoch (\d+): val_loss improved", log)]
    assert improved, log[-2000:]
    history = callbacks.read_history(os.path.join(model_dir, callbacks.HISTORY_FILE))
    assert callbacks.best_epoch_number(history) == improved[-1]
    import matplotlib.axes
    labels = []
    real_plot = matplotlib.axes.Axes.plot

    def recording_plot(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return real_plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    assert report.plot_training_curves(history, str(tmp_path / "curves.png"))
    best_labels = {l for l in labels if l and l.startswith("best epoch")}
    assert best_labels == {f"best epoch {improved[-1]} (lowest val_loss)"}

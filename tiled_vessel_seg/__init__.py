"""tiled_vessel_seg: retinal vessel segmentation of large fundus photographs.

The repository keeps one folder per stage (beam_jobs, tfrecords, trainer, inference,
pipeline, configs, synthetic); setup.py installs each of them under this package, so
imports read `from tiled_vessel_seg.trainer import model` whatever folders the current
working directory holds. Below the stages lies the ground floor, the modules of this
folder: `storage` (paths and atomic writes, local or gs://), `imaging` (decoding, masks,
enlargement), `fov`, `datasets` (input layouts), `names` (file, split, strategy and
precision names, schema versions), `model_info` (model_info.json), `keras_objects` (the
custom Keras objects a saved model names) and `cli_app` (the one shape of every console
tool). The ground floor imports no stage (tests/package/test_ground_floor.py checks it); stages
import it.

Two things happen on `import tiled_vessel_seg`, before any stage module is imported:

* TensorFlow's C++ start-up lines ("Unable to register cuFFT factory", "Could not find
  TensorRT", ...) are silenced: TF_CPP_MIN_LOG_LEVEL defaults to 3 unless already set.
  To see them, run with `TF_CPP_MIN_LOG_LEVEL=0` in the environment (or pass
  `--verbose` to a console tool).
* TensorFlow's oneDNN kernels are switched on (TF_ENABLE_ONEDNN_OPTS defaults to 1
  unless already set). TensorFlow turns them on by itself only on CPUs with AVX-512
  VNNI/BF16 or AMX; on an AVX2-only AMD EPYC (this project's CI machine) leaving them off
  doubles a training step's CPU time (369 vs 733 ms per 256 px tile of the stare_small
  W-Net, docs/results.md). Results differ from the plain kernels by float rounding only.
  Set TF_ENABLE_ONEDNN_OPTS=0 to opt out.
* The model's custom Keras loss and metrics are registered (package name "vessel", the
  name every saved `.keras` file records), as soon as Keras is imported, so a notebook
  loads a trained model, compiled, with

      import tiled_vessel_seg
      import keras
      model = keras.models.load_model("models/best_model.keras")

  Registration waits for Keras so that importing this package (e.g. for the config
  reader) does not cost a TensorFlow import.

Why the custom objects live on the ground floor (keras_objects.py) and not in trainer/:
Keras finds a custom class of a saved file only through its registry ("vessel>BceDiceLoss");
in safe_mode it never imports the module the file names. Something must therefore
register the classes before `load_model` runs, and the only moment this package gets is
`import keras` (importing Keras here would cost every tool a TensorFlow import). The hook
below imports one ground-floor module at that moment. Had the classes stayed in trainer/,
the hook would import a stage by name, so the ground floor would depend on the trainer
and the loader of a model file would pull in the training code; instead the trainer
builds on the same classes (trainer/losses.py, metrics.py, schedules.py).
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import warnings

__version__ = "0.2.0"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def register_keras_objects() -> None:
    """Registers the custom loss, metrics and learning-rate schedule with Keras (imports
    Keras and TensorFlow): importing the module registers them."""
    from tiled_vessel_seg import keras_objects  # noqa: F401  (registers on import)


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs `register_keras_objects` right after `import keras` completes."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            try:
                register_keras_objects()
            except Exception as e:  # noqa: BLE001 - never break the user's `import keras`
                warnings.warn(f"tiled_vessel_seg: custom Keras objects not registered: {e}")

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(f, _RegisterAfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())

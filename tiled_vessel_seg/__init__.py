"""tiled_vessel_seg: retinal vessel segmentation of large fundus photographs.

The repository keeps one folder per stage (beam_jobs, tfrecords, trainer, inference,
pipeline, configs, synthetic); setup.py installs each of them under this package, so
imports read `from tiled_vessel_seg.trainer import model` whatever folders the current
working directory holds. Below the stages lies the ground floor: `storage` (paths and
atomic writes, local or gs://), `imaging` (decoding, masks, enlargement), `model_info`
and `cli_app` (the one shape of every console tool).

Two things happen on `import tiled_vessel_seg`, before any stage module is imported:

* TensorFlow's C++ start-up lines ("Unable to register cuFFT factory", "Could not find
  TensorRT", ...) are silenced: TF_CPP_MIN_LOG_LEVEL defaults to 3 unless already set.
  To see them, run with `TF_CPP_MIN_LOG_LEVEL=0` in the environment (or pass
  `--verbose` to a console tool).
* The model's custom Keras loss and metrics are registered (package name "vessel", the
  name every saved `.keras` file records), as soon as Keras is imported, so a notebook
  loads a trained model, compiled, with

      import tiled_vessel_seg
      import keras
      model = keras.models.load_model("models/best_model.keras")

  Registration waits for Keras so that importing this package (e.g. for the config
  reader) does not cost a TensorFlow import.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import warnings

__version__ = "0.2.0"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def register_keras_objects() -> None:
    """Registers the custom loss and metrics with Keras (imports Keras and TensorFlow)."""
    from tiled_vessel_seg.trainer import losses, metrics  # noqa: F401  (registration)


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

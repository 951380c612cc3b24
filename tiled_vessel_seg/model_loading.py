"""The one model loader: a model dir written by vessel-train (M/model_info.json +
M/best_model.keras, local or remote) -> (keras model, ModelInfo).

Every tool that loads a trained model comes here: vessel-segment and the notebook API
(inference/predictor.py), vessel-evaluate (compiled), the threshold chosen after training
(trainer/threshold.py), vessel-export. The checks are the same for all of them:
model_info.json is read and checked (model_info.py), its input normalisation must be
the one the tools feed ("divide_255"), and the `.keras` file is loaded in Keras'
safe_mode (no Lambda or other code runs), streamed member by member from disk.

Keras is imported with this module; importing it also registers the custom objects a
compiled model names (keras_objects.py), so `compile=True` restores loss and metrics.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile

import keras

from tiled_vessel_seg import keras_objects  # noqa: F401  (registers the custom objects)
from tiled_vessel_seg import model_info as model_info_lib
from tiled_vessel_seg import storage

# The one input normalisation the tools feed: float32 RGB in [0, 1].
INPUT_NORMALIZATION = "divide_255"
# The members of a .keras file (a zip) that make the model: architecture, Keras'
# metadata, weights.
KERAS_MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
_MAX_EXPANSION = 100  # a member inflating more than this (and past 4 GiB) is refused


def load_model(model_dir: str, *, compile: bool = False  # pylint: disable=redefined-builtin
               ) -> tuple[keras.Model, model_info_lib.ModelInfo]:
    """(keras model, ModelInfo) of a model dir written by the trainer, local or remote.

    compile=True restores the optimizer, loss and metrics saved with the model (what
    vessel-evaluate needs); inference loads uncompiled. Raises model_info.ModelDirError,
    one line naming the file, when model_info.json or the model is unusable.
    """
    info = model_info_lib.read_model_info(model_dir)
    if info.input_normalization != INPUT_NORMALIZATION:
        raise model_info_lib.ModelDirError(
            f"{model_info_lib.info_path(model_dir)}: input_normalization "
            f"{info.input_normalization!r} is not supported (expected {INPUT_NORMALIZATION!r})")
    path = info.model_path(model_dir)
    if not storage.exists(path):
        raise model_info_lib.ModelDirError(
            f"{path}: not found; vessel-train saves it after the first epoch whose val_loss "
            "improves")
    try:
        model = load_keras_file(path, compile=compile)
    except Exception as e:  # keras raises many types; its safe_mode refusal names no file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise model_info_lib.ModelDirError(f"{path}: cannot load the model: {reason}") from e
    return model, info


def load_keras_file(path: str, *, compile: bool = False  # pylint: disable=redefined-builtin
                    ) -> keras.Model:
    """The model of the .keras file at `path` (local or remote), with safe_mode.

    Keras reads a .keras file's weights member whole into memory before assigning the
    weights (when they take less than half the free memory): for the reference U-Net
    (477 MB of weights) that made loading the peak of a vessel-segment run, 2.20 GiB
    against 1.30 GiB for the same model built in memory. Here the members are streamed
    into a temporary folder, which Keras' own loader reads (same safe_mode) one variable
    at a time from disk: peak 1.74 GiB (benchmarks/infer_bench.py measures it).
    Raises ValueError for a member that inflates like a zip bomb.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = path
        if storage.is_remote(path):  # zipfile and keras read local files only
            local = os.path.join(tmp, "model.keras")
            storage.copy(path, local)
        folder = os.path.join(tmp, "model")
        os.makedirs(folder)
        with zipfile.ZipFile(local) as archive:
            for member in archive.infolist():
                if member.filename not in KERAS_MEMBERS:
                    continue
                if (member.file_size > 1 << 32
                        and member.file_size > _MAX_EXPANSION * member.compress_size):
                    raise ValueError(f"{member.filename} inflates {member.compress_size} to "
                                     f"{member.file_size} bytes: not a model")
                with archive.open(member) as source, \
                        open(os.path.join(folder, member.filename), "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
        return keras.models.load_model(folder, compile=compile, safe_mode=True)

"""The reference STARE U-Net ("TensorflowUNet"), built from `[model]` of the config.

Level i of the encoder has `base_filters * 2**i` filters and two convolutions
(he_normal, relu, 'same') whose kernel and dilation follow the schedules below; the
decoder mirrors the encoder with 2x2 transposed convolutions and skip concatenations.
The model takes float32 RGB in [0, 1] (the input pipeline divides by 255, so no
Lambda layer is needed) and returns float32 vessel probabilities [B, H, W, num_classes]:
under a mixed-precision policy the final sigmoid still runs in float32.
`[model] architecture = "wnet"` stacks two such U-Nets (build_wnet); the file inference
loads is always the one-output model of `inference_model` (InferenceCheckpoint saves it).

With the reference config (512x512x3, base_filters 16, base_kernels (9, 9), num_layers 8,
dilation (3, 3), no normalization) the model has exactly 124,996,849 parameters.
"""
from __future__ import annotations

import os
import uuid

import keras

from tiled_vessel_seg import storage
from tiled_vessel_seg.configs.schema import ModelConfig


PROBABILITIES = "probabilities"
MODEL_EXTENSION = ".keras"
DEEP_SUPERVISION = "deep_supervision"


def kernel_schedule(base: int, num_layers: int) -> list[int]:
    """Kernel side per level: base, base-2, base-4, ..., floored at 3 (or at base if < 3)."""
    return [max(base - 2 * i, min(base, 3)) for i in range(num_layers)]


def dilation_schedule(base: int, num_layers: int) -> list[int]:
    """Dilation per level: base, base-1, ..., floored at 1."""
    return [max(base - i, 1) for i in range(num_layers)]


def _schedules(config: ModelConfig) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    n = config.num_layers
    kernels = list(zip(kernel_schedule(config.base_kernels[0], n),
                       kernel_schedule(config.base_kernels[1], n)))
    dilations = list(zip(dilation_schedule(config.dilation[0], n),
                         dilation_schedule(config.dilation[1], n)))
    return kernels, dilations


def _conv(x, filters: int, kernel: tuple[int, int], dilation: tuple[int, int], name: str):
    return keras.layers.Conv2D(filters, kernel, dilation_rate=dilation, padding="same",
                               activation="relu", kernel_initializer="he_normal",
                               name=name)(x)


def _maybe_normalize(x, config: ModelConfig, name: str):
    return keras.layers.BatchNormalization(name=name)(x) if config.normalization else x


def _maybe_dropout(x, rate: float, name: str):
    return keras.layers.Dropout(rate, name=name)(x) if rate > 0 else x


def _unet_logits(x, config: ModelConfig, prefix: str = ""):
    """The U-Net body on tensor x -> logits [B, H, W, num_classes]; layer names get `prefix`."""
    kernels, dilations = _schedules(config)
    skips = []
    for i in range(config.num_layers):
        filters = config.base_filters * 2 ** i
        x = _conv(x, filters, kernels[i], dilations[i], f"{prefix}enc{i}_conv1")
        x = _maybe_normalize(x, config, f"{prefix}enc{i}_bn1")
        x = _maybe_dropout(x, config.dropout_rate * i, f"{prefix}enc{i}_dropout")
        x = _conv(x, filters, kernels[i], dilations[i], f"{prefix}enc{i}_conv2")
        x = _maybe_normalize(x, config, f"{prefix}enc{i}_bn2")
        skips.append(x)
        if i < config.num_layers - 1:
            x = keras.layers.MaxPooling2D((2, 2), name=f"{prefix}enc{i}_pool")(x)

    # Decoder level f mirrors encoder level f (same kernel, dilation and dropout rate).
    for f in range(config.num_layers - 2, -1, -1):
        filters = config.base_filters * 2 ** f
        x = keras.layers.Conv2DTranspose(filters, (2, 2), strides=(2, 2), padding="same",
                                         name=f"{prefix}dec{f}_up")(x)
        x = keras.layers.Concatenate(name=f"{prefix}dec{f}_skip")([x, skips[f]])
        x = _conv(x, filters, kernels[f], dilations[f], f"{prefix}dec{f}_conv1")
        x = _maybe_normalize(x, config, f"{prefix}dec{f}_bn1")
        x = _maybe_dropout(x, config.dropout_rate * f, f"{prefix}dec{f}_dropout")
        x = _conv(x, filters, kernels[f], dilations[f], f"{prefix}dec{f}_conv2")
        x = _maybe_normalize(x, config, f"{prefix}dec{f}_bn2")
    return keras.layers.Conv2D(config.num_classes, (1, 1), name=f"{prefix}logits")(x)


def _probabilities(logits, name: str):
    # float32 whatever the policy: the loss and the probabilities need the full range.
    return keras.layers.Activation("sigmoid", dtype="float32", name=name)(logits)


def _check_input_side(config: ModelConfig) -> None:
    height, width = config.image_height, config.image_width
    factor = 2 ** (config.num_layers - 1)
    if height % factor or width % factor:
        raise ValueError(f"[model] image_height {height} and image_width {width} must be "
                         f"multiples of 2**(num_layers-1) = {factor} for the skip connections")


def _input_and_features(config: ModelConfig):
    """(the [0, 1] RGB input, what the first network sees): `input_standardization`
    "per_tile" adds a parameter-free LayerNormalization over each tile's H and W per
    channel (a built-in layer, so the saved file needs no custom class)."""
    inputs = keras.Input((config.image_height, config.image_width, config.image_channels),
                         name="image")
    if config.input_standardization == "per_tile":
        return inputs, keras.layers.LayerNormalization(
            axis=(1, 2), center=False, scale=False, epsilon=1e-3, dtype="float32",
            name="standardize")(inputs)
    return inputs, inputs


def build_unet(config: ModelConfig) -> keras.Model:
    """Builds (does not compile) the U-Net described by `config`.

    Input: float32 [B, image_height, image_width, image_channels] in [0, 1].
    Output: float32 [B, image_height, image_width, num_classes], sigmoid probabilities.
    Build it inside `strategy.scope()` and after setting the mixed-precision policy.
    """
    _check_input_side(config)
    inputs, x = _input_and_features(config)
    outputs = _probabilities(_unet_logits(x, config), PROBABILITIES)
    return keras.Model(inputs, outputs, name=config.model)


def build_wnet(config: ModelConfig) -> keras.Model:
    """Builds the W-Net TRAINING model: two U-Nets of `config` in sequence.

    U-Net 1 ("net1_" layers) sees the image; U-Net 2 sees the image concatenated with
    U-Net 1's probabilities. Output: float32 [B, H, W, 2] = (U-Net 1's, U-Net 2's)
    probabilities stacked on the channel axis, so one loss supervises both
    (keras_objects.BceDiceLoss averages over output channels). `inference_model` cuts out the
    single-output model [B, H, W, 1] (U-Net 2's layer "probabilities") sharing the weights.
    """
    _check_input_side(config)
    if config.num_classes != 1:
        raise ValueError(f"[model] architecture wnet needs num_classes 1, got {config.num_classes}")
    inputs, x = _input_and_features(config)
    first = _probabilities(_unet_logits(x, config, "net1_"), "net1_probabilities")
    second_input = keras.layers.Concatenate(name="net2_input")([x, first])
    second = _probabilities(_unet_logits(second_input, config, "net2_"), PROBABILITIES)
    outputs = keras.layers.Concatenate(dtype="float32", name=DEEP_SUPERVISION)([first, second])
    return keras.Model(inputs, outputs, name=config.model)


def build_model(config: ModelConfig) -> keras.Model:
    """The training model of `[model] architecture` (see build_unet, build_wnet)."""
    return build_wnet(config) if config.architecture == "wnet" else build_unet(config)


def inference_model(model: keras.Model) -> keras.Model:
    """The model inference loads: float32 [B, H, W, 3] in [0, 1] -> float32 [B, H, W, 1].

    A U-Net is returned as it is; a W-Net training model is cut at U-Net 2's
    "probabilities" layer (same weights, no copy).
    """
    names = {layer.name for layer in model.layers}
    if DEEP_SUPERVISION not in names:
        return model
    return keras.Model(model.input, model.get_layer(PROBABILITIES).output, name=model.name)


class InferenceCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint that saves `inference_model(model)`: one-output files for serving.

    For a deeply supervised model the saved model is compiled with a fresh copy of the
    training optimizer's config and the same loss, so `vessel-evaluate` can load it
    with compile=True; training itself is unchanged.
    """

    def set_model(self, model):
        served = inference_model(model)
        if served is not model and getattr(model, "optimizer", None) is not None:
            served.compile(optimizer=model.optimizer.__class__.from_config(
                model.optimizer.get_config()), loss=model.loss)
        super().set_model(served)

    def on_train_begin(self, logs=None):
        remove_temporary_saves(self.filepath)  # of a save killed mid-write

    def _save_model(self, epoch, batch, logs):
        # Keras' own _save_model writes the .keras archive in place: a kill or a full disk
        # mid-save left a truncated best model and the previous one gone.
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            save_model_atomic(self.model, filepath)


def _temporary_prefix(path: str) -> str:
    return f"{path}.tmp-"


def save_model_atomic(model: keras.Model, path: str) -> str:
    """model.save to a temporary sibling `PATH.tmp-PID-HEX.keras` (Keras needs the
    extension), renamed over `path` once complete; on a failure the temporary file is
    removed and `path` is left as it was. Local or remote (gs://) paths; returns path."""
    tmp = f"{_temporary_prefix(path)}{os.getpid()}-{uuid.uuid4().hex[:8]}{MODEL_EXTENSION}"
    try:
        model.save(tmp, overwrite=True)
        storage.rename(tmp, path)
    finally:
        if storage.exists(tmp):
            storage.remove(tmp, missing_ok=True)
    return path


def remove_temporary_saves(path: str) -> list[str]:
    """Deletes the temporary files of `save_model_atomic(..., path)` calls that were
    killed before their rename; returns them."""
    leftovers = storage.glob(_temporary_prefix(path) + "*" + MODEL_EXTENSION)
    for leftover in leftovers:
        storage.remove(leftover, missing_ok=True)
    return leftovers


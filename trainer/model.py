"""The reference STARE U-Net ("TensorflowUNet"), built from `[model]` of the config.

Level i of the encoder has `base_filters * 2**i` filters and two convolutions
(he_normal, relu, 'same') whose kernel and dilation follow the schedules below; the
decoder mirrors the encoder with 2x2 transposed convolutions and skip concatenations.
The model takes float32 RGB in [0, 1] (the input pipeline divides by 255, so no
Lambda layer is needed) and returns float32 vessel probabilities [B, H, W, num_classes]:
under a mixed-precision policy the final sigmoid still runs in float32.

With the reference config (512x512x3, base_filters 16, base_kernels (9, 9), num_layers 8,
dilation (3, 3), no normalization) the model has exactly 124,996,849 parameters.
"""
from __future__ import annotations

import keras

from tiled_vessel_seg.configs.schema import ModelConfig


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


def build_unet(config: ModelConfig) -> keras.Model:
    """Builds (does not compile) the U-Net described by `config`.

    Input: float32 [B, image_height, image_width, image_channels] in [0, 1].
    Output: float32 [B, image_height, image_width, num_classes], sigmoid probabilities.
    Build it inside `strategy.scope()` and after setting the mixed-precision policy.
    """
    height, width = config.image_height, config.image_width
    factor = 2 ** (config.num_layers - 1)
    if height % factor or width % factor:
        raise ValueError(f"[model] image_height {height} and image_width {width} must be "
                         f"multiples of 2**(num_layers-1) = {factor} for the skip connections")
    kernels, dilations = _schedules(config)
    inputs = keras.Input((height, width, config.image_channels), name="image")

    x = inputs
    skips = []
    for i in range(config.num_layers):
        filters = config.base_filters * 2 ** i
        x = _conv(x, filters, kernels[i], dilations[i], f"enc{i}_conv1")
        x = _maybe_normalize(x, config, f"enc{i}_bn1")
        x = _maybe_dropout(x, config.dropout_rate * i, f"enc{i}_dropout")
        x = _conv(x, filters, kernels[i], dilations[i], f"enc{i}_conv2")
        x = _maybe_normalize(x, config, f"enc{i}_bn2")
        skips.append(x)
        if i < config.num_layers - 1:
            x = keras.layers.MaxPooling2D((2, 2), name=f"enc{i}_pool")(x)

    # Decoder level f mirrors encoder level f (same kernel, dilation and dropout rate).
    for f in range(config.num_layers - 2, -1, -1):
        filters = config.base_filters * 2 ** f
        x = keras.layers.Conv2DTranspose(filters, (2, 2), strides=(2, 2), padding="same",
                                         name=f"dec{f}_up")(x)
        x = keras.layers.Concatenate(name=f"dec{f}_skip")([x, skips[f]])
        x = _conv(x, filters, kernels[f], dilations[f], f"dec{f}_conv1")
        x = _maybe_normalize(x, config, f"dec{f}_bn1")
        x = _maybe_dropout(x, config.dropout_rate * f, f"dec{f}_dropout")
        x = _conv(x, filters, kernels[f], dilations[f], f"dec{f}_conv2")
        x = _maybe_normalize(x, config, f"dec{f}_bn2")

    logits = keras.layers.Conv2D(config.num_classes, (1, 1), name="logits")(x)
    # float32 whatever the policy: the loss and the probabilities need the full range.
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=config.model)


def load_model(path: str, compile: bool = True) -> keras.Model:
    """Loads a saved `.keras` U-Net with safe_mode=True.

    compile=True restores the loss and metrics too; their classes are registered by
    importing trainer.losses and trainer.metrics, which this does first.
    """
    from tiled_vessel_seg.trainer import losses, metrics  # noqa: F401  (registers the custom objects)
    return keras.models.load_model(path, safe_mode=True, compile=compile)

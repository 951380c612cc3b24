"""The U-Net: reference parameter count, kernel/dilation schedules, float32 output."""
import dataclasses

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import load_config, shipped_config  # noqa: E402
from tiled_vessel_seg.configs.schema import ModelConfig  # noqa: E402
from tiled_vessel_seg.trainer import model as model_lib  # noqa: E402

TINY = ModelConfig(image_width=32, image_height=32, base_filters=2, base_kernels=(7, 7),
                   num_layers=3, dilation=(2, 2), dropout_rate=0.1)


def expected_parameters(c: ModelConfig) -> int:
    """Independent count: two convs per level, transposed convs, 1x1 head."""
    def conv(k, cin, cout):
        return k[0] * k[1] * cin * cout + cout

    ks = [(max(c.base_kernels[0] - 2 * i, 3), max(c.base_kernels[1] - 2 * i, 3))
          for i in range(c.num_layers)]
    f = [c.base_filters * 2 ** i for i in range(c.num_layers)]
    total, cin = 0, c.image_channels
    for i in range(c.num_layers):
        total += conv(ks[i], cin, f[i]) + conv(ks[i], f[i], f[i])
        cin = f[i]
    for i in range(c.num_layers - 2, -1, -1):
        total += conv((2, 2), cin, f[i])                      # Conv2DTranspose
        total += conv(ks[i], 2 * f[i], f[i]) + conv(ks[i], f[i], f[i])
        cin = f[i]
    return total + conv((1, 1), cin, c.num_classes)


def test_reference_parameter_count():
    config = load_config(shipped_config("stare")).model
    assert expected_parameters(config) == 124_996_849
    model = model_lib.build_unet(config)
    assert model.count_params() == 124_996_849
    del model
    keras.backend.clear_session()


@pytest.mark.parametrize("base, n, expected", [
    (9, 8, [9, 7, 5, 3, 3, 3, 3, 3]), (3, 3, [3, 3, 3]), (5, 1, [5])])
def test_kernel_schedule(base, n, expected):
    assert model_lib.kernel_schedule(base, n) == expected
    assert model_lib.kernel_schedule(base, n) == [max(base - 2 * i, 3) for i in range(n)]


@pytest.mark.parametrize("base, n, expected", [
    (3, 8, [3, 2, 1, 1, 1, 1, 1, 1]), (1, 3, [1, 1, 1])])
def test_dilation_schedule(base, n, expected):
    assert model_lib.dilation_schedule(base, n) == expected


def test_layers_follow_the_schedules_mirrored():
    model = model_lib.build_unet(TINY)
    kernels, dilations = [7, 5, 3], [2, 1, 1]
    for i in range(3):
        for name in (f"enc{i}_conv1", f"enc{i}_conv2"):
            layer = model.get_layer(name)
            assert layer.kernel_size == (kernels[i],) * 2 and layer.dilation_rate == (dilations[i],) * 2
            assert layer.filters == 2 * 2 ** i
    for f in range(2):
        layer = model.get_layer(f"dec{f}_conv1")
        assert layer.kernel_size == (kernels[f],) * 2 and layer.dilation_rate == (dilations[f],) * 2
    # Dropout rate * level; level 0 (rate 0) has none.
    assert model.get_layer("enc2_dropout").rate == pytest.approx(0.2)
    assert model.get_layer("dec1_dropout").rate == pytest.approx(0.1)
    names = {l.name for l in model.layers}
    assert "enc0_dropout" not in names and "dec0_dropout" not in names
    assert model.count_params() == expected_parameters(TINY)
    assert not any(isinstance(l, keras.layers.Lambda) for l in model.layers)


def test_batch_normalization_option():
    model = model_lib.build_unet(dataclasses.replace(TINY, normalization=True))
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in model.layers) == 2 * (3 + 2)


def test_output_is_float32_probabilities_under_bfloat16():
    try:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
        model = model_lib.build_unet(TINY)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
    out = model(np.random.default_rng(0).random((2, 32, 32, 3), np.float32))
    assert out.dtype == "float32" and tuple(out.shape) == (2, 32, 32, 1)
    assert 0.0 <= float(np.min(out)) and float(np.max(out)) <= 1.0


def test_input_side_must_survive_the_poolings():
    with pytest.raises(ValueError, match="multiples of"):
        model_lib.build_unet(dataclasses.replace(TINY, image_height=30))

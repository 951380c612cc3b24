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
    (9, 8, [9, 7, 5, 3, 3, 3, 3, 3]), (3, 3, [3, 3, 3]), (5, 1, [5]),
    # worked by hand: even bases step through even sides down to the floor 3; a base
    # below 3 is its own floor (a 1x1 or 2x2 kernel is never enlarged to 3)
    (4, 3, [4, 3, 3]), (11, 6, [11, 9, 7, 5, 3, 3]), (2, 3, [2, 2, 2]), (1, 2, [1, 1])])
def test_kernel_schedule(base, n, expected):
    assert model_lib.kernel_schedule(base, n) == expected


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


# ---------------------------------------------------------------- W-Net, standardisation

SMALL = ModelConfig(image_width=16, image_height=16, base_filters=2, base_kernels=(3, 3),
                    num_layers=2, dilation=(1, 1), dropout_rate=0.0)


def test_small_unet_parameter_count_by_hand():
    # enc0: 3x3x3x2+2=56, 3x3x2x2+2=38; enc1: 3x3x2x4+4=76, 3x3x4x4+4=148;
    # dec0: up 2x2x4x2+2=34, 3x3x4x2+2=74, 3x3x2x2+2=38; head 1x1x2x1+1=3.
    assert model_lib.build_unet(SMALL).count_params() == 56 + 38 + 76 + 148 + 34 + 74 + 38 + 3


def test_wnet_shapes_and_parameters_by_hand():
    wnet = dataclasses.replace(SMALL, architecture="wnet")
    model = model_lib.build_model(wnet)
    # U-Net 1 as above (467); U-Net 2 takes 3 + 1 channels: its first conv has
    # 3x3x4x2+2 = 74 instead of 56 weights, the rest is the same.
    assert model.count_params() == 467 + (467 - 56 + 74)
    x = np.random.default_rng(0).random((3, 16, 16, 3), np.float32)
    both = model(x)
    assert tuple(both.shape) == (3, 16, 16, 2) and both.dtype == "float32"
    served = model_lib.inference_model(model)
    assert served.count_params() == 467 - 56 + 74 + 467  # needs U-Net 1 too
    out = served(x)
    assert tuple(out.shape) == (3, 16, 16, 1) and out.dtype == "float32"
    np.testing.assert_allclose(out.numpy()[..., 0], both.numpy()[..., 1], atol=1e-6)
    # Same weight objects: training the one trains the other.
    assert served.get_layer("net2_logits") is model.get_layer("net2_logits")
    unet = model_lib.build_unet(SMALL)
    assert model_lib.inference_model(unet) is unet


def test_wnet_inference_model_round_trips_through_a_keras_file(tmp_path):
    model = model_lib.build_model(dataclasses.replace(SMALL, architecture="wnet",
                                                      input_standardization="per_tile"))
    served = model_lib.inference_model(model)
    path = str(tmp_path / "m.keras")
    served.save(path)
    # A fresh load needs no custom class (safe mode, no compile).
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    x = np.random.default_rng(1).random((2, 16, 16, 3), np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), served(x).numpy(), atol=1e-6)
    assert tuple(loaded.output_shape) == (None, 16, 16, 1)


def test_per_tile_standardization_is_a_parameter_free_layer():
    plain = model_lib.build_unet(SMALL)
    standardized = model_lib.build_unet(dataclasses.replace(SMALL,
                                                            input_standardization="per_tile"))
    assert standardized.count_params() == plain.count_params()
    layer = standardized.get_layer("standardize")
    x = np.random.default_rng(2).random((2, 16, 16, 3), np.float32) * 0.3 + 0.2
    y = layer(x).numpy()
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), atol=1e-5)
    # Brightness and contrast of a tile do not change what the U-Net sees (up to epsilon).
    np.testing.assert_allclose(layer(0.5 * x + 0.1).numpy(),
                               (0.5 * x + 0.1 - 0.5 * mean - 0.1) / np.sqrt(0.25 * var + 1e-3),
                               atol=1e-5)


def test_unknown_architecture_and_standardization_are_refused():
    with pytest.raises(ValueError, match="architecture"):
        dataclasses.replace(SMALL, architecture="vnet")
    with pytest.raises(ValueError, match="input_standardization"):
        dataclasses.replace(SMALL, input_standardization="imagenet")


def test_cosine_schedule_values_by_hand():
    from tiled_vessel_seg.configs import load_config
    from tiled_vessel_seg import keras_objects
    from tiled_vessel_seg.trainer import schedules
    config = load_config(None, ["train.lr_schedule='cosine'", "model.learning_rate=0.01",
                                "train.min_learning_rate=1e-8", "train.cosine_cycle_epochs=2"])
    schedule = schedules.learning_rate(config, steps_per_epoch=50)  # cycle of 100 steps
    expected = {0: 0.01, 25: 1e-8 + (0.01 - 1e-8) * (1 + np.sqrt(0.5)) / 2,
                50: (0.01 + 1e-8) / 2, 99: 1e-8 + (0.01 - 1e-8) * (1 + np.cos(np.pi * 0.99)) / 2,
                100: 0.01, 150: (0.01 + 1e-8) / 2}
    for step, value in expected.items():
        assert float(schedule(step)) == pytest.approx(value, rel=1e-5, abs=1e-9), step  # float32
    assert not schedules.uses_plateau_reduction(config)
    plateau = load_config(None, [])
    assert schedules.learning_rate(plateau, 50) == plateau.model.learning_rate
    assert schedules.uses_plateau_reduction(plateau)
    restored = keras_objects.CosineCycles.from_config(schedule.get_config())
    assert float(restored(25)) == pytest.approx(expected[25], rel=1e-6)

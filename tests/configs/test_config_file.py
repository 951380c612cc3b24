"""The reference INI format, read safely into typed dataclasses."""
import logging

import pytest

from tiled_vessel_seg.configs import ConfigError, load_config, schema, shipped_config, with_overrides, write_config

REFERENCE_STYLE = """\
; train_eval_infer.config
[model]
image_width    = 256
base_kernels   = (7,7)
dilation       = (2,2)
dropout_rate   = 0
learning_rate  = 0.0001   ; inline comment
loss           = "bce_dice_loss"
metrics        = ["dice_coef"]
show_summary   = False
mystery_key    = 3

[train]
epochs        = 5
steps_per_epoch = None
model_dir     = "./models"

[augmentor]
angles   = [90. 180, 270,]
"""


def _write(tmp_path, text):
    path = tmp_path / "train_eval_infer.config"
    path.write_text(text)
    return str(path)


def test_reads_literals_and_keeps_defaults(tmp_path):
    config = load_config(_write(tmp_path, REFERENCE_STYLE))
    assert config.model.image_width == config.model.image_height == 256
    assert config.preprocess.tile_size == 256  # [model] image_width is its alias
    assert config.model.base_kernels == (7, 7)
    assert config.model.dropout_rate == 0.0 and isinstance(config.model.dropout_rate, float)
    assert config.model.learning_rate == pytest.approx(1e-4)
    assert config.train.epochs == 5 and config.train.steps_per_epoch is None
    assert config.model.base_filters == 16  # not in the file: default
    assert config.tiledinfer.overlap == 64


def test_unknown_section_and_key_warn_with_file_and_key(tmp_path, caplog):
    path = _write(tmp_path, REFERENCE_STYLE)
    with caplog.at_level(logging.WARNING):
        load_config(path)
    text = caplog.text
    assert "mystery_key" in text and "[model]" in text and path in text
    assert "[augmentor]" in text  # its malformed value is never parsed


@pytest.mark.parametrize("line, expected", [
    ("epochs = \"ten\"", "expected int"),
    ("epochs = 1.5", "expected int"),
    ("epochs = __import__('os').system('true')", "not a Python literal"),
    ("learning_rate_reducer = 1", "expected bool"),
])
def test_bad_value_names_file_section_key_and_type(tmp_path, line, expected):
    path = _write(tmp_path, f"[train]\n{line}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert path in message and "[train]" in message and line.split()[0] in message
    assert expected in message


def test_range_check_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(_write(tmp_path, "[train]\nbatch_size = 0\n"))


def test_overrides_win_and_bare_words_are_strings(tmp_path):
    config = load_config(_write(tmp_path, REFERENCE_STYLE),
                         ["train.epochs=2", "tiledinfer.blend=linear", "model.base_kernels=(5, 5)"])
    assert config.train.epochs == 2
    assert config.tiledinfer.blend == "linear"
    assert config.model.base_kernels == (5, 5)
    with pytest.raises(ConfigError, match="no key"):
        load_config(None, ["train.epoch=2"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["epochs=2"])


def test_with_overrides_skips_none_and_checks_types():
    config = with_overrides(schema.Config(), {"preprocess.scale": 2, "preprocess.seed": None})
    assert config.preprocess.scale == 2 and config.preprocess.seed == 0
    with pytest.raises(ConfigError, match="expected int"):
        with_overrides(schema.Config(), {"preprocess.scale": "2"})


def test_write_then_read_round_trip(tmp_path):
    config = load_config(shipped_config("stare"))
    path = str(tmp_path / "copy.config")
    write_config(config, path)
    assert load_config(path) == config


def test_shipped_stare_config_has_reference_defaults():
    config = load_config(shipped_config("stare"))
    m, t = config.model, config.train
    assert (m.base_filters, m.base_kernels, m.num_layers, m.dilation) == (16, (9, 9), 8, (3, 3))
    assert (m.dropout_rate, m.learning_rate, m.clipvalue) == (0.05, 7e-5, 0.5)
    assert (t.reducer_factor, t.reducer_patience, t.patience) == (0.4, 4, 20)
    assert config.tiledinfer.overlap == 64
    assert (config.preprocess.scale, config.preprocess.tile_size) == (5, 512)
    assert config.preprocess.whole_image is True


REFERENCE_SECTIONS = """\
[model]
image_width  = 512
image_height = 512
input_normalize = False
metrics = ["dice_coef"]

[train]
eval_dir = "./eval"
save_weights_only = False

[eval]
image_datapath = "./mini_eval/images"
mask_datapath  = "./mini_eval/masks"

[infer]
images_dir = "./mini_test/images"

[tiledinfer]
overlapping = 48
output_dir  = "./out"

[segmentation]
colorize = True

[image]
gamma = 0

[mask]
binarize  = True
threshold = 127
"""


def test_reference_keys_without_effect_print_one_line_each_once(tmp_path, caplog):
    path = _write(tmp_path, REFERENCE_SECTIONS)
    with caplog.at_level(logging.WARNING):
        config = load_config(path)
        load_config(path)
    notes = [r.getMessage() for r in caplog.records]
    compatible = [n for n in notes if n.endswith("accepted for compatibility, has no effect")]
    assert sorted(compatible) == sorted(
        f"{path}: [{section}] {key}: accepted for compatibility, has no effect"
        for section, key in [("model", "input_normalize"), ("model", "metrics"),
                             ("train", "eval_dir"), ("train", "save_weights_only"),
                             ("eval", "image_datapath"), ("eval", "mask_datapath"),
                             ("infer", "images_dir"), ("tiledinfer", "output_dir"),
                             ("segmentation", "colorize"), ("image", "gamma"),
                             ("mask", "binarize"), ("mask", "threshold")])
    assert f"{path}: [tiledinfer] overlapping is read as [tiledinfer] overlap (one name per setting)" in notes
    assert len(notes) == len(set(notes)) == len(compatible) + 3  # 3 alias notes, nothing twice
    assert config.tiledinfer.overlap == 48 and config.preprocess.tile_size == 512
    assert not hasattr(config, "mask") and not hasattr(config, "segmentation")


def test_one_name_per_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"\[model\] image_height = 256 is read as "
                                          r"\[preprocess\] tile_size, which is 128"):
        load_config(_write(tmp_path, "[model]\nimage_height = 256\n[preprocess]\ntile_size = 128\n"))
    config = load_config(_write(tmp_path, "[preprocess]\ntile_size = 128\n"),
                         ["model.image_height=64", "tiledinfer.overlapping=8"])
    assert (config.preprocess.tile_size, config.model.image_height, config.model.image_width,
            config.tiledinfer.overlap) == (64, 64, 64, 8)
    assert with_overrides(config, {"preprocess.tile_size": 32}).model.image_width == 32
    with pytest.raises(ConfigError, match="accepted in config files for compatibility"):
        load_config(None, ["mask.threshold=100"])


def test_written_configs_use_the_one_names(tmp_path):
    path = tmp_path / "out.config"
    write_config(load_config(None, ["preprocess.tile_size=64"]), str(path))
    text = path.read_text()
    assert "image_width" not in text and "overlapping" not in text and "overlap = 64" in text
    assert load_config(str(path)).model.image_height == 64



def test_every_shipped_config_loads_and_fov_diameter_can_be_unset():
    """Each configs/*.config reads without error (the shipped recipes quoted in the docs),
    and `--set preprocess.fov_diameter=None` turns harmonisation off (chase_small's
    'without harmonisation' run)."""
    from tiled_vessel_seg.configs import tool_config
    names = tool_config.shipped_configs()
    assert {"demo", "stare", "stare_small", "fundus_small", "chase_small"} <= set(names)
    for name in names:
        assert isinstance(load_config(shipped_config(name)), schema.Config), name
    chase = load_config(shipped_config("chase_small"))
    assert chase.preprocess.fov_diameter == 650 and chase.train.dataset_weights == {}
    unset = load_config(shipped_config("chase_small"), ["preprocess.fov_diameter=None"])
    assert unset.preprocess.fov_diameter is None

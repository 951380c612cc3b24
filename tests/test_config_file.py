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
    assert config.model.image_width == 256
    assert config.model.base_kernels == (7, 7)
    assert config.model.dropout_rate == 0.0 and isinstance(config.model.dropout_rate, float)
    assert config.model.learning_rate == pytest.approx(1e-4)
    assert config.model.metrics == ("dice_coef",)
    assert config.train.epochs == 5 and config.train.steps_per_epoch is None
    assert config.model.base_filters == 16  # not in the file: default
    assert config.tiledinfer.overlapping == 64


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
    assert config.tiledinfer.overlapping == 64
    assert (config.preprocess.scale, config.preprocess.tile_size) == (5, 512)
    assert config.preprocess.whole_image is True

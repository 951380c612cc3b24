"""Config error messages (issue 18, minor): a file that is not an INI config is not quoted
back, and a bad --set value is blamed on the override, not on the config file."""
from __future__ import annotations

import pytest

from tiled_vessel_seg.configs import ConfigError, config_file


@pytest.mark.parametrize("text, line", [
    ("SECRET_TOKEN=abc123\nmore secrets\n", 1),          # no section header
    ("[train]\nepochs = 2\nSECRET_TOKEN abc123\n", 3),   # a line that is no key = value
])
def test_a_file_that_is_not_ini_is_named_not_quoted(tmp_path, text, line):
    path = tmp_path / "notes.config"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        config_file.load_config(str(path))
    message = str(error.value)
    assert "SECRET" not in message and "abc123" not in message
    assert str(path) in message and f"line {line}" in message and "\n" not in message


def test_a_bad_override_is_blamed_on_the_override(tmp_path):
    path = tmp_path / "ok.config"
    path.write_text("[train]\nepochs = 2\n")
    with pytest.raises(ConfigError) as error:
        config_file.load_config(str(path), ["train.epochs=0"])
    message = str(error.value)
    assert message.startswith("--set train.epochs=0:") and str(path) not in message


def test_a_bad_file_value_is_still_blamed_on_the_file(tmp_path):
    path = tmp_path / "bad.config"
    path.write_text("[train]\nepochs = 0\n")
    with pytest.raises(ConfigError, match=f"^{path}: .train. epochs must be >= 1"):
        config_file.load_config(str(path), ["train.batch_size=4"])


def test_a_bad_override_without_a_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^--set tiledinfer.threshold=2.0: .*\(0, 1\)"):
        config_file.load_config(None, ["tiledinfer.threshold=2.0"])


def test_an_empty_tf_config_means_no_cluster_for_every_strategy():
    """TF's own TF_CONFIG reader failed on "" with "Expecting value", naming nothing."""
    import os
    import subprocess
    import sys
    code = ("from tiled_vessel_seg.trainer import strategy; "
            "d = strategy.make_distribution('multi_worker'); "
            "print('replicas', d.num_replicas, d.num_workers)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, TF_CONFIG=""), timeout=120)
    assert result.returncode == 0, result.stderr[-1500:]
    assert "replicas 1 1" in result.stdout


# Issue 11 hardening: one line, nothing echoed in bulk.
@pytest.mark.parametrize("where, text", [
    ("file", "[train]\nepochs = " + "9" * 400_000 + "x\n"),           # not a literal
    ("file", "[train]\nepochs = '" + "x" * 400_000 + "'\n"),          # wrong type
    ("file", "[train]\nepochs = 3\n" + "y" * 400_000 + "\n"),          # not INI
    ("set", "train.epochs='" + "x" * 400_000 + "'"),
    ("set", "nosuchsection.key=" + "x" * 400_000),
    ("set", "train." + "k" * 400_000 + "=1"),
])
def test_config_errors_do_not_echo_a_huge_value(tmp_path, where, text):
    from tiled_vessel_seg.configs import config_file
    path = tmp_path / "big.config"
    if where == "file":
        path.write_text(text)
        args = (str(path),)
    else:
        args = (None, [text])
    with pytest.raises(config_file.ConfigError) as refused:
        config_file.load_config(*args)
    message = str(refused.value)
    assert len(message) < 1000, message[:200]
    if "not a valid INI file" in message:  # a file that is not a config: nothing quoted
        assert "yyyy" not in message
    else:
        assert "characters" in message  # says how long the value was

"""Nothing executes from a model file (issue 11 hardening): the installed Keras refuses code
in a .h5 under safe_mode, setup.py requires a Keras with every safe_mode fix, a .h5 named by
model_info.json is refused before its code can run, and a refused .keras is named."""
import os
from pathlib import Path

import pytest

from tests.helpers import model_dir_with_info


KERAS_FLOOR = "3.15.1"  # docs/security.md: every published safe_mode bypass fixed


def _save_h5_with_code(path, marker):
    """Saves a legacy .h5 model whose Lambda layer creates `marker` when it runs."""
    import keras
    os.environ["VESSEL_TEST_MARKER"] = str(marker)
    inp = keras.Input((4,))
    # The path is read from the environment when the lambda runs: the marshalled
    # bytecode then needs no closure or defaults (which keras 3.10 could not restore).
    out = keras.layers.Lambda(
        lambda x: (open(__import__("os").environ["VESSEL_TEST_MARKER"], "w").close(), x)[1])(inp)
    keras.Model(inp, out).save(str(path))
    os.remove(marker)  # building the model ran the lambda once


def test_installed_keras_refuses_code_in_an_h5_model_under_safe_mode(tmp_path):
    import keras
    marker = tmp_path / "code_ran"
    _save_h5_with_code(tmp_path / "evil.h5", marker)
    with pytest.raises(Exception, match="(?i)lambda|safe_mode"):
        keras.models.load_model(str(tmp_path / "evil.h5"), compile=False, safe_mode=True)
    assert not marker.exists()  # keras 3.10.0 ran it (CVE-2025-9905)


def test_setup_requires_a_keras_with_the_safe_mode_fixes():
    from packaging.requirements import Requirement
    from packaging.version import Version
    import keras
    text = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    line = next(l for l in text.splitlines() if l.strip().startswith('"keras'))
    requirement = Requirement(line.strip().strip(",").strip('"'))
    assert not requirement.specifier.contains("3.15.0")
    assert requirement.specifier.contains(KERAS_FLOOR)
    assert Version(keras.__version__) >= Version(KERAS_FLOOR)


def test_an_h5_named_by_model_info_is_refused_before_its_code_can_run(tmp_path):
    from tiled_vessel_seg import model_info
    from tiled_vessel_seg.inference import predictor
    model_dir = model_dir_with_info(tmp_path / "m", model_file="evil.h5")
    marker = tmp_path / "code_ran"
    _save_h5_with_code(model_dir / "evil.h5", marker)
    with pytest.raises(model_info.ModelDirError, match="evil.h5"):
        predictor.load_predictor(str(model_dir))
    assert not marker.exists()
    escape = model_dir_with_info(tmp_path / "m2", model_file="../m/evil.h5")
    with pytest.raises(model_info.ModelDirError, match="model_file"):
        predictor.load_predictor(str(escape))
    assert not marker.exists()


def test_vessel_evaluate_names_the_file_it_refuses_in_safe_mode(tmp_path):
    import keras
    from tiled_vessel_seg import model_info, model_loading
    model_dir = model_dir_with_info(tmp_path / "m")
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Lambda(lambda x: x[..., :1])(inp)
    keras.Model(inp, out).save(str(model_dir / "best_model.keras"))
    with pytest.raises(model_info.ModelDirError) as refused:
        model_loading.load_model(str(model_dir), compile=True)  # vessel-evaluate's call
    message = str(refused.value)
    assert message.startswith(f"{model_dir / 'best_model.keras'}: cannot load the model: ")
    assert "Lambda" in message and "\n" not in message

"""The installed package as a user meets it: one namespace, a saved model loads with plain
Keras after `import tiled_vessel_seg`, every console tool answers --help with exit 0 and
no TensorFlow C++ start-up lines, and folders named configs/ or trainer/ in the working
directory change nothing."""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TF_STARTUP_LINES = ("cuda", "TensorRT", "oneDNN", "cpu_feature_guard", "absl::InitializeLog")


def console_scripts() -> dict[str, str]:
    """{script name: "module:function"} from setup.py (the source of the entry points)."""
    text = (REPO / "setup.py").read_text()
    return dict(re.findall(r'"(vessel-[\w-]+)=([\w.]+:\w+)"', text))


def python(code: str, *args, cwd=None, env=None, timeout=120):
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=timeout)


def run_script(name: str, *args, cwd=None):
    """Runs console script `name` the way its generated wrapper does (argv[0] = name)."""
    module, function = console_scripts()[name].split(":")
    code = (f"import sys; sys.argv[0] = {name!r}; from {module} import {function}; "
            f"sys.exit({function}())")
    return python(code, *args, cwd=cwd)


def test_every_tool_is_in_the_namespace():
    scripts = console_scripts()
    assert {"vessel-segment", "vessel-preprocess", "vessel-train", "vessel-run"} <= set(scripts)
    assert all(target.startswith("tiled_vessel_seg.") for target in scripts.values())


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_help_exits_zero_quietly(name):
    result = run_script(name, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--" in result.stdout and "usage" in (result.stdout + result.stderr).lower() or \
        "flags:" in result.stdout.lower()
    noise = [line for line in result.stderr.splitlines()
             if any(marker in line for marker in TF_STARTUP_LINES)]
    assert not noise, noise


def test_tools_ignore_configs_and_trainer_folders_in_the_working_directory(tmp_path):
    for name in ("configs", "trainer", "inference", "tiled_vessel_seg_decoy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the wrong package')\n")
    (tmp_path / "configs" / "config_file.py").write_text("raise ImportError('the wrong one')\n")
    code = ("from tiled_vessel_seg.configs import load_config; "
            "from tiled_vessel_seg.trainer import losses; "
            "print(load_config(None).model.base_filters)")
    result = python(code, cwd=tmp_path)  # python -c puts the working directory first on sys.path
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "16"
    result = run_script("vessel-segment", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (tmp_path / "configs" / "tiny.config").write_text("[synth]\nnum_images = 1\n")
    result = run_script("vessel-synth", "--config", "configs/tiny.config", "--output_dir",
                        "out", "--size", "64x48", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.gz")) == [
        "im0001.ah.ppm.gz", "im0001.ppm.gz"]


def test_importing_the_package_does_not_import_tensorflow():
    result = python("import sys, tiled_vessel_seg, tiled_vessel_seg.configs, "
                    "tiled_vessel_seg.storage, tiled_vessel_seg.imaging; "
                    "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert result.stdout.strip() == "False False", result.stderr[-2000:]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny model compiled with the project's loss and metrics, saved as .keras."""
    keras = pytest.importorskip("keras")
    from tiled_vessel_seg import keras_objects
    from tiled_vessel_seg.trainer import metrics
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)
    model = keras.Model(inp, out)
    model.compile(optimizer="adam", loss=keras_objects.BceDiceLoss(),
                  metrics=[keras_objects.DiceCoef(), *metrics.segmentation_metrics(0.5)])
    x = np.random.default_rng(0).random((4, 8, 8, 3)).astype(np.float32)
    y = (x[..., :1] > 0.5).astype(np.float32)
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("model") / "best_model.keras"
    model.save(str(path))
    np.save(path.with_suffix(".x.npy"), x)
    np.save(path.with_suffix(".y.npy"), y)
    return path, model.evaluate(x, y, verbose=0, return_dict=True)


LOAD = """
import sys, json, numpy as np
import tiled_vessel_seg
import keras
path = sys.argv[1]
model = keras.models.load_model(path)
x, y = np.load(path[:-6] + '.x.npy'), np.load(path[:-6] + '.y.npy')
print(json.dumps({"loss_class": type(model.loss).__name__,
                  "scores": model.evaluate(x, y, verbose=0, return_dict=True)}))
"""


def check_loaded(result, expected):
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loss_class"] == "BceDiceLoss"
    assert report["scores"].keys() == expected.keys()
    for key, value in expected.items():
        assert report["scores"][key] == pytest.approx(value, abs=1e-5), key


def test_plain_keras_load_model_after_import(saved_model):
    path, expected = saved_model
    check_loaded(python(LOAD, path, timeout=300), expected)


@pytest.mark.parametrize("old_module", ["trainer.losses", "tiled_vessel_seg.trainer.losses"])
def test_models_saved_by_older_versions_still_load(saved_model, tmp_path, old_module):
    """Files written when the code was the top-level package `trainer` record module
    "trainer.losses", later ones (the shipped model) "tiled_vessel_seg.trainer.losses";
    the registered name "vessel>..." still finds the classes in keras_objects."""
    path, expected = saved_model
    old = tmp_path / "old_model.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                text = data.decode()
                assert "tiled_vessel_seg.keras_objects" in text
                data = text.replace("tiled_vessel_seg.keras_objects", old_module).encode()
            dst.writestr(item, data)
    for suffix in (".x.npy", ".y.npy"):
        (tmp_path / ("old_model" + suffix)).write_bytes(path.with_suffix(suffix).read_bytes())
    check_loaded(python(LOAD, old, timeout=300), expected)


def test_tensorflow_start_up_lines_are_off_unless_verbose(tmp_path):
    """vessel-export imports TensorFlow, then fails on the missing model dir."""
    args = ("--model_dir", tmp_path / "none", "--output_dir", tmp_path / "out")
    quiet = run_script("vessel-export", *args)
    assert quiet.returncode == 2 and "model_info.json: not found" in quiet.stderr
    assert not [line for line in quiet.stderr.splitlines()
                if any(marker in line for marker in TF_STARTUP_LINES)], quiet.stderr
    loud = run_script("vessel-export", "--verbose", *args)
    assert loud.returncode == 2
    assert [line for line in loud.stderr.splitlines()
            if any(marker in line for marker in TF_STARTUP_LINES)], loud.stderr

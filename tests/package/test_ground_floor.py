"""The ground floor (the modules of tiled_vessel_seg/) imports no stage, and still makes a
saved model load with plain Keras: each module is imported in a fresh process and
sys.modules is checked for stage packages; every import statement of the ground floor
is read from the source too (an import inside a function would not show at import time).
"""
from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
GROUND = REPO / "tiled_vessel_seg"
STAGES = ("configs", "beam_jobs", "tfrecords", "trainer", "inference", "pipeline", "synthetic",
          "models")
GROUND_MODULES = ["tiled_vessel_seg"] + sorted(
    f"tiled_vessel_seg.{p.stem}" for p in GROUND.glob("*.py") if p.stem != "__init__")

STAGES_LOADED = f"""
import json, sys
stages = {STAGES!r}
print(json.dumps(sorted(m for m in sys.modules
                        if m.split('.')[0] in stages
                        or (m.startswith('tiled_vessel_seg.') and m.split('.')[1] in stages))))
"""


def python(code: str, *args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def stages_loaded_after(statements: str, *args) -> list[str]:
    result = python(statements + "\n" + STAGES_LOADED, *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_ground_floor_is_every_module_of_the_package_folder():
    assert {"tiled_vessel_seg.storage", "tiled_vessel_seg.names", "tiled_vessel_seg.model_info",
            "tiled_vessel_seg.cli_app", "tiled_vessel_seg.keras_objects"} <= set(GROUND_MODULES)


@pytest.mark.parametrize("module", GROUND_MODULES)
def test_importing_a_ground_floor_module_imports_no_stage(module):
    assert stages_loaded_after(f"import {module}") == []


def test_no_ground_floor_source_names_a_stage_in_an_import():
    """Also imports inside functions, which a fresh-process import would not run."""
    found = []
    for path in sorted(GROUND.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{a.name}" for a in node.names] if node.module else []
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] in STAGES or (parts[0] == "tiled_vessel_seg" and len(parts) > 1
                                          and parts[1] in STAGES):
                    found.append(f"{path.name}:{node.lineno} {name}")
    assert found == []


def _stage_imports(folder: str) -> set[str]:
    """The stages named by any import statement of the modules in folder/."""
    found = set()
    for path in sorted((REPO / folder).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "tiled_vessel_seg" and len(parts) > 1 and parts[1] in STAGES:
                    found.add(parts[1])
                elif parts[0] in STAGES:
                    found.add(parts[0])
    return found - {folder}


def test_trainer_and_inference_do_not_import_each_other():
    """The callbacks that run tiled inference during training join them in pipeline/."""
    assert "inference" not in _stage_imports("trainer")
    assert "trainer" not in _stage_imports("inference")
    assert not {"pipeline"} & (_stage_imports("trainer") | _stage_imports("inference"))


def test_keras_import_registers_the_custom_objects_without_a_stage():
    code = """
import tiled_vessel_seg
import keras
for name in ("BceDiceLoss", "Dice", "IoU", "Sensitivity", "Specificity", "PixelAccuracy",
             "DiceCoef", "FinalOutputAUC", "CosineCycles"):
    assert keras.saving.get_registered_object("vessel>" + name) is not None, name
"""
    assert stages_loaded_after(code) == []


def _np_bce_dice(y: np.ndarray, p: np.ndarray) -> float:
    """The reference loss by hand: (mean BCE + 1 - smoothed Dice) / 2, Keras' clipping."""
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))
    dice = (2 * np.sum(y * p) + 1) / (np.sum(y) + np.sum(p) + 1)
    return (bce + 1 - dice) / 2


def test_the_shipped_model_loads_compiled_with_plain_keras_and_no_stage(tmp_path):
    """The shipped file names its loss and schedule by the module they had then
    (tiled_vessel_seg.trainer.losses / .schedules): the registered names still find them."""
    pytest.importorskip("keras")
    model_path = REPO / "models" / "stare_small" / "best_model.keras"
    rng = np.random.default_rng(3)
    x = rng.random((1, 256, 256, 3)).astype(np.float32)
    y = (rng.random((1, 256, 256, 1)) < 0.1).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    code = """
import json, sys
import numpy as np
import tiled_vessel_seg
import keras
model = keras.models.load_model(sys.argv[1], safe_mode=True)
x, y = np.load(sys.argv[2]), np.load(sys.argv[3])
p = model.predict(x, verbose=0)
np.save(sys.argv[4], p)
schedule = model.optimizer._learning_rate
print(json.dumps({"loss": type(model.loss).__name__, "value": float(model.loss(y, p)),
                  "schedule": type(schedule).__name__, "lr0": float(schedule(0))}))
"""
    result = python(code + STAGES_LOADED, model_path, tmp_path / "x.npy", tmp_path / "y.npy",
                    tmp_path / "p.npy")
    assert result.returncode == 0, result.stderr[-3000:]
    *_, report, loaded = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert loaded == []
    p = np.load(tmp_path / "p.npy")
    assert report["loss"] == "BceDiceLoss" and report["schedule"] == "CosineCycles"
    assert report["lr0"] == pytest.approx(0.01)  # max_lr of the shipped recipe
    assert report["value"] == pytest.approx(_np_bce_dice(y, p), rel=1e-4)

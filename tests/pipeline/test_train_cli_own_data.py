"""Own-data gaps (issue 18 item 15): shipped config names resolve like shipped model
names (`--config demo` outside the clone), `vessel-evaluate --model stare_small`, and
fine-tuning from a shipped or trained model (`--init_model NAME|DIR`)."""
from __future__ import annotations

import csv
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tiled_vessel_seg.configs import tool_config

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED_MODEL = ROOT / "models" / "stare_small"


def test_shipped_config_names_resolve_to_the_package_files():
    assert {"demo", "stare", "stare_cpu", "stare_small"} <= set(tool_config.shipped_configs())
    demo = tool_config.resolve_config("demo")
    assert os.path.isfile(demo)
    # the same file as the repository's configs/demo.config (the package holds it)
    assert pathlib.Path(demo).read_bytes() == (ROOT / "configs" / "demo.config").read_bytes()
    assert tool_config.resolve_config("demo.config") == demo
    assert tool_config.resolve_config("configs/demo.config") in (demo, "configs/demo.config")
    assert tool_config.resolve_config("no_such") == "no_such"


def test_vessel_synth_config_demo_outside_the_clone(tmp_path):
    """From a folder with no configs/: the demo config's [synth] size is used."""
    import configparser
    parser = configparser.ConfigParser()
    parser.read(ROOT / "configs" / "demo.config")
    width, height = int(parser["synth"]["width"]), int(parser["synth"]["height"])
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.synthetic.cli", "--config", "demo",
         "--output_dir", str(tmp_path / "out"), "--num_images", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"of {width}x{height}" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.synthetic.cli", "--config", "nope",
         "--output_dir", str(tmp_path / "out2")], capture_output=True, text=True,
        timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: nope: config file not found (--config takes a file or a shipped config: "
        + ", ".join(tool_config.shipped_configs()) + ")"]


# ------------------------------------------------------------------ vessel-evaluate

@pytest.fixture(scope="module")
def tiles_256(tmp_path_factory):
    pytest.importorskip("keras")
    from tiled_vessel_seg.trainer.fake_data import write_fake_dataset
    out = str(tmp_path_factory.mktemp("tiles256"))
    write_fake_dataset(out, tile_size=256, tiles={"train": 2, "valid": 1, "test": 3},
                       shards=1, scale=1, seed=4)
    return out


def test_vessel_evaluate_takes_a_shipped_model_name(tiles_256, tmp_path, capsys):
    from tiled_vessel_seg.trainer import evaluate_cli
    before = {n: (SHIPPED_MODEL / n).stat().st_mtime_ns for n in os.listdir(SHIPPED_MODEL)}
    code = evaluate_cli.main(["--model", "stare_small", "--data_dir", tiles_256,
                              "--output_dir", str(tmp_path / "ev"), "--keras_verbose", "0"])
    assert code == 0, capsys.readouterr()
    after = {n: (SHIPPED_MODEL / n).stat().st_mtime_ns for n in os.listdir(SHIPPED_MODEL)}
    assert after == before   # the package's folder is never written
    with open(tmp_path / "ev" / "evaluation.csv", newline="") as f:
        rows = {r["metric"]: float(r["value"]) for r in csv.DictReader(f)}
    # accuracy at the model's threshold, against numpy over the same tiles
    import json
    import keras
    from tiled_vessel_seg.tfrecords import reader
    threshold = json.loads((SHIPPED_MODEL / "model_info.json").read_text())["threshold"]
    model = keras.models.load_model(str(SHIPPED_MODEL / "best_model.keras"), compile=False,
                                    safe_mode=True)
    images, labels = [], []
    for x, y in reader.make_dataset(tiles_256, reader.InputConfig("test", 3)):
        images.append(x.numpy())
        labels.append(y.numpy())
    predicted = model.predict(np.concatenate(images), verbose=0)
    predicted = predicted[-1] if isinstance(predicted, (list, tuple)) else predicted
    truth = np.concatenate(labels)[..., :1] > 0.5
    accuracy = np.mean((predicted[..., :1] > threshold) == truth)
    assert rows["accuracy"] == pytest.approx(accuracy, abs=2e-3)


def test_vessel_evaluate_without_output_dir_writes_nothing_for_a_shipped_model(
        monkeypatch, capsys):
    from tiled_vessel_seg.trainer import evaluate, evaluate_cli
    calls = []

    def fake(model_dir, data_dir, split, **kwargs):
        calls.append((model_dir, kwargs["output_dir"]))
        return {"loss": 0.5}

    monkeypatch.setattr(evaluate, "evaluate", fake)
    assert evaluate_cli.main(["--model", "stare_small", "--data_dir", "D"]) == 0
    assert calls == [(str(SHIPPED_MODEL.resolve()), None)] or (
        os.path.samefile(calls[0][0], SHIPPED_MODEL) and calls[0][1] is None)
    assert "not written to" in capsys.readouterr().out
    assert evaluate_cli.main(["--model_dir", "some/dir", "--data_dir", "D"]) == 0
    assert calls[-1] == ("some/dir", "")   # a trained model dir: evaluation.csv there
    assert evaluate_cli.main(["--model", "no_such_model", "--data_dir", "D"]) == 2


# --------------------------------------------------------------------- fine-tuning

SMALL_TRAINING = ["preprocess.tile_size=32", "preprocess.tile_stride=32", "train.epochs=1", "train.steps_per_epoch=1",
                  "train.batch_size=2", "train.validation_steps=1", "tiledinfer.overlap=8"]


@pytest.fixture(scope="module")
def tiles_32(tmp_path_factory):
    pytest.importorskip("keras")
    from tiled_vessel_seg.trainer.fake_data import write_fake_dataset
    out = str(tmp_path_factory.mktemp("tiles32"))
    write_fake_dataset(out, tile_size=32, tiles={"train": 4, "valid": 2, "test": 1},
                       shards=1, scale=1, seed=5)
    return out


class _BeforeTraining(Exception):
    pass


def test_fine_tuning_starts_from_the_shipped_weights(tiles_32, tmp_path, monkeypatch):
    """train() with init_model: the weights fit() starts from are the shipped file's
    (fit is stopped at its first call: what comes before training is checked)."""
    import keras
    from tiled_vessel_seg.configs import load_config
    from tiled_vessel_seg.trainer import model as model_lib
    from tiled_vessel_seg.trainer import train
    shipped = keras.models.load_model(str(SHIPPED_MODEL / "best_model.keras"), compile=False,
                                      safe_mode=True).get_weights()
    seen = {}

    def stop_at_fit(self, *args, **kwargs):
        seen["weights"] = [np.array(w) for w in self.get_weights()]
        raise _BeforeTraining()

    monkeypatch.setattr(keras.Model, "fit", stop_at_fit)
    config = load_config(tool_config.resolve_config("stare_small"),
                         SMALL_TRAINING + ["train.init_model=stare_small"])
    with pytest.raises(_BeforeTraining):
        train.train(config, tiles_32, str(tmp_path / "tuned"), precision="float32", verbose=0)
    assert len(seen["weights"]) == len(shipped)
    for ours, theirs in zip(seen["weights"], shipped):
        np.testing.assert_array_equal(ours, theirs)
    # the same recipe without init_model starts from other (random) weights
    fresh = model_lib.build_model(config.model).get_weights()
    assert len(fresh) == len(shipped)
    assert not all(np.array_equal(a, b) for a, b in zip(fresh, shipped))


def test_fine_tuning_refuses_another_architecture_in_one_line(tiles_32, tmp_path):
    from tiled_vessel_seg.configs import ConfigError, load_config
    from tiled_vessel_seg.trainer import train
    config = load_config(None, SMALL_TRAINING + ["model.base_filters=4", "model.num_layers=2",
                                                 "train.init_model=stare_small"])
    with pytest.raises(ConfigError, match=r"another architecture: weight \d+ .*--config "
                                          r"stare_small"):
        train.train(config, tiles_32, str(tmp_path / "m"), precision="float32", verbose=0)


@pytest.mark.parametrize("module", ["tiled_vessel_seg.pipeline.train_cli",
                                    "tiled_vessel_seg.pipeline.run",
                                    "tiled_vessel_seg.pipeline.cv"])
def test_init_model_flag_is_checked_before_any_work(module, tmp_path):
    where = (["--data_dir", str(tmp_path)] if module.endswith("train_cli") else
             ["--workdir", str(tmp_path / "w"), "--stare_dir", str(tmp_path)])
    result = subprocess.run(
        [sys.executable, "-m", module, "--config", "demo", *where, "--init_model",
         "no_such_model"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--init_model: model 'no_such_model'" in result.stderr
    assert not (tmp_path / "w").exists()

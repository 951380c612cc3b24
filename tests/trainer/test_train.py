"""vessel-train and vessel-evaluate in this process (one replica) on tiny synthetic shards."""
import json
import math
import os
import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import ConfigError, load_config, to_dict  # noqa: E402
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib  # noqa: E402
from tiled_vessel_seg.tfrecords import reader  # noqa: E402
from tiled_vessel_seg.pipeline import train_cli  # noqa: E402
from tiled_vessel_seg.trainer import evaluate as evaluate_lib  # noqa: E402
from tiled_vessel_seg.trainer import evaluate_cli  # noqa: E402
from tiled_vessel_seg import keras_objects  # noqa: E402
from tiled_vessel_seg.trainer import metrics  # noqa: E402
from tiled_vessel_seg.trainer import model as model_lib  # noqa: E402
from tiled_vessel_seg import model_info as model_info_lib  # noqa: E402
from tiled_vessel_seg.trainer import strategy as strategy_lib  # noqa: E402
from tiled_vessel_seg.trainer import train as train_lib  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

TINY = ["preprocess.tile_size=32", "model.base_filters=4",
        "model.num_layers=3", "model.base_kernels=(3,3)", "model.dilation=(1,1)",
        "model.learning_rate=0.01", "model.dropout_rate=0.0", "train.batch_size=2",
        "train.steps_per_epoch=8", "train.epochs=3", "train.deterministic=True",
        "tiledinfer.overlap=8", "tiledinfer.threshold=0.4"]


class BestWeights(keras.callbacks.Callback):
    """Copies the weights after the epoch of lowest val_loss (the one the checkpoint keeps)."""

    def __init__(self):
        super().__init__()
        self.val_loss, self.weights = math.inf, None

    def on_epoch_end(self, epoch, logs=None):
        if logs["val_loss"] < self.val_loss:
            self.val_loss = logs["val_loss"]
            self.weights = [np.array(w) for w in self.model.get_weights()]


class Stop(Exception):
    pass


class StopAtEpoch(keras.callbacks.Callback):
    """Raises Stop when epoch `epoch` (0-based) begins, as a crash would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Stop(f"stopped at epoch {epoch}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("train_shards"))
    write_fake_dataset(out, tile_size=32, tiles={"train": 16, "valid": 4, "test": 5},
                       shards=2, scale=5, seed=1)
    return out


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("model"))
    config = load_config(None, TINY)
    best = BestWeights()
    history = train_lib.train(config, data_dir, model_dir, precision="float32", verbose=0,
                              callbacks=[best])
    return config, model_dir, history, best.weights


def split_arrays(data_dir, split):
    batches = list(reader.make_dataset(data_dir, reader.InputConfig(split, 64)))
    return (np.concatenate([b[0].numpy() for b in batches]),
            np.concatenate([b[1].numpy() for b in batches]))


def test_training_lowers_the_loss(trained, data_dir):
    config, model_dir, _, _ = trained
    keras.utils.set_random_seed(config.train.seed)
    initial = model_lib.build_unet(config.model)
    best = keras.models.load_model(os.path.join(model_dir, "best_model.keras"), safe_mode=True)
    x, y = split_arrays(data_dir, "valid")
    before = float(keras_objects.bce_dice_loss(y, initial.predict(x, verbose=0)))
    after = float(keras_objects.bce_dice_loss(y, best.predict(x, verbose=0)))
    assert after < before - 0.02, (before, after)


def test_writes_logs_history_and_model_info(trained, data_dir):
    config, model_dir, history, _ = trained
    saved = json.load(open(os.path.join(model_dir, "history.json")))
    assert saved["epoch"] == [0, 1, 2]
    np.testing.assert_allclose(saved["val_loss"], history["val_loss"], rtol=1e-6)
    lines = open(os.path.join(model_dir, "eval", "train_losses.csv")).read().splitlines()
    assert lines[0] == "epoch, loss, val_loss" and len(lines) == 4
    epoch, loss, val_loss = (float(v) for v in lines[2].split(","))
    assert epoch == 1 and loss == pytest.approx(saved["loss"][1], abs=6e-5)
    assert val_loss == pytest.approx(saved["val_loss"][1], abs=6e-5)
    lines = open(os.path.join(model_dir, "eval", "train_metrics.csv")).read().splitlines()
    assert lines[0] == "epoch,dice_coef,val_dice_coef," and len(lines) == 4
    assert float(lines[3].split(",")[2]) == pytest.approx(saved["val_dice_coef"][2], abs=6e-5)
    for name in ("train_losses.png", "train_metrics.png"):
        assert os.path.getsize(os.path.join(model_dir, "eval", name)) > 1000
    assert os.listdir(os.path.join(model_dir, "logs"))
    assert not os.path.exists(os.path.join(model_dir, "backup"))  # removed at the end

    info = model_info_lib.read_model_info(model_dir)
    data = dataset_info_lib.read_dataset_info(data_dir)
    assert (info.tile_size, info.scale, info.overlap, info.threshold) == (32, 5, 8, 0.4)
    assert info.precision == "float32" and info.input_normalization == "divide_255"
    assert info.data_ids == {s: v.image_ids for s, v in data.splits.items()}
    assert info.config == json.loads(json.dumps(to_dict(config)))


def test_safe_loading_keeps_loss_metrics_and_weights(trained):
    _, model_dir, _, trained_weights = trained
    path = os.path.join(model_dir, "best_model.keras")
    loaded = keras.models.load_model(path, safe_mode=True, compile=True)
    assert isinstance(loaded.loss, keras_objects.BceDiceLoss)
    # The weights the model had after its best epoch, as training held them in memory.
    assert len(loaded.get_weights()) == len(trained_weights)
    for a, b in zip(loaded.get_weights(), trained_weights):
        np.testing.assert_array_equal(a, b)
    out = loaded(np.zeros((1, 32, 32, 3), np.float32))
    assert out.dtype == "float32" and tuple(out.shape) == (1, 32, 32, 1)


def np_roc_auc(t, p):
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    for value in np.unique(p):  # average ranks of ties
        tie = p == value
        ranks[tie] = ranks[tie].mean()
    pos = t > 0.5
    return (ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum())


def test_evaluate_matches_numpy_over_the_predictions(trained, data_dir):
    config, model_dir, _, _ = trained
    results = evaluate_lib.evaluate(model_dir, data_dir, "test", verbose=0)
    written = evaluate_lib.read_evaluation(model_dir)
    assert list(written) == ["loss"] + list(metrics.METRIC_NAMES)

    model = keras.models.load_model(os.path.join(model_dir, "best_model.keras"), safe_mode=True)
    # The evaluator's batches: global batch = training batch_size (2) x 1 replica.
    batches = list(reader.make_dataset(data_dir, reader.InputConfig("test", 2)))
    eps = 1e-7
    batch_loss, batch_dice, sizes, truth, probs = [], [], [], [], []
    for x, y in batches:
        t, p = y.numpy().astype(np.float64), model.predict(x, verbose=0).astype(np.float64)
        pc = np.clip(p, eps, 1 - eps)
        bce = np.mean(-(t * np.log(pc) + (1 - t) * np.log(1 - pc)))
        dice = (2 * np.sum(t * p) + 1) / (np.sum(t) + np.sum(p) + 1)
        batch_loss.append((bce + 1 - dice) / 2)
        batch_dice.append(dice)
        sizes.append(len(t))
        truth.append(t.ravel())
        probs.append(p.ravel())
    t, p = np.concatenate(truth), np.concatenate(probs)
    pred, pos = p > 0.5, t > 0.5
    tp, fp = np.sum(pred & pos), np.sum(pred & ~pos)
    fn, tn = np.sum(~pred & pos), np.sum(~pred & ~pos)
    expected = {
        "loss": np.average(batch_loss, weights=sizes), "dice_coef": np.mean(batch_dice),
        "dice": 2 * tp / max(2 * tp + fp + fn, 1) if (2 * tp + fp + fn) else 1.0,
        "iou": tp / (tp + fp + fn) if (tp + fp + fn) else 1.0,
        "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
        "accuracy": (tp + tn) / t.size}
    for name, value in expected.items():
        assert results[name] == pytest.approx(value, abs=2e-4), name
        assert written[name] == pytest.approx(value, abs=2e-4), name
    assert results["auc"] == pytest.approx(np_roc_auc(t, p), abs=0.01)


@pytest.fixture
def float32_policy_after():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_mixed_bfloat16_trains_on_cpu(data_dir, tmp_path, float32_policy_after):
    config = load_config(None, TINY + ["train.epochs=1", "train.steps_per_epoch=3"])
    history = train_lib.train(config, data_dir, str(tmp_path), precision="mixed_bfloat16",
                              verbose=0)
    assert np.isfinite(history["loss"][0])
    assert model_info_lib.read_model_info(str(tmp_path)).precision == "mixed_bfloat16"
    model = keras.models.load_model(str(tmp_path / "best_model.keras"), safe_mode=True)
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
    out = model.predict(np.full((1, 32, 32, 3), 0.5, np.float32), verbose=0)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))


def test_precision_auto_is_float32_without_gpu(monkeypatch):
    import tensorflow as tf
    assert tf.config.list_physical_devices("GPU") == [], "this test needs a machine without GPU"
    assert strategy_lib.resolve_precision("auto") == "float32"
    # ... and the same call says mixed_float16 where TensorFlow sees a GPU.
    real = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: (
        [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")] if kind == "GPU"
        else real(kind)))
    assert strategy_lib.resolve_precision("auto") == "mixed_float16"


def test_global_batch_must_split_across_replicas():
    assert strategy_lib.global_batch_size(2, 4) == 8
    assert strategy_lib.global_batch_size(2, 2, 6) == 6
    with pytest.raises(ValueError, match="cannot be split evenly over 2 replicas"):
        strategy_lib.global_batch_size(2, 2, 5)


def test_clear_errors(data_dir, tmp_path, capsys):
    config = load_config(None, TINY)
    # A config for 64 px tiles no longer stops training on 32 px ones: the model's input is
    # the dataset's (issue 20; trained end to end in test_train_entry.py).
    fitted = train_lib.with_dataset_input(
        load_config(None, TINY + ["model.image_height=64", "model.image_width=64"]),
        data_dir, dataset_info_lib.read_dataset_info(data_dir))
    assert (fitted.model.image_height, fitted.model.image_width) == (32, 32)
    only_train = tmp_path / "only_train"
    shutil.copytree(data_dir, only_train)
    info = dataset_info_lib.read_dataset_info(str(only_train))
    del info.splits["valid"]
    dataset_info_lib.write_dataset_info(str(only_train), info)
    with pytest.raises(dataset_info_lib.DatasetError, match="no split 'valid'"):
        train_lib.train(config, str(only_train), str(tmp_path / "m2"), verbose=0)
    old = tmp_path / "old_model"
    old.mkdir()
    (old / "model_info.json").write_text(json.dumps({"tile_size": 32, "scale": 1,
                                                     "schema_version": 999}))
    with pytest.raises(model_info_lib.ModelDirError, match="schema 999"):
        train_lib.train(config, data_dir, str(old), verbose=0)
    # CLI: a config value of the wrong type and a missing data dir exit 2 with the reason.
    assert train_cli.main(["--data_dir", data_dir, "--set", "train.epochs='two'"]) == 2
    assert "[train] epochs" in capsys.readouterr().err
    assert train_cli.main(["--data_dir", str(tmp_path / "none"), "--model_dir",
                           str(tmp_path / "m3")] + sum((["--set", s] for s in TINY), [])) == 2
    assert "dataset_info.json: not found" in capsys.readouterr().err
    assert evaluate_cli.main(["--model_dir", str(tmp_path / "m3"), "--data_dir",
                              data_dir]) == 2
    assert "model_info.json: not found" in capsys.readouterr().err


def test_cli_help_flags_and_the_epoch_callback(data_dir, tmp_path, capsys):
    assert train_cli.main(["--help"]) == 0
    usage = capsys.readouterr().out
    for flag in ("--strategy", "--worker_timeout", "--num_cpu_replicas", "--precision",
                 "--global_batch_size", "--keras_verbose", "--config", "--set", "--data_dir",
                 "--model_dir", "--[no]deterministic"):
        assert flag in usage, flag
    assert "multi_worker" in usage and "TF_CONFIG" in usage
    assert evaluate_cli.main(["--help"]) == 0
    assert "--split" in capsys.readouterr().out
    # The argparse spellings still run; [train] epoch_change_tiledinfer still writes masks.
    import cv2
    images = tmp_path / "photos"
    images.mkdir()
    cv2.imwrite(str(images / "photo.png"), np.full((40, 48, 3), 128, np.uint8))
    model_dir = tmp_path / "model"
    sets = TINY + ["train.epochs=1", "train.steps_per_epoch=2",
                   "train.epoch_change_tiledinfer=True", f"tiledinfer.images_dir={str(images)!r}",
                   "tiledinfer.input_scale='enlarged'"]
    assert train_cli.main(["--data_dir", data_dir, "--model_dir", str(model_dir),
                           "--verbose", "0", "--num_cpu_replicas", "0", "--precision",
                           "float32", "--strategy", "one_device"]
                          + sum((["--set", s] for s in sets), [])) == 0
    assert "--verbose 0 is spelled --keras_verbose 0 now" in capsys.readouterr().err
    assert os.listdir(model_dir / "epoch_change_tiledinfer") == ["Epoch_1_photo.png"]
    assert evaluate_cli.main(["--model_dir", str(model_dir), "--data_dir", data_dir,
                              "--split", "valid", "--verbose=0"]) == 0
    assert evaluate_lib.read_evaluation(str(model_dir))["accuracy"] > 0.5


def test_held_out_test_images_never_reach_training_or_validation(data_dir, tmp_path):
    # Every test shard is replaced by bytes no reader can parse: training and its
    # validation must not notice (reading one record of them raises), and the validation
    # figures must be those of the valid split, recomputed here from the saved model.
    poisoned = str(tmp_path / "poisoned")
    shutil.copytree(data_dir, poisoned)
    info = dataset_info_lib.read_dataset_info(poisoned)
    for path in info.shard_paths(poisoned, "test"):
        with open(path, "wb") as f:
            f.write(b"held-out image: must never be read by training" * 50)
    with pytest.raises(Exception):
        list(reader.make_dataset(poisoned, reader.InputConfig("test", 4)))
    model_dir = str(tmp_path / "model")
    config = load_config(None, TINY + ["train.epochs=1", "train.steps_per_epoch=4"])
    history = train_lib.train(config, poisoned, model_dir, precision="float32", verbose=0)
    model = keras.models.load_model(os.path.join(model_dir, "best_model.keras"),
                                    safe_mode=True)
    x, y = split_arrays(poisoned, "valid")
    predicted, truth = model.predict(x, verbose=0) > 0.4, y > 0.5
    assert history["val_accuracy"][0] == pytest.approx(np.mean(predicted == truth), abs=1e-6)
    assert history["val_specificity"][0] == pytest.approx(
        np.sum(~predicted & ~truth) / np.sum(~truth), abs=1e-6)


def test_model_info_comes_with_a_model_and_backup_keeps_its_config(data_dir, tmp_path):
    model_dir = str(tmp_path / "model")
    config = load_config(None, TINY + ["train.epochs=2", "train.steps_per_epoch=2"])
    with pytest.raises(Stop):  # fails before its first epoch ends: no model, no metadata
        train_lib.train(config, data_dir, model_dir, verbose=0, callbacks=[StopAtEpoch(0)])
    assert not os.path.exists(os.path.join(model_dir, "model_info.json"))
    assert not os.path.exists(os.path.join(model_dir, "best_model.keras"))
    with pytest.raises(Stop):  # killed after epoch 1: both written, backup/ at epoch 1
        train_lib.train(config, data_dir, model_dir, verbose=0, callbacks=[StopAtEpoch(1)])
    assert model_info_lib.read_model_info(model_dir).config == json.loads(
        json.dumps(to_dict(config)))
    assert os.path.exists(os.path.join(model_dir, "best_model.keras"))
    backup = os.path.join(model_dir, "backup")
    assert json.load(open(os.path.join(backup, "training_metadata.json")))["epoch"] == 1
    assert json.load(open(os.path.join(backup, "run_config.json"))) == json.loads(
        json.dumps(to_dict(config)))

    other = load_config(None, TINY + ["train.epochs=2", "train.steps_per_epoch=2",
                                      "model.base_filters=8"])
    with pytest.raises(model_info_lib.ModelDirError) as error:
        train_lib.train(other, data_dir, model_dir, verbose=0)
    assert str(error.value) == (
        f"{backup}: backup/ was made with another config: remove it or use the original "
        f"config (differs in [model] base_filters)")
    assert model_info_lib.read_model_info(model_dir).config["model"]["base_filters"] == 4
    history = train_lib.train(config, data_dir, model_dir, verbose=0)  # the original resumes
    assert len(history["loss"]) == 1
    assert json.load(open(os.path.join(model_dir, "history.json")))["epoch"] == [0, 1]
    assert not os.path.exists(backup)


def test_config_checks_come_before_training(data_dir, tmp_path):
    model_dir = tmp_path / "model"
    with pytest.raises(ConfigError, match=r"\[tiledinfer\] overlap 32 must be smaller than "
                                          r"the tile \(32x32"):
        train_lib.train(load_config(None, TINY + ["tiledinfer.overlap=32"]), data_dir,
                        str(model_dir), verbose=0)
    with pytest.raises(ConfigError, match=r"\[train\] validation_steps must be >= 1"):
        # refused by the schema, when the config is read
        train_lib.train(load_config(None, TINY + ["train.validation_steps=0"]), data_dir,
                        str(model_dir), verbose=0)
    assert not model_dir.exists()

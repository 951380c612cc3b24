"""Empty or changed shards: counted cheaply, refused in one line before any work (issue 18.1)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

tf = pytest.importorskip("tensorflow")

from tests.conftest import REPO_ROOT  # noqa: E402
from tiled_vessel_seg import model_info as model_info_lib  # noqa: E402
from tiled_vessel_seg.configs import load_config  # noqa: E402
from tiled_vessel_seg.pipeline import run as run_lib  # noqa: E402
from tiled_vessel_seg.pipeline import train_cli  # noqa: E402
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib  # noqa: E402
from tiled_vessel_seg.tfrecords import record_counts  # noqa: E402
from tiled_vessel_seg.trainer import evaluate_cli  # noqa: E402
from tiled_vessel_seg.trainer import model as model_lib  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

TINY = ["preprocess.tile_size=32", "model.base_filters=4", "model.num_layers=3",
        "model.base_kernels=(3,3)", "model.dilation=(1,1)", "train.batch_size=2",
        "train.steps_per_epoch=2", "train.epochs=1", "tiledinfer.overlap=8",
        "preprocess.tile_stride=32"]
SETS = [a for s in TINY for a in ("--set", s)]


def _tf_count(path, compression):
    """Records in a shard as TensorFlow reads them (the independent reference)."""
    dataset = tf.data.TFRecordDataset(path, "GZIP" if compression == "gzip" else "")
    return int(dataset.reduce(0, lambda n, _: n + 1))


def _dataset(root, compression="gzip", tiles=None, shards=2):
    out = str(root)
    write_fake_dataset(out, tile_size=32, tiles=tiles or {"train": 8, "valid": 4, "test": 3},
                       shards=shards, compression=compression, seed=3)
    return out


def _empty(data_dir, split):
    """`: > shard` for every shard of the split (the issue's repro)."""
    info = dataset_info_lib.read_dataset_info(data_dir)
    for path in info.shard_paths(data_dir, split):
        open(path, "wb").close()
    return info.shard_paths(data_dir, split)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_counts_match_tensorflow_and_dataset_info(tmp_path, compression):
    data_dir = _dataset(tmp_path, compression, tiles={"train": 7, "valid": 4, "test": 1},
                        shards=3)
    info = dataset_info_lib.read_dataset_info(data_dir)
    counts = record_counts.check_splits(data_dir, info, ["train", "valid", "test"], "a test")
    for split in ("train", "valid", "test"):
        paths = info.shard_paths(data_dir, split)
        assert counts[split] == [_tf_count(p, compression) for p in paths]
    assert counts["train"] == [3, 2, 2]  # 7 tiles dealt round robin over 3 shards
    assert counts["test"] == [1, 0, 0]
    assert info.splits["train"].shard_records == [3, 2, 2]


def test_truncated_shard_is_named(tmp_path):
    data_dir = _dataset(tmp_path, "none")
    info = dataset_info_lib.read_dataset_info(data_dir)
    path = info.shard_paths(data_dir, "train")[1]
    data = open(path, "rb").read()
    open(path, "wb").write(data[:-10])
    with pytest.raises(record_counts.RecordCountError, match="truncated after 3 record"):
        record_counts.count_records(path, "none")


def test_a_changed_shard_is_named(tmp_path):
    data_dir = _dataset(tmp_path, "gzip")
    info = dataset_info_lib.read_dataset_info(data_dir)
    train = info.shard_paths(data_dir, "train")
    shutil.copy(info.shard_paths(data_dir, "test")[1], train[1])  # 1 record, not 4
    with pytest.raises(record_counts.RecordCountError) as error:
        record_counts.check_splits(data_dir, info, ["train"], "training")
    message = str(error.value)
    assert train[1] in message and "holds 1 record" in message and "says 4" in message
    assert train[0] not in message


def test_old_dataset_info_without_shard_counts_checks_the_total(tmp_path):
    data_dir = _dataset(tmp_path, "gzip")
    raw = json.load(open(os.path.join(data_dir, "dataset_info.json")))
    for split in raw["splits"].values():
        del split["shard_records"]
    raw["splits"]["valid"]["records"] = 5  # the shards hold 4
    open(os.path.join(data_dir, "dataset_info.json"), "w").write(json.dumps(raw))
    info = dataset_info_lib.read_dataset_info(data_dir)
    record_counts.check_splits(data_dir, info, ["train"], "training")
    with pytest.raises(record_counts.RecordCountError, match="lists 5 record.*hold 4"):
        record_counts.check_splits(data_dir, info, ["valid"], "training")


def test_vessel_train_with_an_empty_train_shard_exits_2_at_once(tmp_path):
    """Today this hangs at 100 % CPU: a subprocess with a timeout, so a regression fails."""
    data_dir = _dataset(tmp_path / "data", shards=1)
    (shard,) = _empty(data_dir, "train")
    model_dir = tmp_path / "model"
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.pipeline.train_cli", "--data_dir", data_dir,
         "--model_dir", str(model_dir), *SETS], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and shard in lines[0] and "'train' is empty" in lines[0], lines
    assert not model_dir.exists()


def test_vessel_train_with_an_empty_valid_shard_exits_2(tmp_path, capsys):
    data_dir = _dataset(tmp_path / "data")
    shards = _empty(data_dir, "valid")
    model_dir = tmp_path / "model"
    status = train_cli.main(["--data_dir", data_dir, "--model_dir", str(model_dir), *SETS])
    err = capsys.readouterr().err
    assert status == 2
    assert "'valid' is empty" in err and shards[0] in err
    assert not (model_dir / model_info_lib.MODEL_FILE).exists()


def _untrained_model_dir(path):
    """A model dir for 32 px tiles with an untrained tiny model (evaluate needs one)."""
    config = load_config(None, TINY)
    model = model_lib.build_model(config.model)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    os.makedirs(path)
    model.save(os.path.join(path, model_info_lib.MODEL_FILE))
    model_info_lib.write_model_info(str(path), model_info_lib.ModelInfo(
        tile_size=32, scale=1, overlap=8, config={"train": {"batch_size": 2}}))
    return str(path)


def test_vessel_evaluate_on_an_empty_test_shard_exits_2(tmp_path, capsys):
    data_dir = _dataset(tmp_path / "data")
    shards = _empty(data_dir, "test")
    model_dir = _untrained_model_dir(tmp_path / "model")
    status = evaluate_cli.main(["--model_dir", model_dir, "--data_dir", data_dir])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "'test' is empty" in err and shards[0] in err and "Traceback" not in err
    assert not os.path.exists(os.path.join(model_dir, "evaluation.csv"))


def test_vessel_run_train_stage_with_an_empty_train_shard_exits_2(tmp_path, capsys):
    workdir = tmp_path / "run"
    data_dir = _dataset(workdir / "data", shards=1)
    _empty(data_dir, "train")
    status = run_lib.main(["--workdir", str(workdir), "--config", str(REPO_ROOT / "configs" / "demo.config"), "--stages", "train",
                           *SETS])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "'train' is empty" in err
    assert not (workdir / "model" / model_info_lib.MODEL_FILE).exists()


@pytest.mark.parametrize("shard", ["/etc/passwd", "../elsewhere/train-00000-of-00001.tfrecord",
                                   "train/../../x.tfrecord", "gs://bucket/x.tfrecord"])
def test_a_shard_path_outside_the_dataset_is_refused(tmp_path, shard):
    """Shards are files of the dataset folder: an absolute path, a URL or '..' in
    dataset_info.json would read (or count) any file of the machine (issue 18, minor)."""
    data_dir = _dataset(tmp_path, "none", shards=1)
    raw = json.load(open(os.path.join(data_dir, "dataset_info.json")))
    raw["splits"]["train"]["shards"] = [shard]
    open(os.path.join(data_dir, "dataset_info.json"), "w").write(json.dumps(raw))
    with pytest.raises(dataset_info_lib.DatasetError, match="outside the dataset folder"):
        info = dataset_info_lib.read_dataset_info(data_dir)
        info.shard_paths(data_dir, "train")

"""vessel-preprocess --overwrite never deletes a good dataset before a complete one replaces
it, and a requested split left empty is a warning at preprocessing time (issue 11, items 2
and 9). Small synthetic runs on the in-memory DirectRunner."""
import gzip
import json
import os
import shutil

import pytest

from tiled_vessel_seg import datasets
from tiled_vessel_seg.beam_jobs import cli, pipeline, tile_tasks
from tiled_vessel_seg.configs.schema import PreprocessConfig
from tiled_vessel_seg.tfrecords import dataset_info as info_lib

RUN = ["--set", "preprocess.scale=1", "--set", "preprocess.tile_size=64", "--augment", "none",
       "--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
CONFIG = PreprocessConfig(scale=1, tile_size=64, augmentations=(), shards=4,
                          split="train=0.5,valid=0.25,test=0.25")


def _snapshot(data_dir):
    """{relative path: bytes} of every file of the dataset (the shards dataset_info lists)."""
    info = info_lib.read_dataset_info(data_dir)
    files = {name: open(os.path.join(data_dir, name), "rb").read()
             for s in info.splits.values() for name in s.shards}
    files["dataset_info.json"] = open(os.path.join(data_dir, "dataset_info.json"), "rb").read()
    return files


@pytest.fixture
def old_dataset(synthetic_stare_dir, tmp_path):
    out = tmp_path / "dataset"
    pairs, problems = datasets.discover_stare(str(synthetic_stare_dir))
    pipeline.run_job(CONFIG, pairs, problems, str(out))
    return str(out), _snapshot(str(out))


def _leftovers(out):
    return [n for n in os.listdir(out) if n.startswith(pipeline.STAGING_PREFIX)]


def test_overwrite_with_nothing_to_write_keeps_the_dataset(old_dataset, tmp_path, capsys):
    out, before = old_dataset
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    code = cli.main(["--images_dir", str(empty / "images"), "--masks_dir", str(empty / "masks"),
                     "--output_dir", out, "--overwrite", *RUN])
    assert code == 1
    assert "was kept" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert not _leftovers(out)


def test_overwrite_whose_every_input_is_rejected_keeps_the_dataset(old_dataset, tmp_path,
                                                                    capsys):
    out, before = old_dataset
    bad = tmp_path / "bad"
    for sub in ("stare-images", "labels-ah"):
        (bad / sub).mkdir(parents=True)
    (bad / "stare-images" / "im0001.ppm.gz").write_bytes(gzip.compress(b"P6\n10 10\n255\n"))
    (bad / "labels-ah" / "im0001.ah.ppm.gz").write_bytes(gzip.compress(b"P6\n10 10\n255\n"))
    code = cli.main(["--stare_dir", str(bad), "--output_dir", out, "--overwrite", *RUN])
    assert code == 1
    assert "was kept" in capsys.readouterr().out
    assert _snapshot(out) == before
    assert not _leftovers(out)


def test_overwrite_failing_midway_keeps_the_dataset(old_dataset, synthetic_stare_dir,
                                                     monkeypatch):
    out, before = old_dataset

    def broken(task, config, encoding):
        raise RuntimeError("disk gone")
        yield  # pragma: no cover
    monkeypatch.setattr(tile_tasks, "task_records", broken)
    pairs, problems = datasets.discover_stare(str(synthetic_stare_dir))
    with pytest.raises(Exception, match="disk gone"):
        pipeline.run_job(CONFIG, pairs, problems, out, overwrite=True)
    assert _snapshot(out) == before
    assert not _leftovers(out)


def test_overwrite_replaces_every_old_file(old_dataset, synthetic_stare_dir):
    out, before = old_dataset
    old_info = info_lib.read_dataset_info(out)
    assert all(len(s.shards) == 4 for s in old_info.splits.values())
    pairs, problems = datasets.discover_stare(str(synthetic_stare_dir))
    config = PreprocessConfig(scale=1, tile_size=32, augmentations=(), split="train=1.0", shards=1)
    summary = pipeline.run_job(config, pairs, problems, out, overwrite=True)
    info = info_lib.read_dataset_info(out)
    assert summary.output_dir == out and list(info.splits) == ["train"]
    shards = sorted(os.path.relpath(os.path.join(d, f), out) for d, _, fs in os.walk(out)
                    for f in fs if ".tfrecord" in f)
    assert shards == ["train/train-00000-of-00001.tfrecord"] == info.splits["train"].shards
    assert info.parameters.values["tile_size"] == 32
    assert not _leftovers(out)
    assert json.loads(open(os.path.join(out, "images.jsonl")).readline())["tiles_total"] > 0


def test_empty_requested_split_is_a_warning(synthetic_stare_dir, tmp_path, capsys):
    """--allow_errors with every validation image rejected: exit 0, but say so now."""
    root = tmp_path / "stare"
    shutil.copytree(synthetic_stare_dir, root)
    (root / "stare-images" / "im0003.ppm.gz").write_bytes(b"not gzip")
    code = cli.main(["--stare_dir", str(root), "--output_dir", str(tmp_path / "out"),
                     "--valid_ids", "im0003", "--test_ids", "im0004", "--allow_errors", *RUN])
    out = capsys.readouterr().out
    assert code == 0
    assert "WARNING: split 'valid' was asked for but holds no tile" in out
    assert "im0003" in out and "split 'test'" not in out
    summary_config = PreprocessConfig(scale=1, tile_size=64, augmentations=(),
                                      split="train=0.5,valid=0.25,test=0.25")
    pairs, problems = datasets.discover_stare(str(synthetic_stare_dir))
    summary = pipeline.run_job(summary_config, pairs[:2], problems, str(tmp_path / "two"))
    # two images for three requested splits: one split gets none, and that is said
    assert len(summary.warnings) == 1 and "no image was assigned" in summary.warnings[0]

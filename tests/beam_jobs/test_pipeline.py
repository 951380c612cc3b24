"""End-to-end DirectRunner runs of the Beam job on synthetic STARE data with bad inputs.

Expected records are computed here independently (gunzip + cv2 decode, cv2 resizes,
numpy padding) and compared with what the shards hold.
"""
import dataclasses
import glob
import gzip
import json
import math
import shutil

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import datasets
from tiled_vessel_seg.beam_jobs import cli, pipeline
from tiled_vessel_seg.configs.schema import DISTORTION_CENTERS, PreprocessConfig, REFERENCE_AUGMENTATIONS
from tiled_vessel_seg.tfrecords import dataset_info as info_lib

SCALE, TILE = 2, 64
NUM_VARIANTS = 5 + 1 + 2 + 2 * len(DISTORTION_CENTERS)
FLAGS = ["--set", f"preprocess.scale={SCALE}", "--set", f"preprocess.tile_size={TILE}",
         "--augment", "reference", "--set", "preprocess.split=train=0.5,valid=0.25,test=0.25",
         "--set", "preprocess.seed=1", "--set", "preprocess.shards=2",
         "--set", "preprocess.whole_image=True", "--runner", "DirectRunner",
         "--direct_running_mode", "in_memory", "--direct_num_workers", "1"]
CONFIG = PreprocessConfig(scale=SCALE, tile_size=TILE, augmentations=REFERENCE_AUGMENTATIONS,
                          split="train=0.5,valid=0.25,test=0.25", seed=1, shards=2,
                          whole_image=True, image_encoding="png")  # lossless: tiles compare exactly
# file name -> the words its errors.jsonl reason must contain
BAD_INPUTS = {
    "im0005.ppm.gz": "gzip",
    "im0006.ppm.gz": "truncated",
    "im0007.png": "undecodable",
    "im0008.ah.ppm.gz": "size mismatch",
    "im0009.ppm.gz": "unpaired image",
    "im0324.ah.ppm.gz": "unpaired mask",
    "im0010.raw": "not an image",  # should have been an image (notes.txt is left out)
}


def _decode_ppm_gz(path):
    """Independent reader: gunzip + cv2 decode, RGB."""
    raw = gzip.decompress(open(path, "rb").read())
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


@pytest.fixture(scope="module")
def stare_with_bad_inputs(synthetic_stare_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("stare_bad")
    shutil.copytree(synthetic_stare_dir, root, dirs_exist_ok=True)
    images, labels = root / "stare-images", root / "labels-ah"
    good_image = (images / "im0001.ppm.gz").read_bytes()
    good_label = (labels / "im0001.ah.ppm.gz").read_bytes()
    raw = gzip.decompress(good_image)
    (images / "im0005.ppm.gz").write_bytes(good_image[: len(good_image) // 2])
    (images / "im0006.ppm.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    (images / "im0007.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (images / "im0008.ppm.gz").write_bytes(good_image)
    small = np.zeros((10, 12, 3), np.uint8)
    (labels / "im0008.ah.ppm.gz").write_bytes(gzip.compress(b"P6\n12 10\n255\n" + small.tobytes()))
    (images / "im0009.ppm.gz").write_bytes(good_image)
    (labels / "im0324.ah.ppm.gz").write_bytes(good_label)
    (images / "im0010.raw").write_text("not a photo")
    (images / "notes.txt").write_text("plainly not a photo: left out, not an error")
    for i in (5, 6, 7):
        (labels / f"im000{i}.ah.ppm.gz").write_bytes(good_label)
    return root


@pytest.fixture(scope="module")
def run_a(stare_with_bad_inputs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run_a"))
    pairs, problems = datasets.discover_stare(str(stare_with_bad_inputs))
    summary = pipeline.run_job(CONFIG, pairs, problems, out,
                               parameters={"stare_dir": str(stare_with_bad_inputs)})
    return out, summary


def _records(out):
    import tensorflow as tf
    from tiled_vessel_seg.tfrecords import schema
    info = info_lib.read_dataset_info(out)
    result = {}
    for split in info.splits:
        paths = info.shard_paths(out, split)
        data = tf.data.TFRecordDataset(paths, compression_type=info.tfrecord_compression)
        result[split] = [bytes(r.numpy()) for r in data]
    decoded = {s: [schema.decode_example_numpy(r) for r in rs] for s, rs in result.items()}
    return info, result, decoded


@pytest.fixture(scope="module")
def records_a(run_a):
    return _records(run_a[0])


def test_every_bad_input_is_one_dead_letter(run_a):
    out, summary = run_a
    lines = [json.loads(l) for l in open(f"{out}/errors.jsonl") if l.strip()]
    by_name = {e["path"].rsplit("/", 1)[-1]: e for e in lines}
    assert len(lines) == len(BAD_INPUTS) == len(by_name)
    for name, words in BAD_INPUTS.items():
        assert words in by_name[name]["reason"].lower(), by_name[name]
        assert by_name[name]["stage"] in ("discover", "read")
    assert summary.images_written == 4 and len(summary.errors) == len(BAD_INPUTS)


def test_split_by_image_and_counts(run_a, records_a):
    out, _ = run_a
    info, raw, decoded = records_a
    ids = {s: set(v.image_ids) for s, v in info.splits.items()}
    assert set().union(*ids.values()) == {"im0001", "im0002", "im0003", "im0004"}
    assert sum(len(v) for v in ids.values()) == 4  # disjoint
    assert {s: len(v) for s, v in ids.items()} == {"train": 2, "valid": 1, "test": 1}
    for split, recs in decoded.items():
        assert {m["image_id"] for _, _, m in recs} == ids[split]
        assert len(raw[split]) == info.splits[split].records
        assert len(info.splits[split].shards) == 2
        import tensorflow as tf  # each shard's own count, as the trainer checks it
        assert info.splits[split].shard_records == [
            sum(1 for _ in tf.data.TFRecordDataset(p, info.tfrecord_compression))
            for p in info.shard_paths(out, split)]
        augmented = [m for _, _, m in recs if m["augmentation"] != "none"]
        assert len(augmented) == info.splits[split].augmented_tiles
        if split != "train":
            assert not augmented
    assert info.errors == len(BAD_INPUTS)
    assert info.parameters.scale == SCALE and info.parameters.tile_size == TILE
    assert info.parameters.values["stare_dir"] and set(info.parameters.split_assignment) >= {
        i for s in info.splits.values() for i in s.image_ids}
    assert len(info.input_checksums) == 8
    assert open(f"{out}/statistics.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_tiles_equal_independent_enlargement_and_padding(synthetic_stare_dir, records_a):
    info, _, decoded = records_a
    dropped = 0
    for split, recs in decoded.items():
        for image_id in info.splits[split].image_ids:
            image = _decode_ppm_gz(synthetic_stare_dir / "stare-images" / f"{image_id}.ppm.gz")
            label = _decode_ppm_gz(synthetic_stare_dir / "labels-ah" / f"{image_id}.ah.ppm.gz")
            h, w = image.shape[0] * SCALE, image.shape[1] * SCALE
            big = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC)
            grey = np.where(cv2.cvtColor(label, cv2.COLOR_RGB2GRAY) > 127, 255, 0).astype(np.uint8)
            big_mask = cv2.resize(grey, (w, h), interpolation=cv2.INTER_LINEAR) > 127
            ph, pw = math.ceil(h / TILE) * TILE - h, math.ceil(w / TILE) * TILE - w
            padded = np.pad(big, ((0, ph), (0, pw), (0, 0)), mode="reflect")
            padded_mask = np.pad(big_mask, ((0, ph), (0, pw)))
            expected = {(y, x) for y in range(0, h, TILE) for x in range(0, w, TILE)
                        if padded_mask[y:y + TILE, x:x + TILE].any()}
            dropped += math.ceil(h / TILE) * math.ceil(w / TILE) - len(expected)
            plain = {(m["tile_y"], m["tile_x"]): (img, msk) for img, msk, m in recs
                     if m["image_id"] == image_id and m["augmentation"] == "none"}
            assert set(plain) == expected | {(-1, -1)}
            for (y, x), (img, msk) in plain.items():
                if y < 0:
                    assert img.shape == (TILE, TILE, 3)
                    continue
                assert np.array_equal(img, padded[y:y + TILE, x:x + TILE])
                assert np.array_equal(msk[..., 0] > 0, padded_mask[y:y + TILE, x:x + TILE])
            augmented = [m for _, _, m in recs
                         if m["image_id"] == image_id and m["augmentation"] != "none"]
            assert len(augmented) == (NUM_VARIANTS * len(plain) if split == "train" else 0)
    assert info.dropped_empty == dropped


def test_record_metadata_and_masks(records_a):
    _, _, decoded = records_a
    for recs in decoded.values():
        for img, msk, m in recs:
            assert img.dtype == np.uint8 and img.shape == (TILE, TILE, 3)
            assert msk.shape == (TILE, TILE, 1) and set(np.unique(msk)) <= {0, 255}
            assert m["scale"] == SCALE and m["height"] == m["width"] == TILE
            assert m["vessel_fraction"] == pytest.approx(np.count_nonzero(msk) / TILE ** 2)
            assert m["source_path"].endswith(f"{m['image_id']}.ppm.gz")
    train_names = {m["augmentation"] for _, _, m in decoded["train"]}
    assert len(train_names) == NUM_VARIANTS + 1 and "barrel_0.5_0.5" in train_names


@pytest.fixture(scope="module")
def cli_run(stare_with_bad_inputs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run_cli"))
    config = tmp_path_factory.mktemp("config") / "png.config"
    config.write_text('[preprocess]\nimage_encoding = "png"\n')
    code = cli.main(["--stare_dir", str(stare_with_bad_inputs), "--output_dir", out,
                     "--config", str(config), *FLAGS])
    return out, code


def test_cli_run_is_deterministic_and_exits_1_on_rejected_inputs(cli_run, records_a):
    out, code = cli_run
    assert code == 1
    _, raw_b, _ = _records(out)
    _, raw_a, _ = records_a
    assert {s: sorted(r) for s, r in raw_a.items()} == {s: sorted(r) for s, r in raw_b.items()}


def test_cli_refuses_existing_dataset_then_overwrites(cli_run, stare_with_bad_inputs, capsys):
    out, _ = cli_run
    args = ["--stare_dir", str(stare_with_bad_inputs), "--output_dir", out]
    assert cli.main(args + FLAGS) == 2
    assert "--overwrite" in capsys.readouterr().err
    flags = list(FLAGS)
    flags[flags.index("preprocess.whole_image=True")] = "preprocess.whole_image=False"
    flags[flags.index("reference")] = "none"
    code = cli.main(args + flags + ["--overwrite", "--allow_errors", "--set", "preprocess.shards=1",
                                    "--set", "preprocess.image_encoding=raw",
                                    "--set", "preprocess.mask_encoding=png"])
    assert code == 0
    info = info_lib.read_dataset_info(out)
    assert (info.record_format.encoding.image, info.record_format.encoding.mask) == ("raw", "png")
    _, _, decoded = _records(out)
    assert {m["image/encoding"] for recs in decoded.values() for _, _, m in recs} == {"raw"}
    assert all(s.augmented_tiles == 0 and len(s.shards) == 1 for s in info.splits.values())
    assert glob.glob(f"{out}/train/*.tfrecord*") == [f"{out}/train/train-00000-of-00001.tfrecord"]  # uncompressed by default


def test_cli_missing_input_dir_is_one_line_error(tmp_path, capsys):
    code = cli.main(["--stare_dir", str(tmp_path / "absent"), "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_empty_input_dir_writes_dead_letters(tmp_path, capsys):
    (tmp_path / "stare" / "stare-images").mkdir(parents=True)
    (tmp_path / "stare" / "labels-ah").mkdir()
    out = tmp_path / "o"
    code = cli.main(["--stare_dir", str(tmp_path / "stare"), "--output_dir", str(out)])
    assert code == 1 and "no image/mask pairs" in capsys.readouterr().err
    lines = [json.loads(l) for l in open(out / "errors.jsonl")]
    assert {l["reason"] for l in lines} == {"empty image folder: no files",
                                           "empty mask folder: no files"}


def test_cli_rejects_bad_flags(tmp_path, capsys):
    code = cli.main(["--stare_dir", str(tmp_path), "--output_dir", "o", "--augment", "twirl"])
    assert code == 2 and "unknown augmentation" in capsys.readouterr().err
    code = cli.main(["--stare_dir", str(tmp_path), "--output_dir", "o",
                     "--set", "preprocess.tile_stride=999"])
    assert code == 2 and "tile_stride" in capsys.readouterr().err
    code = cli.main(["--stare_dir", str(tmp_path), "--output_dir", "o",
                     "--set", "preprocess.jpeg_quality=0"])
    assert code == 2 and "jpeg_quality" in capsys.readouterr().err


def test_image_failing_late_leaves_no_record_in_any_shard(synthetic_stare_dir, tmp_path,
                                                          monkeypatch):
    """An image whose processing fails after its tiles are cut (here: the whole-image
    sample, its last step) is one dead letter and has no record in any shard."""
    from tiled_vessel_seg.beam_jobs import tiling
    root = tmp_path / "stare"
    shutil.copytree(synthetic_stare_dir, root)
    image = _decode_ppm_gz(root / "stare-images" / "im0001.ppm.gz")[:120, :150]
    label = _decode_ppm_gz(root / "labels-ah" / "im0001.ah.ppm.gz")[:120, :150]
    for path, array in ((root / "stare-images" / "im0009.ppm.gz", image),
                        (root / "labels-ah" / "im0009.ah.ppm.gz", label)):
        path.write_bytes(gzip.compress(b"P6\n150 120\n255\n" + np.ascontiguousarray(array).tobytes()))
    real_sample = tiling.whole_image_sample

    def failing_for_im0009(big_image, big_mask, size):
        if big_image.shape[:2] == (120 * SCALE, 150 * SCALE):
            raise MemoryError("simulated failure after the tiles were cut")
        return real_sample(big_image, big_mask, size)
    monkeypatch.setattr(tiling, "whole_image_sample", failing_for_im0009)
    config = dataclasses.replace(CONFIG, augmentations=("hflip",), split="train=1.0")
    out = str(tmp_path / "out")
    pairs, problems = datasets.discover_stare(str(root))
    summary = pipeline.run_job(config, pairs, problems, out)
    assert [e["image_id"] for e in summary.errors] == ["im0009"]
    assert summary.errors[0]["stage"] == "process" and "simulated" in summary.errors[0]["reason"]
    info, raw, decoded = _records(out)
    ids = {m["image_id"] for recs in decoded.values() for _, _, m in recs}
    assert ids == {"im0001", "im0002", "im0003", "im0004"}
    assert info.splits["train"].image_ids == sorted(ids)
    assert sum(len(r) for r in raw.values()) == sum(s.records for s in info.splits.values())


def test_shards_0_writes_where_records_are_made(synthetic_stare_dir, tmp_path):
    """shards = 0: one file per writing bundle, no shuffle before the write; every record
    is still listed and read back, the same records as with a fixed shard count."""
    pairs, problems = datasets.discover_stare(str(synthetic_stare_dir))
    config = dataclasses.replace(CONFIG, augmentations=("hflip",), whole_image=False)
    records = {}
    for shards in (0, 3):
        out = str(tmp_path / f"shards{shards}")
        pipeline.run_job(dataclasses.replace(config, shards=shards), pairs, problems, out)
        info, raw, _ = _records(out)
        assert all(len(s.shards) >= 1 for s in info.splits.values())
        assert sum(len(r) for r in raw.values()) == sum(s.records for s in info.splits.values())
        records[shards] = {s: sorted(r) for s, r in raw.items()}
    assert records[0] == records[3]
    with pytest.raises(ValueError, match="shards must be >= 0"):
        dataclasses.replace(config, shards=-1)


def test_two_worker_processes_write_the_same_records(synthetic_stare_dir, tmp_path):
    """The fan-out across real worker processes (tasks pickled between them) gives the
    records of the in-memory run."""
    from apache_beam.options.pipeline_options import PipelineOptions
    pairs, problems = datasets.discover_stare(str(synthetic_stare_dir))
    config = dataclasses.replace(CONFIG, augmentations=("hflip", "elastic"), shards=0)
    records = {}
    for mode, workers in (("in_memory", 1), ("multi_processing", 2)):
        out = str(tmp_path / mode)
        pipeline.run_job(config, pairs, problems, out, PipelineOptions([
            f"--direct_running_mode={mode}", f"--direct_num_workers={workers}",
            "--default_sdk_harness_log_level=WARNING"]))
        _, raw, _ = _records(out)
        records[mode] = {s: sorted(r) for s, r in raw.items()}
    assert records["in_memory"] == records["multi_processing"]
    assert sum(len(r) for r in records["in_memory"].values()) > 0

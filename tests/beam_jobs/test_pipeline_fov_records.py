"""FOV planes in the records: written by the Beam job, read by the reader, trained on.

One in-memory DirectRunner run on the synthetic STARE images (scale 2, 64 px tiles):
im0001 (train) and im0002 (valid) get FOV *files* equal to their vessel labels, so in
every record of theirs - cut, padded, flipped, elastically warped, letterboxed - the FOV
plane must equal the mask plane exactly (one geometry for both, never a different
field). im0003 (train) and im0004 (test) have no FOV file: their FOV is computed from
the photograph, and the base tiles are checked against an independent cut of it
(cv2 bilinear enlargement of 0/255 thresholded at 127, zero padding), the flips and
rotations against numpy's. im0005 has a FOV file of the wrong size: one dead letter.
"""
import dataclasses
import gzip
import json
import shutil

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tiled_vessel_seg import fov as fov_lib  # noqa: E402
from tiled_vessel_seg import datasets  # noqa: E402
from tiled_vessel_seg.beam_jobs import pipeline  # noqa: E402
from tiled_vessel_seg.configs import load_config  # noqa: E402
from tiled_vessel_seg.configs.schema import PreprocessConfig  # noqa: E402
from tiled_vessel_seg.tfrecords import dataset_info as info_lib  # noqa: E402
from tiled_vessel_seg.tfrecords import reader, robust_augment, schema  # noqa: E402
from tiled_vessel_seg.trainer import train as train_lib  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import write_fake_dataset  # noqa: E402

SCALE, TILE = 2, 64
CONFIG = PreprocessConfig(
    scale=SCALE, tile_size=TILE, augmentations=("hflip", "rot90", "elastic", "barrel"),
    distortion_centers=((0.5, 0.5),), valid_ids=("im0002",), test_ids=("im0004",), seed=3,
    shards=1, whole_image=True, image_encoding="png", fov_masks=True)


def _read_ppm_gz(path):
    raw = gzip.decompress(open(path, "rb").read())
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


@pytest.fixture(scope="module")
def fov_run(synthetic_stare_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("stare_fov")
    shutil.copytree(synthetic_stare_dir, root, dirs_exist_ok=True)
    shutil.copy(root / "stare-images" / "im0001.ppm.gz", root / "stare-images" / "im0005.ppm.gz")
    shutil.copy(root / "labels-ah" / "im0001.ah.ppm.gz", root / "labels-ah" / "im0005.ah.ppm.gz")
    fov_dir = root / "fov"
    fov_dir.mkdir()
    for i in (1, 2):
        label = _read_ppm_gz(root / "labels-ah" / f"im000{i}.ah.ppm.gz")
        cv2.imwrite(str(fov_dir / f"im000{i}_fov.png"), label[..., 0])
    cv2.imwrite(str(fov_dir / "im0005_fov.png"), np.full((10, 12), 255, np.uint8))
    pairs, problems = datasets.discover_stare(str(root))
    files = {f"im000{i}": str(fov_dir / f"im000{i}_fov.png") for i in (1, 2, 5)}
    pairs = [dataclasses.replace(p, fov_path=files.get(p.image_id)) for p in pairs]
    out = str(tmp_path_factory.mktemp("fov_records"))
    summary = pipeline.run_job(CONFIG, pairs, problems, out)
    info = info_lib.read_dataset_info(out)
    records = {}
    for split in info.splits:
        data = tf.data.TFRecordDataset(info.shard_paths(out, split))
        records[split] = [schema.decode_example_numpy(bytes(r.numpy()), with_fov=True)
                          for r in data]
    return root, out, summary, info, records


def _all(records):
    return [r for recs in records.values() for r in recs]


def test_dataset_info_and_summary_say_fov(fov_run):
    _, out, summary, info, _ = fov_run
    assert info.has_fov and info.record_format.has_fov
    assert json.load(open(f"{out}/dataset_info.json"))["has_fov"] is True
    stats = {s["image_id"]: s for s in map(json.loads, open(f"{out}/images.jsonl"))}
    assert {i: s["fov_source"] for i, s in stats.items()} == {
        "im0001": "file", "im0002": "file", "im0003": "computed", "im0004": "computed"}
    assert summary.fov_files == 2 and "2 image(s) from FOV files, 2 computed" in \
        pipeline.format_summary(summary)
    assert any(p.endswith("im0001_fov.png") for p in info.input_checksums)
    [error] = summary.errors
    assert error["path"].endswith("im0005_fov.png") and "size mismatch" in error["reason"]


def test_fov_moves_exactly_like_the_mask_in_every_record(fov_run):
    records = [r for r in _all(fov_run[4]) if r[2]["image_id"] in ("im0001", "im0002")]
    kinds = {m["augmentation"].split("_")[0] for _, _, m in records}
    assert kinds == {"none", "hflip", "rot90", "elastic", "barrel"}
    assert any(m["tile_y"] == schema.WHOLE_IMAGE_ORIGIN for _, _, m in records)
    for image, planes, meta in records:
        assert planes.shape == (TILE, TILE, 2)
        np.testing.assert_array_equal(planes[..., 1], planes[..., 0], err_msg=str(meta))


def test_computed_fov_is_the_photo_fov_cut_at_the_tile(fov_run):
    root, _, _, _, records = fov_run
    expected_cut = {}
    for image_id in ("im0003", "im0004"):
        photo = _read_ppm_gz(root / "stare-images" / f"{image_id}.ppm.gz")
        fov = fov_lib.fov_mask(photo).astype(np.uint8) * 255
        h, w = fov.shape
        big = (cv2.resize(fov, (w * SCALE, h * SCALE), interpolation=cv2.INTER_LINEAR) > 127)
        padded = np.zeros((h * SCALE + TILE, w * SCALE + TILE), np.uint8)
        padded[:h * SCALE, :w * SCALE] = big
        expected_cut[image_id] = padded
    checked = {"none": 0, "hflip": 0, "rot90": 0}
    for _, planes, meta in _all(records):
        if meta["image_id"] not in expected_cut or meta["tile_y"] < 0:
            continue
        y, x = meta["tile_y"], meta["tile_x"]
        tile = expected_cut[meta["image_id"]][y:y + TILE, x:x + TILE] * 255
        moved = {"none": tile, "hflip": tile[:, ::-1], "rot90": np.rot90(tile)}
        if meta["augmentation"] in moved:
            np.testing.assert_array_equal(planes[..., 1], moved[meta["augmentation"]],
                                          err_msg=str(meta))
            checked[meta["augmentation"]] += 1
    assert min(checked.values()) > 0, checked
    fovs = np.stack([p[..., 1] for _, p, m in _all(records) if m["image_id"] == "im0003"])
    assert 0 < fovs.mean() < 255  # tiles both inside and outside the disc


def test_reader_yields_the_fov_plane_and_reads_as_before_without(fov_run):
    _, out, _, info, records = fov_run
    [(_, masks)] = reader.make_dataset(out, reader.InputConfig("test", 64, with_fov=True))
    expected = np.stack([p for _, p, _ in records["test"]]) / 255.0
    np.testing.assert_array_equal(masks.numpy(), expected)
    [(_, plain)] = reader.make_dataset(out, reader.InputConfig("test", 64))
    np.testing.assert_array_equal(plain.numpy(), expected[..., :1])


def test_online_augmentation_moves_the_fov_with_the_mask(fov_run):
    # valid = im0002, whose FOV equals its mask: any geometric slip would show.
    out = fov_run[1]
    robust = robust_augment.RobustAugmentation(zoom_range=(0.6, 1.6), blur_sigma=1.0)
    data = reader.make_dataset(out, reader.InputConfig(
        "valid", 4, training=True, augment=True, robust=robust, seed=7,
        tile_shape=(TILE, TILE), with_fov=True))
    for image, masks in data.take(4):
        assert masks.shape == (4, TILE, TILE, 2)
        np.testing.assert_array_equal(masks[..., 1].numpy(), masks[..., 0].numpy())


def test_datasets_without_fov_refuse_with_fov(tmp_path):
    write_fake_dataset(str(tmp_path), tile_size=16, tiles={"train": 4, "valid": 2}, shards=1)
    assert not info_lib.read_dataset_info(str(tmp_path)).record_format.has_fov
    with pytest.raises(info_lib.DatasetError, match=rf"{tmp_path}.*no FOV masks"):
        reader.make_dataset(str(tmp_path),
                            reader.InputConfig("train", 2, training=True, with_fov=True))
    config = load_config(None, ["preprocess.tile_size=16", "tiledinfer.overlap=4",
                                "model.base_kernels=(3,3)", "model.dilation=(1,1)",
                                "train.loss_mask=fov"])
    with pytest.raises(info_lib.DatasetError,
                       match=rf"{tmp_path}/dataset_info.json: .*no FOV masks.*loss_mask"):
        train_lib.train(config, str(tmp_path), str(tmp_path / "model"), verbose=0)
    assert not (tmp_path / "model").exists()


def test_loss_mask_key_is_checked_and_turns_fov_masks_on():
    assert load_config(None, ["train.loss_mask=fov"]).preprocess.fov_masks is True
    assert load_config(None, []).preprocess.fov_masks is False
    with pytest.raises(ValueError, match=r"\[train\] loss_mask must be none or fov"):
        load_config(None, ["train.loss_mask=outside"])


def test_wnet_trains_with_the_fov_loss_mask(fov_run, tmp_path):
    out = fov_run[1]
    config = load_config(None, [
        f"preprocess.tile_size={TILE}", "model.architecture=wnet", "model.base_filters=2",
        "model.num_layers=2", "model.base_kernels=(3,3)", "model.dilation=(1,1)",
        "model.dropout_rate=0.0", "train.batch_size=2", "train.steps_per_epoch=2",
        "train.epochs=1", "train.loss_mask=fov",
        "train.select_threshold=True", "tiledinfer.overlap=8",
        # a low threshold marks most pixels: background outside the FOV then counts as
        # false positives unless the metrics leave it out, as they must
        "tiledinfer.threshold=0.05"])
    model_dir = str(tmp_path / "model")
    history = train_lib.train(config, out, model_dir, precision="float32", verbose=0)
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["val_loss"][0])
    # The logged validation Dice and the stored threshold, recomputed in numpy from the
    # saved (served) model over every validation pixel inside the FOV.
    from tiled_vessel_seg import model_loading
    served, info = model_loading.load_model(model_dir)
    batches = list(reader.make_dataset(out, reader.InputConfig("valid", 4, with_fov=True)))
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    vessels, inside = labels[..., 0] >= 0.5, labels[..., 1] >= 0.5
    assert 0 < inside.mean() < 1  # the FOV leaves pixels out
    p = served.predict(images, verbose=0)[..., 0].astype(np.float32)

    def f1(predicted, counted):
        tp = np.sum(predicted & vessels & counted)
        fp = np.sum(predicted & ~vessels & counted)
        fn = np.sum(~predicted & vessels & counted)
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    everywhere = np.ones_like(inside)
    assert abs(f1(p > 0.05, inside) - f1(p > 0.05, everywhere)) > 0.05  # the FOV matters
    assert history["val_dice"][0] == pytest.approx(f1(p > 0.05, inside), abs=1e-5)
    bins = np.clip((p * np.float32(100)).astype(np.int32), 0, 99)  # t_k = k / 100
    scores = [f1(bins >= k, inside) for k in range(1, 100)]
    assert info.threshold == pytest.approx((int(np.argmax(scores)) + 1) / 100)

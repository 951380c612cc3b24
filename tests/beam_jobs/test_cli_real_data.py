"""vessel-preprocess on real STARE images (skipped when ../shared/data/stare is absent)."""
import gzip
import math
import os

import cv2
import numpy as np
import pytest

from tiled_vessel_seg.beam_jobs import cli
from tiled_vessel_seg.tfrecords import dataset_info as info_lib

# The Beam job on real photographs at full size (x5 enlargement, 512 px tiles).
pytestmark = [pytest.mark.real_data, pytest.mark.slow]
IDS = ("im0001", "im0044")


def _read_ppm_gz(path):
    raw = gzip.decompress(open(path, "rb").read())
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


def _read_records(out):
    import tensorflow as tf
    from tiled_vessel_seg.tfrecords import schema
    info = info_lib.read_dataset_info(out)
    records = []
    for split in info.splits:
        data = tf.data.TFRecordDataset(info.shard_paths(out, split),
                                       compression_type=info.tfrecord_compression)
        records += [schema.decode_example_numpy(bytes(r.numpy())) for r in data]
    return info, records


def _linked_layout(tmp_path, pairs):
    """Symlinks of the read-only real files into a fresh layout (nothing is copied)."""
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, dst)


def test_two_real_images_scale5_tile512(real_stare_dir, tmp_path):
    stare = tmp_path / "stare"
    _linked_layout(tmp_path, [(real_stare_dir / sub / f"{i}{ext}", stare / sub / f"{i}{ext}")
                              for i in IDS for sub, ext in (("stare-images", ".ppm.gz"),
                                                            ("labels-ah", ".ah.ppm.gz"))])
    out = str(tmp_path / "out")
    code = cli.main(["--stare_dir", str(stare), "--output_dir", out,
                     "--set", "preprocess.scale=5", "--set", "preprocess.tile_size=512",
                     "--augment", "none", "--set", "preprocess.split=train=0.5,test=0.5",
                     "--set", "preprocess.shards=1", "--set", "preprocess.whole_image=False",
                     "--direct_running_mode", "in_memory", "--direct_num_workers", "1"])
    assert code == 0
    info, records = _read_records(out)
    assert {s: v.image_ids for s, v in info.splits.items()} in (
        {"train": ["im0001"], "test": ["im0044"]}, {"train": ["im0044"], "test": ["im0001"]})
    for image_id in IDS:
        image = _read_ppm_gz(real_stare_dir / "stare-images" / f"{image_id}.ppm.gz")
        label = _read_ppm_gz(real_stare_dir / "labels-ah" / f"{image_id}.ah.ppm.gz")
        assert image.shape == (605, 700, 3)
        big = cv2.resize(image, (3500, 3025), interpolation=cv2.INTER_CUBIC)
        grey = np.where(label.max(axis=2) > 127, 255, 0).astype(np.uint8)
        big_mask = cv2.resize(grey, (3500, 3025), interpolation=cv2.INTER_LINEAR) > 127
        grid = [(y, x) for y in range(0, 3025, 512) for x in range(0, 3500, 512)]
        assert len(grid) == 42
        expected = {(y, x) for y, x in grid if big_mask[y:y + 512, x:x + 512].any()}
        mine = [(img, msk, m) for img, msk, m in records if m["image_id"] == image_id]
        assert {(m["tile_y"], m["tile_x"]) for _, _, m in mine} == expected
        assert len(mine) == len(expected)
        assert info.record_format.encoding.image == "jpeg"  # the default
        for img, msk, m in mine:
            y, x = m["tile_y"], m["tile_x"]
            crop = big[y:y + 512, x:x + 512]
            inside = img[:crop.shape[0], :crop.shape[1]]
            assert img.shape == (512, 512, 3)
            diff = inside.astype(np.float64) - crop
            assert 10 * np.log10(255.0 ** 2 / np.mean(diff ** 2)) >= 45.0  # JPEG 95 PSNR, dB
            np.testing.assert_array_equal(msk[:crop.shape[0], :crop.shape[1], 0] > 0,
                                          big_mask[y:y + 512, x:x + 512])


def test_enlarged_jpeg_folders_at_scale1(real_stare_dir, tmp_path):
    enlarged = real_stare_dir / "enlarged"
    if not (enlarged / "images" / "im0001.jpg").exists():
        pytest.skip(f"{enlarged} has no images/im0001.jpg")
    _linked_layout(tmp_path, [(enlarged / sub / "im0001.jpg", tmp_path / sub / "im0001.jpg")
                              for sub in ("images", "masks")])
    out = str(tmp_path / "out")
    code = cli.main(["--images_dir", str(tmp_path / "images"), "--masks_dir",
                     str(tmp_path / "masks"), "--output_dir", out,
                     "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=512",
                     "--augment", "none", "--set", "preprocess.split=train=1.0",
                     "--set", "preprocess.shards=1", "--set", "preprocess.whole_image=False",
                     "--set", "preprocess.compression=none",
                     "--direct_running_mode", "in_memory", "--direct_num_workers", "1"])
    assert code == 0
    info, records = _read_records(out)
    photo = cv2.imread(str(enlarged / "images" / "im0001.jpg"))[..., ::-1]
    mask = cv2.imread(str(enlarged / "masks" / "im0001.jpg"), cv2.IMREAD_GRAYSCALE) > 127
    assert photo.shape[:2] == (3025, 3500)
    expected = {(y, x) for y in range(0, 3025, 512) for x in range(0, 3500, 512)
                if mask[y:y + 512, x:x + 512].any()}
    assert {(m["tile_y"], m["tile_x"]) for _, _, m in records} == expected
    assert info.splits["train"].tiles == len(expected) == len(records)
    assert info.dropped_empty == 42 - len(expected)
    for img, msk, m in records:
        crop = photo[m["tile_y"]:m["tile_y"] + 512, m["tile_x"]:m["tile_x"] + 512]
        diff = img[:crop.shape[0], :crop.shape[1]].astype(np.float64) - crop
        assert 10 * np.log10(255.0 ** 2 / np.mean(diff ** 2)) >= 45.0  # JPEG 95, dB
        np.testing.assert_array_equal(msk[:crop.shape[0], :crop.shape[1], 0] > 0,
                                      mask[m["tile_y"]:m["tile_y"] + 512, m["tile_x"]:m["tile_x"] + 512])

"""Augmented records in the shards are aligned with their masks, end to end.

The photos are built so that the label is a known function of the photo (vessel where
the red channel is 255). A Beam run with every reference augmentation writes the shards;
the training reader streams them back, and in every record, augmented or not, the mask
must still be that function of the image. Drawing different random fields for an image
and its mask, or warping one of them twice, breaks it.
"""
import dataclasses

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import datasets
from tiled_vessel_seg.beam_jobs import pipeline
from tiled_vessel_seg.configs.schema import (DISTORTION_CENTERS, PreprocessConfig,
                                             REFERENCE_AUGMENTATIONS)

TILE = 64
NUM_VARIANTS = 5 + 1 + 2 + 2 * len(DISTORTION_CENTERS)


def _photo_and_label(h, w, seed):
    """RGB uint8 photo whose red channel is 0/255 blobs, and the label: red == 255."""
    rng = np.random.default_rng(seed)
    blobs = cv2.GaussianBlur(rng.normal(size=(h, w)).astype(np.float32), (0, 0), 4)
    red = np.where(blobs > 0.02, 255, 0).astype(np.uint8)
    photo = np.stack([red, rng.integers(0, 256, (h, w), dtype=np.uint8),
                      np.full((h, w), 90, np.uint8)], axis=-1)
    return photo, red


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligned")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for stem, seed in (("a", 1), ("b", 2)):
        photo, label = _photo_and_label(128, 192, seed)
        cv2.imwrite(str(root / "images" / f"{stem}.png"), photo[..., ::-1])
        cv2.imwrite(str(root / "masks" / f"{stem}.png"), label)
    settings = dict(scale=1, tile_size=TILE, augmentations=REFERENCE_AUGMENTATIONS,
                    valid_ids=("b",), seed=3, shards=2)
    if "image_encoding" in {f.name for f in dataclasses.fields(PreprocessConfig)}:
        settings["image_encoding"] = "png"  # lossless, so red == 255 survives exactly
    pairs, problems = datasets.pair_folders(str(root / "images"), str(root / "masks"))
    assert len(pairs) == 2 and not problems
    out = str(root / "tiles")
    pipeline.run_job(PreprocessConfig(**settings), pairs, problems, out)
    return out


def _raw_records(data_dir, split):
    import tensorflow as tf
    from tiled_vessel_seg.tfrecords import dataset_info, schema
    info = dataset_info.read_dataset_info(data_dir)
    data = tf.data.TFRecordDataset(info.shard_paths(data_dir, split),
                                   compression_type=info.tfrecord_compression)
    return [schema.decode_example_numpy(bytes(r.numpy())) for r in data]


def test_every_augmented_record_keeps_its_mask_aligned(dataset):
    records = _raw_records(dataset, "train")
    plain = {(m["tile_y"], m["tile_x"]): (img, msk) for img, msk, m in records
             if m["augmentation"] == "none"}
    augmented = [(img, msk, m) for img, msk, m in records if m["augmentation"] != "none"]
    assert plain and len(augmented) == NUM_VARIANTS * len(plain)
    assert {m["augmentation"] for _, _, m in augmented} >= {
        "elastic", "grid_distortion_1", "grid_distortion_2", "rot90", "barrel_0.5_0.5"}
    for img, msk, m in augmented:
        name = m["augmentation"]
        assert np.array_equal(msk[..., 0] > 0, img[..., 0] > 127), (name, m["tile_y"], m["tile_x"])
        source_image, source_mask = plain[(m["tile_y"], m["tile_x"])]
        assert not np.array_equal(img, source_image), name  # it was transformed
        if name.startswith(("elastic", "grid", "barrel", "pincushion")):
            # a warp moves the vessels: the copy's mask is not its source tile's mask
            assert not np.array_equal(msk, source_mask), name
    for img, msk in plain.values():
        assert np.array_equal(msk[..., 0] > 0, img[..., 0] > 127)


def test_training_reader_streams_aligned_pairs(dataset):
    from tiled_vessel_seg.tfrecords import reader
    count = 0
    for images, masks in reader.make_dataset(dataset, reader.InputConfig("train", 16)):
        images, masks = images.numpy(), masks.numpy()
        np.testing.assert_array_equal(masks[..., 0] > 0.5, images[..., 0] > 0.5)
        count += len(images)
    assert count == len(_raw_records(dataset, "train"))

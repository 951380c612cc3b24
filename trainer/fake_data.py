"""Tiny synthetic TFRecord datasets in the real layout, for tests and benchmarks.

Each tile is a smooth reddish background with a few dark lines ("vessels") drawn with OpenCV;
the mask is exactly the lines, so a small U-Net can learn it in a few steps.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tiled_vessel_seg import storage
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
from tiled_vessel_seg.tfrecords import schema
from tiled_vessel_seg.tfrecords.encoding import TileEncoding


def fake_tile(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [size, size, 3], mask uint8 {0, 255} [size, size])."""
    import cv2
    mask = np.zeros((size, size), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        p0, p1 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(mask, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), 255,
                 int(rng.integers(1, max(2, size // 16))))
    # Smooth texture, like a photo enlarged 5x bicubic (as the Beam job makes tiles).
    coarse = rng.normal(0, 8, (max(1, size // 5), max(1, size // 5), 3)).astype(np.float32)
    texture = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    background = np.array([170, 80, 40], np.float32) + texture
    image = np.where(mask[..., None] > 0, background * 0.45, background)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_fake_dataset(out_dir: str, tile_size: int = 32,
                       tiles: dict[str, int] | None = None, shards: int = 2,
                       compression: str = "gzip", scale: int = 1, seed: int = 0,
                       encoding: TileEncoding = TileEncoding()
                       ) -> dataset_info_lib.DatasetInfo:
    """Writes `tiles[split]` tiles per split into `shards` shards each, plus dataset_info.json.

    Returns the DatasetInfo written. Image ids are "{split}{k}" (two tiles per id).
    """
    import tensorflow as tf
    tiles = tiles or {"train": 16, "valid": 4, "test": 4}
    rng = np.random.default_rng(seed)
    splits = {}
    options = tf.io.TFRecordOptions(compression_type="GZIP" if compression == "gzip" else "")
    for split, count in tiles.items():
        storage.makedirs(storage.join(out_dir, split))
        names = [dataset_info_lib.shard_name(split, i, shards, compression) for i in range(shards)]
        writers = [tf.io.TFRecordWriter(storage.join(out_dir, n), options) for n in names]
        ids = set()
        for k in range(count):
            image, mask = fake_tile(rng, tile_size)
            image_id = f"{split}{k // 2}"
            ids.add(image_id)
            record = schema.TileRecord(image=image, mask=mask, image_id=image_id,
                                       tile_y=0, tile_x=k * tile_size, scale=scale,
                                       augmentation=schema.NO_AUGMENTATION,
                                       source_path=f"fake/{image_id}.ppm")
            writers[k % shards].write(schema.encode_example(record, encoding))
        for writer in writers:
            writer.close()
        splits[split] = dataset_info_lib.SplitInfo(
            image_ids=sorted(ids), tiles=count, augmented_tiles=0, records=count, shards=names,
            shard_records=[len(range(i, count, shards)) for i in range(shards)])
    info = dataset_info_lib.DatasetInfo(
        schema_version=schema.SCHEMA_VERSION, compression=compression,
        encoding=dataclasses.asdict(encoding),
        parameters={"scale": scale, "tile_size": tile_size}, splits=splits)
    dataset_info_lib.write_dataset_info(out_dir, info)
    return info

"""The one definition of a tile record: writer (Beam, numpy) and reader (tf.data) both use it.

One `tf.train.Example` per tile:

| feature            | type   | meaning                                               |
|--------------------|--------|-------------------------------------------------------|
| image/png          | bytes  | RGB tile, uint8 [H, W, 3], PNG                        |
| mask/png           | bytes  | vessel mask, uint8 [H, W, 1], values 0/255, PNG       |
| image_id           | bytes  | source image id, e.g. b"im0001"                       |
| tile_y, tile_x     | int64  | tile origin in the enlarged image; -1 for whole image |
| height, width      | int64  | tile height and width in px                           |
| scale              | int64  | enlargement factor applied to the source              |
| augmentation       | bytes  | b"none" or the augmentation's name                    |
| vessel_fraction    | float  | fraction of mask pixels that are vessel               |
| source_path        | bytes  | the photograph the tile was cut from                  |
| schema_version     | int64  | SCHEMA_VERSION at writing time                        |

`encode_example` takes numpy arrays and needs no TensorFlow graph (PNG by cv2), so a
Beam worker can use it; `parse_example` is a pure TF function for `Dataset.map`.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
WHOLE_IMAGE_ORIGIN = -1
NO_AUGMENTATION = "none"

IMAGE_KEY = "image/png"
MASK_KEY = "mask/png"
_INT_KEYS = ("tile_y", "tile_x", "height", "width", "scale", "schema_version")
_BYTES_KEYS = ("image_id", "augmentation", "source_path")
_FLOAT_KEYS = ("vessel_fraction",)


@dataclasses.dataclass(frozen=True)
class TileRecord:
    """One tile as the Beam job produces it (numpy, no TF).

    image: uint8 [H, W, 3] RGB. mask: uint8 [H, W] or [H, W, 1], values {0, 1} or {0, 255}.
    """
    image: np.ndarray
    mask: np.ndarray
    image_id: str
    tile_y: int
    tile_x: int
    scale: int
    augmentation: str
    source_path: str

    @property
    def vessel_fraction(self) -> float:
        return float(np.count_nonzero(self.mask)) / float(self.mask.shape[0] * self.mask.shape[1])


def _png(array: np.ndarray) -> bytes:
    import cv2  # Imported here so the reader side never needs OpenCV.
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)  # cv2 writes BGR; faster than [..., ::-1]
    # OpenCV's default PNG settings are its fastest here (explicit levels are slower).
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"PNG encoding failed for array of shape {array.shape}")
    return buf.tobytes()


def encode_example(record: TileRecord) -> bytes:
    """Serialises `record` to a tf.train.Example (bytes) of this schema."""
    from tensorflow.core.example import example_pb2, feature_pb2  # protobuf only, no TF runtime

    image = np.asarray(record.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    mask = np.asarray(record.mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    mask255 = np.where(mask > 0, 255, 0).astype(np.uint8)

    def b(v: bytes) -> Any:
        return feature_pb2.Feature(bytes_list=feature_pb2.BytesList(value=[v]))

    def i(v: int) -> Any:
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(v)]))

    def f(v: float) -> Any:
        return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(v)]))

    features = {
        IMAGE_KEY: b(_png(image)),
        MASK_KEY: b(_png(mask255)),
        "image_id": b(record.image_id.encode()),
        "tile_y": i(record.tile_y),
        "tile_x": i(record.tile_x),
        "height": i(image.shape[0]),
        "width": i(image.shape[1]),
        "scale": i(record.scale),
        "augmentation": b(record.augmentation.encode()),
        "vessel_fraction": f(record.vessel_fraction),
        "source_path": b(record.source_path.encode()),
        "schema_version": i(SCHEMA_VERSION),
    }
    example = example_pb2.Example(features=feature_pb2.Features(feature=features))
    return example.SerializeToString()


def feature_spec() -> dict:
    """The `tf.io.parse_single_example` spec of this schema."""
    import tensorflow as tf
    spec = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            MASK_KEY: tf.io.FixedLenFeature([], tf.string)}
    spec.update({k: tf.io.FixedLenFeature([], tf.int64) for k in _INT_KEYS})
    spec.update({k: tf.io.FixedLenFeature([], tf.string) for k in _BYTES_KEYS})
    spec.update({k: tf.io.FixedLenFeature([], tf.float32) for k in _FLOAT_KEYS})
    return spec


def parse_example(serialized):
    """Parses one serialized Example (TF graph op; use inside `Dataset.map`).

    Returns:
      image: uint8 [H, W, 3]; mask: uint8 [H, W, 1] with values {0, 255};
      metadata: dict of scalar tensors (image_id, tile_y, tile_x, height, width, scale,
      augmentation, vessel_fraction, source_path, schema_version).
    """
    import tensorflow as tf
    parsed = tf.io.parse_single_example(serialized, feature_spec())
    image = tf.io.decode_png(parsed.pop(IMAGE_KEY), channels=3, dtype=tf.uint8)
    mask = tf.io.decode_png(parsed.pop(MASK_KEY), channels=1, dtype=tf.uint8)
    image = tf.ensure_shape(image, [None, None, 3])
    mask = tf.ensure_shape(mask, [None, None, 1])
    return image, mask, parsed


def decode_example_numpy(serialized: bytes) -> tuple[np.ndarray, np.ndarray, dict]:
    """Eager/numpy convenience for tests and tools: (image, mask, metadata as Python values)."""
    image, mask, meta = parse_example(serialized)
    out = {}
    for key, value in meta.items():
        v = value.numpy()
        out[key] = v.decode() if isinstance(v, bytes) else v.item()
    return image.numpy(), mask.numpy(), out

"""The one definition of a tile record: writer (Beam, numpy) and reader (tf.data) both use it.

One `tf.train.Example` per tile. Schema version 2 (written today):

| feature            | type   | meaning                                                 |
|--------------------|--------|---------------------------------------------------------|
| image/encoded      | bytes  | RGB tile, uint8 [H, W, 3], in `image/encoding`          |
| image/encoding     | bytes  | b"jpeg", b"png" or b"raw" (C-order bytes)               |
| mask/encoded       | bytes  | binary vessel mask [H, W], in `mask/encoding`           |
| mask/encoding      | bytes  | b"png" (grey 0/255) or b"packed" (np.packbits, 1 bit/px)|
| fov/encoded        | bytes  | optional: field-of-view mask [H, W], 1 inside, in       |
|                    |        | `mask/encoding`; every record of a dataset whose        |
|                    |        | dataset_info.json says has_fov, none otherwise          |
| image_id           | bytes  | source image id, e.g. b"im0001"                         |
| dataset            | bytes  | optional: the dataset's name, e.g. b"stare",            |
|                    |        | b"chase_db1" (tiled_vessel_seg/sources.py); read as b"" |
|                    |        | from records written before it (no version change: an  |
|                    |        | optional feature with a default, like fov/encoded)      |
| tile_y, tile_x     | int64  | tile origin in the enlarged image; -1 for whole image   |
| height, width      | int64  | tile height and width in px                             |
| scale              | int64  | enlargement factor applied to the source                |
| augmentation       | bytes  | b"none" or the augmentation's name                      |
| vessel_fraction    | float  | fraction of mask pixels that are vessel                 |
| source_path        | bytes  | the photograph the tile was cut from                    |
| schema_version     | int64  | 2                                                       |

Schema version 1 (still read) had the same metadata and PNG pixels under `image/png` and
`mask/png`. Encodings are described in `encoding.py`; all records of a dataset share one
(`dataset_info.json` records it), so the reader builds one parse function per dataset
(`tile_decoder`) instead of branching per record. The FOV plane went through exactly the
same cut, enlargement and augmentation as the vessel mask (beam_jobs/tile_tasks.py); the
decoder returns the two as label planes [H, W, 2] (vessels, FOV) when asked, which is
what `[train] loss_mask = "fov"` trains on. Records without it read as before.

`encode_example` needs neither TensorFlow nor a graph (OpenCV codecs and a hand-written
protobuf serialiser), so a Beam worker can use it; the parse functions are pure TF graph
code for `Dataset.map`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from tiled_vessel_seg.imaging import MASK_THRESHOLD
from tiled_vessel_seg.names import READABLE_SCHEMA_VERSIONS as READABLE_VERSIONS
from tiled_vessel_seg.names import SCHEMA_VERSION
from tiled_vessel_seg.tfrecords import encoding as encoding_lib
from tiled_vessel_seg.tfrecords.encoding import TileEncoding
from tiled_vessel_seg.tfrecords.example_proto import serialize_example

WHOLE_IMAGE_ORIGIN = -1
NO_AUGMENTATION = "none"
IMAGE_CHANNELS = 3  # every record's tile is RGB, whatever the photo's file held

IMAGE_KEY = "image/encoded"
MASK_KEY = "mask/encoded"
IMAGE_ENCODING_KEY = "image/encoding"
MASK_ENCODING_KEY = "mask/encoding"
FOV_KEY = "fov/encoded"  # schema version 2, optional; encoded like the mask
V1_IMAGE_KEY = "image/png"
V1_MASK_KEY = "mask/png"
_INT_KEYS = ("tile_y", "tile_x", "height", "width", "scale", "schema_version")
_BYTES_KEYS = ("image_id", "augmentation", "source_path")
DATASET_KEY = "dataset"  # optional, default b"" (records written before it)
_FLOAT_KEYS = ("vessel_fraction",)


@dataclasses.dataclass(frozen=True)
class RecordFormat:
    """How the records of one dataset are laid out: schema version, pixel encodings, and
    whether every record carries a FOV plane (`FOV_KEY`)."""
    schema_version: int = SCHEMA_VERSION
    encoding: TileEncoding = TileEncoding()
    has_fov: bool = False

    def __post_init__(self):
        if self.schema_version not in READABLE_VERSIONS:
            raise ValueError(f"record schema version {self.schema_version} is not one of "
                             f"{', '.join(map(str, READABLE_VERSIONS))}")
        if self.schema_version == 1 and (self.encoding.image, self.encoding.mask) != ("png", "png"):
            raise ValueError("record schema version 1 stores PNG images and masks only")
        if self.schema_version == 1 and self.has_fov:
            raise ValueError("record schema version 1 has no FOV plane")

    @property
    def image_key(self) -> str:
        return V1_IMAGE_KEY if self.schema_version == 1 else IMAGE_KEY

    @property
    def mask_key(self) -> str:
        return V1_MASK_KEY if self.schema_version == 1 else MASK_KEY


VERSION_1 = RecordFormat(1, encoding_lib.VERSION_1_ENCODING)


@dataclasses.dataclass(frozen=True)
class TileRecord:
    """One tile as the Beam job produces it (numpy, no TF).

    image: uint8 [H, W, 3] RGB. mask: uint8 [H, W] or [H, W, 1], values {0, 1} or {0, 255}.
    fov: like mask, non-zero inside the field of view; None writes no FOV plane.
    """
    image: np.ndarray
    mask: np.ndarray
    image_id: str
    tile_y: int
    tile_x: int
    scale: int
    augmentation: str
    source_path: str
    fov: Optional[np.ndarray] = None
    dataset: str = ""

    @property
    def vessel_fraction(self) -> float:
        return float(np.count_nonzero(self.mask)) / float(self.mask.shape[0] * self.mask.shape[1])


def encode_example(record: TileRecord, encoding: TileEncoding = TileEncoding()) -> bytes:
    """Serialises `record` to a tf.train.Example (bytes) of schema version 2."""
    image = np.asarray(record.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    mask = np.asarray(record.mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    planes = {}
    if record.fov is not None:
        fov = np.asarray(record.fov)
        fov = fov[..., 0] if fov.ndim == 3 else fov
        if fov.shape != image.shape[:2]:
            raise ValueError(f"fov shape {fov.shape} does not match image {image.shape[:2]}")
        planes[FOV_KEY] = encoding_lib.encode_mask(fov, encoding)
    return serialize_example({
        **planes,
        IMAGE_KEY: encoding_lib.encode_image(image, encoding),
        IMAGE_ENCODING_KEY: encoding.image.encode(),
        MASK_KEY: encoding_lib.encode_mask(mask, encoding),
        MASK_ENCODING_KEY: encoding.mask.encode(),
        "image_id": record.image_id.encode(),
        "tile_y": int(record.tile_y),
        "tile_x": int(record.tile_x),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "scale": int(record.scale),
        "augmentation": record.augmentation.encode(),
        "vessel_fraction": record.vessel_fraction,
        "source_path": record.source_path.encode(),
        DATASET_KEY: record.dataset.encode(),
        "schema_version": SCHEMA_VERSION,
    })


def feature_spec(record_format: RecordFormat = RecordFormat(), metadata: bool = True,
                 with_fov: bool = False) -> dict:
    """The `tf.io.parse_single_example` spec of `record_format`.

    metadata=False keeps only what decoding needs (pixels, height, width): parsing fewer
    features is cheaper in the training input pipeline. with_fov adds the FOV plane
    (the format must have one).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    spec = {record_format.image_key: tf.io.FixedLenFeature([], tf.string),
            record_format.mask_key: tf.io.FixedLenFeature([], tf.string),
            "height": tf.io.FixedLenFeature([], tf.int64),
            "width": tf.io.FixedLenFeature([], tf.int64)}
    if with_fov:
        if not record_format.has_fov:
            raise ValueError("these records carry no FOV plane (dataset_info.json: has_fov "
                             "is false)")
        spec[FOV_KEY] = tf.io.FixedLenFeature([], tf.string)
    if metadata:
        spec.update({k: tf.io.FixedLenFeature([], tf.int64) for k in _INT_KEYS})
        spec.update({k: tf.io.FixedLenFeature([], tf.string) for k in _BYTES_KEYS})
        spec.update({k: tf.io.FixedLenFeature([], tf.float32) for k in _FLOAT_KEYS})
        spec[DATASET_KEY] = tf.io.FixedLenFeature([], tf.string, default_value=b"")
        if record_format.schema_version >= 2:
            spec[IMAGE_ENCODING_KEY] = tf.io.FixedLenFeature([], tf.string)
            spec[MASK_ENCODING_KEY] = tf.io.FixedLenFeature([], tf.string)
    return spec


def _image_decoder(encoding: TileEncoding) -> Callable:
    """(bytes, height, width) -> uint8 [H, W, 3] for one image encoding (graph ops)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if encoding.image == "jpeg":
        # TF's default IDCT (INTEGER_FAST) alone costs ~4 dB on enlarged photographs
        # (min 45.1 vs 49.2 dB over the 265 kept tiles of the 7 real STARE images at
        # quality 95) and is no faster.
        return lambda data, height, width: tf.io.decode_jpeg(
            data, channels=3, dct_method="INTEGER_ACCURATE")
    if encoding.image == "png":
        return lambda data, height, width: tf.io.decode_png(data, channels=3, dtype=tf.uint8)
    return lambda data, height, width: tf.reshape(tf.io.decode_raw(data, tf.uint8),
                                                  tf.stack([height, width, 3]))


def _mask_decoder(encoding: TileEncoding) -> Callable:
    """(bytes, height, width) -> uint8 [H, W, 1] in {0, 1} for one mask encoding."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    if encoding.mask == "png":
        return lambda data, height, width: tf.cast(
            tf.io.decode_png(data, channels=1, dtype=tf.uint8) > MASK_THRESHOLD, tf.uint8)
    # The 8 bits of every byte value, most significant first (np.packbits' order), by bit
    # shifts: unpacking is then one gather, 1.6x faster than shifting every byte in the graph.
    byte_bits = (np.arange(256)[:, None] >> np.arange(7, -1, -1)) & 1
    bits_of = tf.constant(byte_bits.astype(np.uint8))

    def unpack(data, height, width):
        packed = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
        bits = tf.reshape(tf.gather(bits_of, packed), [-1])
        return tf.reshape(bits[:height * width], tf.stack([height, width, 1]))
    return unpack


def tile_decoder(record_format: RecordFormat, metadata: bool = False,
                 with_fov: bool = False) -> Callable:
    """The parse function of one dataset: serialized Example -> decoded tile (graph ops).

    Built once per dataset: the decode ops are chosen here, in Python, from
    `record_format`, so the graph holds no per-record branch on the encoding.

    Returns fn(serialized scalar string) -> (image uint8 [H, W, 3], mask uint8 [H, W, 1]
    in {0, 1}), plus the metadata dict of scalar tensors as a third element when
    `metadata` is True. With `with_fov` the mask is the label planes uint8 [H, W, 2]
    in {0, 1}: vessels, then the field of view (ValueError if the format has no FOV).
    """
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    spec = feature_spec(record_format, metadata, with_fov)
    decode_image = _image_decoder(record_format.encoding)
    decode_mask = _mask_decoder(record_format.encoding)

    def parse(serialized):
        parsed = tf.io.parse_single_example(serialized, spec)
        height = tf.cast(parsed["height"], tf.int32)
        width = tf.cast(parsed["width"], tf.int32)
        image = tf.ensure_shape(decode_image(parsed.pop(record_format.image_key), height, width),
                                [None, None, 3])
        mask = tf.ensure_shape(decode_mask(parsed.pop(record_format.mask_key), height, width),
                               [None, None, 1])
        if with_fov:
            fov = tf.ensure_shape(decode_mask(parsed.pop(FOV_KEY), height, width),
                                  [None, None, 1])
            mask = tf.concat([mask, tf.cast(fov, mask.dtype)], axis=-1)
        if not metadata:
            return image, mask
        return image, mask, parsed
    return parse


def record_format_of(serialized: bytes) -> RecordFormat:
    """The format of one record, read from the record itself (tools and tests; the reader
    takes it from dataset_info.json instead)."""
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel
    features = example_pb2.Example.FromString(serialized).features.feature
    if V1_IMAGE_KEY in features:
        return VERSION_1
    if IMAGE_ENCODING_KEY not in features or MASK_ENCODING_KEY not in features:
        raise ValueError("not a tile record: it has neither image/png nor image/encoding")
    version = features["schema_version"].int64_list.value[0]
    return RecordFormat(int(version), TileEncoding(
        image=features[IMAGE_ENCODING_KEY].bytes_list.value[0].decode(),
        mask=features[MASK_ENCODING_KEY].bytes_list.value[0].decode()),
        has_fov=FOV_KEY in features)


def parse_example(serialized, record_format: RecordFormat = RecordFormat(),
                  with_fov: bool = False):
    """Parses one serialized Example of `record_format` (TF graph op; use inside `Dataset.map`).

    Returns:
      image: uint8 [H, W, 3]; mask: uint8 [H, W, 1] with values {0, 255} ([H, W, 2]:
      vessels, FOV with `with_fov`);
      metadata: dict of scalar tensors (image_id, tile_y, tile_x, height, width, scale,
      augmentation, vessel_fraction, source_path, dataset (b"" when absent),
      schema_version; version 2 also image/encoding and mask/encoding).
    """
    image, mask, parsed = tile_decoder(record_format, metadata=True, with_fov=with_fov)(serialized)
    return image, mask * 255, parsed


def decode_example_numpy(serialized: bytes, with_fov: bool = False
                         ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Eager/numpy convenience for tests and tools: (image, mask {0, 255}, metadata as Python
    values), decoded by the same graph ops as training, in the record's own format.
    with_fov: the mask is [H, W, 2], vessels then FOV (the record must carry one)."""
    image, mask, meta = parse_example(serialized, record_format_of(serialized), with_fov)
    out = {}
    for key, value in meta.items():
        v = value.numpy()
        out[key] = v.decode() if isinstance(v, bytes) else v.item()
    return image.numpy(), mask.numpy(), out

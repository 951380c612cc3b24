"""Serialises a `tf.train.Example` without TensorFlow (the protobuf wire format by hand).

A Beam worker that imported `tensorflow.core.example.example_pb2` would load all of
TensorFlow (~2.4 CPU-seconds and a few hundred MB per worker process) to build a message
of a few fields. The messages involved (tensorflow/core/example/{example,feature}.proto):

    Example   { Features features = 1; }
    Features  { map<string, Feature> feature = 1; }   // entry: key = 1, value = 2
    Feature   { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
                             Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Each feature here holds one value. Keys are written in sorted order, so equal inputs give
equal bytes.
"""
from __future__ import annotations

import struct
from typing import Mapping, Union

FeatureValue = Union[bytes, int, float]

_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    """Base-128 varint; negative int64 values as their 64-bit two's complement (10 bytes)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return _varint(number << 3 | _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _feature(value: FeatureValue) -> bytes:
    """The serialised Feature message holding the one value."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _field(1, _field(1, bytes(value)))                       # bytes_list
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"feature values are bytes, int or float, got {type(value).__name__}")
    if isinstance(value, int):
        if not -(1 << 63) <= value < 1 << 63:
            raise ValueError(f"int64 feature out of range: {value}")
        return _field(3, _field(1, _varint(value)))                     # int64_list, packed
    return _field(2, _field(1, struct.pack("<f", value)))               # float_list, packed


def serialize_example(features: Mapping[str, FeatureValue]) -> bytes:
    """{name: bytes | int | float} -> the bytes of a tf.train.Example with those features.

    bytes become a BytesList, int an Int64List, float a FloatList (float32), one value each.
    """
    entries = b"".join(_field(1, _field(1, key.encode()) + _field(2, _feature(features[key])))
                       for key in sorted(features))
    return _field(1, entries)

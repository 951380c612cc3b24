"""Cheap record counts of TFRecord shards, checked against dataset_info.json.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little endian) | uint32 CRC of the length | data[length] | uint32 CRC

so counting needs the 12-byte headers only: an uncompressed shard is walked by seeking
past each record's data (no decode, no CRC check), a gzip shard is decompressed as a
stream (zlib, no TensorFlow). No TensorFlow op runs, so the check can come before a
distribution strategy is made.

`check_splits` is what vessel-train, vessel-evaluate and vessel-run call before any work:
an empty split (a shard of zero bytes made `model.fit` spin forever on an endless empty
stream, and an empty test shard gave a KeyError in evaluate) and a shard whose count
differs from dataset_info.json are one DatasetError naming the shard.
"""
from __future__ import annotations

import gzip
import struct
from typing import BinaryIO, Iterable, Optional

from tiled_vessel_seg import storage
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib

_HEADER = 12  # uint64 length + uint32 length CRC
_FOOTER = 4   # uint32 data CRC


class RecordCountError(dataset_info_lib.DatasetError):
    """A split that is empty or whose shards do not hold the records dataset_info.json
    lists; the message names the shard(s)."""


def _skip(stream: BinaryIO, count: int, seekable: bool) -> int:
    """Moves `count` bytes on; returns how many there were (fewer at the end of file)."""
    if seekable:
        here = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(min(here + count, end))
        return min(count, end - here)
    skipped = 0
    while skipped < count:
        chunk = stream.read(min(count - skipped, 1 << 20))
        if not chunk:
            break
        skipped += len(chunk)
    return skipped


def _count_stream(stream: BinaryIO, path: str, seekable: bool) -> int:
    count = 0
    while True:
        header = stream.read(_HEADER)
        if not header:
            return count
        if len(header) < _HEADER:
            raise RecordCountError(f"{path}: truncated after {count} record(s) (a record "
                                   f"header is cut off)")
        (length,) = struct.unpack("<Q", header[:8])
        if _skip(stream, length + _FOOTER, seekable) < length + _FOOTER:
            raise RecordCountError(f"{path}: truncated after {count} record(s) (record "
                                   f"{count + 1} says {length} bytes, the file ends first)")
        count += 1


def count_records(path: str, compression: str) -> int:
    """The number of records in one shard. compression: "gzip" or "none" (dataset_info.json's
    value). Raises RecordCountError for a missing, unreadable or truncated shard."""
    try:
        with storage.open_read(path) as raw:
            if compression == "gzip":
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    return _count_stream(stream, path, seekable=False)
            return _count_stream(raw, path, seekable=not storage.is_remote(path))
    except RecordCountError:
        raise
    except Exception as e:  # noqa: BLE001 - OSError, zlib.error, EOFError, TF's on gs://
        text = str(e).strip()
        reason = (e.reason if isinstance(e, storage.StorageError) else
                  getattr(e, "strerror", None) or (text.splitlines()[0] if text
                                                   else type(e).__name__))
        raise RecordCountError(f"{path}: cannot count records: {reason}") from None


def check_splits(data_dir: str, info: dataset_info_lib.DatasetInfo,
                 splits: Iterable[str], needed_by: str) -> dict[str, list[int]]:
    """Counts the records of every shard of `splits`; returns {split: [count per shard]}.

    Raises RecordCountError (a DatasetError) when a split is missing, has no shard, holds
    no record, or when a shard's count differs from dataset_info.json (the shard's own
    count where recorded, else the split's total).
    """
    info_path = dataset_info_lib.join(data_dir, dataset_info_lib.INFO_FILE)
    counts = {}
    for split in splits:
        paths = info.shard_paths(data_dir, split)
        split_info = info.splits[split]
        found = [count_records(p, info.compression) for p in paths]
        counts[split] = found
        if not sum(found):
            where = ", ".join(paths) if paths else "no shard listed"
            raise RecordCountError(
                f"{info_path}: split {split!r} is empty ({where}: 0 records), and "
                f"{needed_by} needs it; re-run vessel-preprocess (with --overwrite)")
        expected: Optional[list[int]] = list(split_info.shard_records or []) or None
        if expected is not None and len(expected) == len(found):
            wrong = [f"{p} holds {n} record(s), {dataset_info_lib.INFO_FILE} says {e}"
                     for p, n, e in zip(paths, found, expected) if n != e]
            if wrong:
                raise RecordCountError(f"{'; '.join(wrong)}; the dataset was changed after "
                                       f"vessel-preprocess wrote it: re-run it")
        elif sum(found) != split_info.records:
            per_shard = ", ".join(f"{p}: {n}" for p, n in zip(paths, found))
            raise RecordCountError(
                f"{info_path}: split {split!r} lists {split_info.records} record(s) but its "
                f"shards hold {sum(found)} ({per_shard}); the dataset was changed after "
                f"vessel-preprocess wrote it: re-run it")
    return counts

"""Paths and files, local or remote (gs://, any scheme TensorFlow's filesystems know).

One small API over two backends: local paths go through `os` (no TensorFlow import),
remote URLs through `tf.io.gfile` (imported on first use; TensorFlow's own GCS support
is enough, tensorflow-io is not needed). Every writer in the project uses
`write_bytes_atomic` / `write_text_atomic`: the data goes to a uniquely named temporary
file next to the target, then is renamed over it, so a reader never sees half a file and
a failed write leaves neither a partial target nor the temporary file behind. (On GCS a
rename is a copy + delete: readers still never see a partial object.)

Every failure is a `StorageError` (an OSError) whose message names the path and the
operating-system reason.

The dataset's shard names are defined here once (`shard_name`, `shard_glob`,
`BEAM_SHARD_TEMPLATE`), for the Beam writer, the tf.data reader and the tests:

    DATA_DIR/{split}/{split}-{index:05d}-of-{num_shards:05d}.tfrecord[.gz]
"""
from __future__ import annotations

import contextlib
import errno as errno_lib
import glob as glob_lib
import os
import posixpath
import shutil
import uuid
from typing import BinaryIO, Iterator, Optional

from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # remote paths only (tf.io.gfile): local work never imports it
    import tensorflow as tf

# Beam's shard_name_template producing the names of `shard_name` after the prefix
# `shard_prefix(data_dir, split)` and before the suffix `shard_suffix(compression)`.
BEAM_SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
SHARD_SUFFIXES = {"none": ".tfrecord", "gzip": ".tfrecord.gz"}


class StorageError(OSError):
    """A path that cannot be read, listed or written; the message names path and reason.

    `errno` is the operating system's error number when there is one (ENOENT for a
    missing file, ENOSPC for a full disk ...), else None.
    """

    def __init__(self, path: str, reason: str, errno: Optional[int] = None):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.errno = errno


def is_remote(path: str) -> bool:
    """True for URLs with a scheme (gs://bucket/x, s3://...), False for local paths."""
    return "://" in str(path)


def _gfile():
    return tf.io.gfile


def _reason(e: BaseException) -> tuple[str, Optional[int]]:
    """(one-line reason, errno) of an OS or TensorFlow error."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror, e.errno
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    return message.strip().splitlines()[0], getattr(e, "errno", None)


def _wrap(path: str, action: str, e: BaseException) -> StorageError:
    if isinstance(e, StorageError):
        return e
    reason, number = _reason(e)
    if number is None and type(e).__name__ == "NotFoundError":  # tf.errors.NotFoundError
        number = errno_lib.ENOENT
    return StorageError(path, f"cannot {action}: {reason}", number)


def join(base: str, *parts: str) -> str:
    """Path join; URLs always use '/' whatever the OS."""
    base = str(base)
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def basename(path: str) -> str:
    """'gs://b/x/im0001.png' -> 'im0001.png' (a trailing '/' is ignored)."""
    return posixpath.basename(str(path).rstrip("/")) if is_remote(path) else \
        os.path.basename(str(path).rstrip(os.sep))


def exists(path: str) -> bool:
    path = str(path)
    if not is_remote(path):
        return os.path.exists(path)
    try:
        return _gfile().exists(path)
    except Exception as e:  # noqa: BLE001 - remote backends raise many types
        raise _wrap(path, "check", e) from None


def isdir(path: str) -> bool:
    path = str(path)
    if not is_remote(path):
        return os.path.isdir(path)
    try:
        return _gfile().isdir(path)
    except Exception as e:  # noqa: BLE001
        raise _wrap(path, "check", e) from None


def listdir(path: str) -> list[str]:
    """Sorted entry names of a folder (no trailing '/' on sub-folders)."""
    path = str(path)
    try:
        names = os.listdir(path) if not is_remote(path) else _gfile().listdir(path)
    except Exception as e:  # noqa: BLE001
        raise _wrap(path, "list folder", e) from None
    return sorted(n.rstrip("/") for n in names)


def glob(pattern: str) -> list[str]:
    """Sorted paths matching a shell pattern (* ? [..]); [] when nothing matches."""
    pattern = str(pattern)
    if not is_remote(pattern):
        return sorted(glob_lib.glob(pattern))
    try:
        return sorted(_gfile().glob(pattern))
    except Exception as e:  # noqa: BLE001
        if type(e).__name__ == "NotFoundError":
            return []
        raise _wrap(pattern, "match", e) from None


def makedirs(path: str) -> None:
    """Creates a folder and its parents; no error if it exists."""
    path = str(path)
    try:
        if is_remote(path):
            _gfile().makedirs(path)
        else:
            os.makedirs(path, exist_ok=True)
    except FileExistsError:  # os.makedirs' word for "a file is in the way"
        raise StorageError(path, "cannot create folder: a file is there, not a directory",
                           errno_lib.ENOTDIR) from None
    except Exception as e:  # noqa: BLE001
        raise _wrap(path, "create folder", e) from None


def read_bytes(path: str) -> bytes:
    path = str(path)
    try:
        if not is_remote(path):
            with open(path, "rb") as f:
                return f.read()
        with _gfile().GFile(path, "rb") as f:
            return f.read()
    except Exception as e:  # noqa: BLE001
        raise _wrap(path, "read", e) from None


@contextlib.contextmanager
def open_read(path: str) -> Iterator[BinaryIO]:
    """A binary file object to read `path` in pieces (local: open(); remote: GFile), for
    readers that must not load a whole file (record headers, archives). Failing to open
    is a StorageError; errors while reading are the file object's own."""
    path = str(path)
    try:
        if not is_remote(path):
            stream = open(path, "rb")
        elif not _gfile().exists(path):  # GFile opens lazily: say it here, not at a read
            raise StorageError(path, "cannot read: No such file or directory", errno_lib.ENOENT)
        else:
            stream = _gfile().GFile(path, "rb")
    except Exception as e:  # noqa: BLE001
        raise _wrap(path, "read", e) from None
    with stream:
        yield stream


def read_text(path: str) -> str:
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StorageError(str(path), f"not UTF-8 text: {e}") from None


def remove(path: str, missing_ok: bool = False) -> None:
    path = str(path)
    try:
        if is_remote(path):
            _gfile().remove(path)
        else:
            os.remove(path)
    except Exception as e:  # noqa: BLE001
        error = _wrap(path, "remove", e)
        if missing_ok and error.errno == errno_lib.ENOENT:
            return
        raise error from None


def copy(source: str, destination: str) -> None:
    """Copies one file (either side local or remote), replacing the destination."""
    source, destination = str(source), str(destination)
    try:
        if is_remote(source) or is_remote(destination):
            _gfile().copy(source, destination, overwrite=True)
            return
    except Exception as e:  # noqa: BLE001
        raise _wrap(f"{source} -> {destination}", "copy", e) from None
    write_bytes_atomic(destination, read_bytes(source))


def rename(source: str, destination: str) -> None:
    """Moves one file within a filesystem, replacing the destination (local: atomic
    os.replace; remote: the backend's rename, on GCS a copy + delete)."""
    source, destination = str(source), str(destination)
    try:
        if is_remote(source) or is_remote(destination):
            _gfile().rename(source, destination, overwrite=True)
        else:
            os.replace(source, destination)
    except Exception as e:  # noqa: BLE001
        raise _wrap(f"{source} -> {destination}", "move", e) from None


def remove_tree(path: str) -> None:
    """Deletes a folder and everything in it; no error if it does not exist."""
    path = str(path)
    try:
        if is_remote(path):
            if _gfile().exists(path):
                _gfile().rmtree(path)
        elif os.path.exists(path):
            shutil.rmtree(path)
    except Exception as e:  # noqa: BLE001
        raise _wrap(path, "remove folder", e) from None


def _temporary_name(path: str) -> str:
    # Unique per writer, so parallel writers of one target never share a temporary file.
    return f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _discard(tmp: str) -> None:
    """Removes a temporary file if it is there; never raises (we are already failing)."""
    try:
        if is_remote(tmp):
            gfile = _gfile()
            if gfile.exists(tmp):
                gfile.remove(tmp)
        elif os.path.lexists(tmp):
            os.remove(tmp)
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def _write_local(tmp: str, path: str, data: bytes) -> None:
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_remote(tmp: str, path: str, data: bytes) -> None:
    gfile = _gfile()
    with gfile.GFile(tmp, "wb") as f:
        f.write(data)
    gfile.rename(tmp, path, overwrite=True)


def write_bytes_atomic(path: str, data: bytes) -> str:
    """Writes `data` to `path` (local or remote) through a temporary sibling + rename.

    On any error, including an interrupt, the temporary file is removed and `path` is
    left as it was. Returns `path`. Raises StorageError naming the path and reason.
    """
    path = str(path)
    tmp = _temporary_name(path)
    try:
        (_write_remote if is_remote(path) else _write_local)(tmp, path, data)
    except BaseException as e:
        _discard(tmp)
        if isinstance(e, Exception):
            raise _wrap(path, "write", e) from None
        raise
    return path


def write_text_atomic(path: str, text: str) -> str:
    """`write_bytes_atomic` of UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


# --------------------------------------------------------------------------- shards
def shard_suffix(compression: str) -> str:
    """'.tfrecord' (compression "none") or '.tfrecord.gz' ("gzip")."""
    try:
        return SHARD_SUFFIXES[compression]
    except KeyError:
        raise ValueError(f"compression must be one of {', '.join(SHARD_SUFFIXES)}, "
                         f"got {compression!r}") from None


def shard_name(split: str, index: int, num_shards: int, compression: str = "none") -> str:
    """Shard `index` of `num_shards` of a split, relative to the dataset folder:
    shard_name("train", 3, 8, "gzip") == "train/train-00003-of-00008.tfrecord.gz"."""
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index {index} is not in [0, {num_shards})")
    return f"{split}/{split}-{index:05d}-of-{num_shards:05d}{shard_suffix(compression)}"


def shard_prefix(data_dir: str, split: str) -> str:
    """The file_path_prefix Beam's WriteToTFRecord takes to write `shard_name` files."""
    return join(data_dir, split, split)


def shard_glob(data_dir: str, split: str, num_shards: Optional[int] = None,
               compression: Optional[str] = None) -> str:
    """Pattern matching the split's shards (of `num_shards`, of one compression, or any)."""
    count = "*" if num_shards is None else f"{num_shards:05d}"
    suffix = ".tfrecord*" if compression is None else shard_suffix(compression)
    return join(data_dir, split, f"{split}-*-of-{count}{suffix}")


def list_shards(data_dir: str, split: str, num_shards: Optional[int] = None,
                compression: Optional[str] = None) -> list[str]:
    """Shard files of `split` found under data_dir, relative to it ('train/train-...'), sorted."""
    return sorted(f"{split}/{basename(p)}"
                  for p in glob(shard_glob(data_dir, split, num_shards, compression)))

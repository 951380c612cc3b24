"""tiled_vessel_seg.storage: atomic writes leave no temporary file on any failure, errors
name the path, and the one shard-name template agrees with what Beam writes."""
from __future__ import annotations

import builtins
import errno
import os

import pytest

from tiled_vessel_seg import storage


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_write_read_round_trip_and_replace(tmp_path):
    path = tmp_path / "a.json"
    assert storage.write_text_atomic(str(path), "één") == str(path)
    assert storage.read_text(str(path)) == "één"
    storage.write_bytes_atomic(str(path), b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01" and leftovers(tmp_path) == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_failing_write_leaves_no_temporary_file(tmp_path, monkeypatch, code):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    real_open = builtins.open

    class FailingFile:
        def __init__(self, f):
            self._f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

        def write(self, data):
            self._f.write(data[:3])  # part of the data reaches the disk, then the error
            raise OSError(code, os.strerror(code))

    def failing_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FailingFile(f) if "w" in mode and ".tmp" in str(file) else f

    monkeypatch.setattr(builtins, "open", failing_open)
    with pytest.raises(storage.StorageError) as info:
        storage.write_bytes_atomic(str(target), b"new data")
    assert info.value.errno == code and isinstance(info.value, OSError)
    assert str(info.value) == f"{target}: cannot write: {os.strerror(code)}"
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_failing_rename_leaves_no_temporary_file(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(storage.StorageError, match="new.txt: cannot write: Permission denied"):
        storage.write_text_atomic(str(tmp_path / "new.txt"), "x")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_during_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        storage.write_bytes_atomic(str(tmp_path / "x.bin"), b"data")
    assert list(tmp_path.iterdir()) == []


def test_writing_into_a_missing_folder_names_the_path(tmp_path):
    path = tmp_path / "no" / "such" / "file.txt"
    with pytest.raises(storage.StorageError) as info:
        storage.write_text_atomic(str(path), "x")
    assert info.value.errno == errno.ENOENT and str(info.value).startswith(f"{path}: cannot write")


def test_read_errors_and_listing(tmp_path):
    with pytest.raises(storage.StorageError) as info:
        storage.read_bytes(str(tmp_path / "missing.bin"))
    assert info.value.errno == errno.ENOENT and "missing.bin: cannot read" in str(info.value)
    storage.makedirs(str(tmp_path / "d" / "e"))
    storage.write_text_atomic(str(tmp_path / "d" / "b.txt"), "b")
    storage.write_text_atomic(str(tmp_path / "d" / "a.txt"), "a")
    assert storage.listdir(str(tmp_path / "d")) == ["a.txt", "b.txt", "e"]
    assert storage.isdir(str(tmp_path / "d" / "e")) and storage.exists(str(tmp_path / "d" / "a.txt"))
    assert storage.glob(str(tmp_path / "d" / "*.txt")) == [str(tmp_path / "d" / n) for n in ("a.txt", "b.txt")]
    storage.remove(str(tmp_path / "d" / "a.txt"))
    storage.remove(str(tmp_path / "d" / "a.txt"), missing_ok=True)
    with pytest.raises(storage.StorageError, match="a.txt: cannot remove"):
        storage.remove(str(tmp_path / "d" / "a.txt"))


def test_remote_paths_join_with_slashes():
    assert storage.join("gs://bucket/data", "train", "x.tfrecord") == "gs://bucket/data/train/x.tfrecord"
    assert storage.is_remote("gs://b/x") and not storage.is_remote("/tmp/x")
    assert storage.basename("gs://b/x/im0001.png") == "im0001.png"


def test_shard_names():
    assert storage.shard_name("train", 3, 8, "gzip") == "train/train-00003-of-00008.tfrecord.gz"
    assert storage.shard_name("valid", 0, 1) == "valid/valid-00000-of-00001.tfrecord"
    with pytest.raises(ValueError):
        storage.shard_name("train", 8, 8)
    with pytest.raises(ValueError, match="compression"):
        storage.shard_suffix("zip")


def test_beam_writes_the_shard_names_of_the_template(tmp_path):
    beam = pytest.importorskip("apache_beam")
    with beam.Pipeline() as p:
        _ = (p | beam.Create([b"a", b"b", b"c"]) | beam.io.WriteToTFRecord(
            storage.shard_prefix(str(tmp_path), "train"), file_name_suffix=storage.shard_suffix("none"),
            num_shards=2, shard_name_template=storage.BEAM_SHARD_TEMPLATE))
    expected = [storage.shard_name("train", i, 2) for i in range(2)]
    assert storage.list_shards(str(tmp_path), "train") == expected
    assert storage.list_shards(str(tmp_path), "train", num_shards=2, compression="none") == expected
    assert storage.list_shards(str(tmp_path), "train", compression="gzip") == []
    assert storage.list_shards(str(tmp_path), "valid") == []


def test_open_read_streams_local_and_names_a_missing_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with storage.open_read(str(path)) as stream:
        assert stream.read(3) == b"\x00\x01\x02"
        stream.seek(1020)
        assert stream.read() == bytes(range(252, 256))
    with pytest.raises(storage.StorageError) as missing:
        with storage.open_read(str(tmp_path / "none.bin")):
            pass
    assert str(missing.value).startswith(f"{tmp_path / 'none.bin'}: cannot read: ")
    assert missing.value.errno == errno.ENOENT


def test_open_read_streams_a_remote_file():
    pytest.importorskip("tensorflow")
    storage.write_bytes_atomic("ram://open_read/f.bin", b"abcdef")
    with storage.open_read("ram://open_read/f.bin") as stream:
        assert stream.read(2) == b"ab" and stream.read() == b"cdef"
    with pytest.raises(storage.StorageError, match="^ram://open_read/none.bin: cannot read"):
        with storage.open_read("ram://open_read/none.bin"):
            pass

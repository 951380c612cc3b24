"""vessel-export owns its output folder like the other tools (issue 18.8): a non-empty folder
is refused without --overwrite, the SavedModel is written into a staging sibling and
renamed into place, and a failed export leaves neither a half SavedModel nor
saved_model.pb.tmp* files."""
from __future__ import annotations

import errno
import os

import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg import cli_app  # noqa: E402
from tiled_vessel_seg.inference import export  # noqa: E402

TILE = 32


@pytest.fixture(scope="module")
def model_dir(make_tiny_model_dir):
    return make_tiny_model_dir(tile=TILE, overlap=8)


def _export(model_dir, out, *extra):
    return cli_app.invoke(export.__name__, export.__doc__, export.define_flags, export.main, [
        "vessel-export", "--model_dir", model_dir, "--output_dir", str(out),
        "--input_scale", "native", *extra])


def _files(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, _, names in os.walk(folder) for f in names)


def _serves(folder):
    loaded = tf.saved_model.load(str(folder))
    png = tf.io.encode_png(tf.fill([40, 48, 3], tf.constant(90, tf.uint8)))
    result = loaded.signatures["serving_default"](image_bytes=png)
    return tuple(result["probabilities"].shape)


def test_a_non_empty_folder_is_refused_without_overwrite(model_dir, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _export(model_dir, out) == 2
    errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error")]
    assert len(errors) == 1 and "--overwrite" in errors[0] and str(out) in errors[0], errors
    assert _files(out) == ["notes.txt"]


def test_overwrite_replaces_the_folder_with_the_savedmodel_only(model_dir, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("old")
    assert _export(model_dir, out, "--overwrite") == 0
    assert "notes.txt" not in _files(out) and "saved_model.pb" in _files(out)
    assert _serves(out) == (40, 48)
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no staging sibling left


def test_a_failed_export_leaves_the_previous_one_and_no_temporary_files(model_dir, tmp_path,
                                                                       monkeypatch, capsys):
    out = tmp_path / "export"
    assert _export(model_dir, out) == 0
    before = {name: open(out / name, "rb").read() for name in _files(out)}
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass

    def full_disk(self, filepath, *args, **kwargs):
        os.makedirs(filepath, exist_ok=True)  # what TF leaves when the disk fills up
        open(os.path.join(filepath, "saved_model.pb.tmp1c2d3e"), "wb").write(b"\0" * 64)
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(archive_class, "write_out", full_disk)
    assert _export(model_dir, out, "--overwrite") == 2
    assert "No space left" in capsys.readouterr().err
    assert {name: open(out / name, "rb").read() for name in _files(out)} == before
    assert sorted(os.listdir(tmp_path)) == ["export"]
    monkeypatch.undo()
    assert _export(model_dir, out, "--overwrite") == 0
    assert not [f for f in _files(out) if ".tmp" in f]
    assert _serves(out) == (40, 48)


def test_exporting_into_a_new_folder_needs_no_overwrite(model_dir, tmp_path):
    out = tmp_path / "a" / "b" / "export"
    assert _export(model_dir, out) == 0
    assert "saved_model.pb" in _files(out)

"""vessel-download-stare against hostile archives (issue 11 hardening): duplicate names and
links are warnings and counted truthfully, a failed write names the file and leaves no
temporary file, an unusable output folder is one line and exit 2."""
import errno
import gzip
import io
import logging
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import stare_download as ds
from tiled_vessel_seg import stare_download_cli as ds_cli


def _ppm_gz(array):
    ok, encoded = cv2.imencode(".ppm", array)
    assert ok
    return gzip.compress(encoded.tobytes())


def _gunzip_decode(path):
    return cv2.imdecode(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8),
                        cv2.IMREAD_UNCHANGED)


def _write_tar(path, members):
    """members: list of (name, bytes) regular files or (name, ('sym'|'hard', target))."""
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type = tarfile.SYMTYPE if data[0] == "sym" else tarfile.LNKTYPE
                info.linkname = data[1]
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def photos():
    rng = np.random.default_rng(11)
    return [rng.integers(0, 256, (6, 7, 3), np.uint8) for _ in range(3)]


def test_extract_keeps_the_first_good_file_when_a_corrupt_duplicate_follows(tmp_path, photos):
    good = _ppm_gz(photos[0])
    tar = _write_tar(tmp_path / "a.tar", [("a/im0001.ppm.gz", good),
                                          ("b/im0001.ppm.gz", good[:len(good) // 2])])
    report = ds.ArchiveReport(folder="stare-images", url="file:///a.tar")
    ds.extract_archive(tar, tmp_path / "out", ".ppm.gz", report, progress=False)
    np.testing.assert_array_equal(_gunzip_decode(tmp_path / "out" / "im0001.ppm.gz"), photos[0])
    assert report.written == ["im0001.ppm.gz"]
    assert report.duplicates == {"b/im0001.ppm.gz": "a/im0001.ppm.gz"}


def test_extract_keeps_the_first_of_two_good_files_and_counts_it_once(tmp_path, photos):
    tar = _write_tar(tmp_path / "a.tar", [("a/im0001.ppm.gz", _ppm_gz(photos[0])),
                                          ("b/im0001.ppm.gz", _ppm_gz(photos[1])),
                                          ("im0002.ppm.gz", _ppm_gz(photos[2]))])
    report = ds.ArchiveReport(folder="stare-images", url="file:///a.tar")
    ds.extract_archive(tar, tmp_path / "out", ".ppm.gz", report, progress=False)
    np.testing.assert_array_equal(_gunzip_decode(tmp_path / "out" / "im0001.ppm.gz"), photos[0])
    assert sorted(report.written) == ["im0001.ppm.gz", "im0002.ppm.gz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "im0001.ppm.gz", "im0002.ppm.gz"]


def test_extract_a_good_copy_after_a_corrupt_one_is_written(tmp_path, photos):
    good = _ppm_gz(photos[0])
    tar = _write_tar(tmp_path / "a.tar", [("a/im0001.ppm.gz", good[:10]),
                                          ("b/im0001.ppm.gz", good)])
    report = ds.ArchiveReport(folder="stare-images", url="file:///a.tar")
    ds.extract_archive(tar, tmp_path / "out", ".ppm.gz", report, progress=False)
    np.testing.assert_array_equal(_gunzip_decode(tmp_path / "out" / "im0001.ppm.gz"), photos[0])
    assert report.written == ["im0001.ppm.gz"] and list(report.corrupt) == ["a/im0001.ppm.gz"]


def test_download_warns_on_links_and_duplicates_and_counts_truthfully(tmp_path, photos, caplog,
                                                                      capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write_tar(mirror / "stare-images.tar", [
        ("im0001.ppm.gz", _ppm_gz(photos[0])),
        ("copy/im0001.ppm.gz", _ppm_gz(photos[1])),
        ("im0002.ppm.gz", ("sym", "/etc/passwd")),
        ("im0003.ppm.gz", ("hard", "im0001.ppm.gz")),
    ])
    _write_tar(mirror / "labels-ah.tar", [("im0001.ah.ppm.gz", _ppm_gz(photos[2]))])
    out = tmp_path / "stare"
    with caplog.at_level(logging.WARNING):
        status = ds_cli.main(["--out_dir", str(out), "--url_base", mirror.as_uri(),
                              "--no-progress"])
    assert status == 0  # duplicates and links are warnings: the layout is complete
    assert sorted(p.name for p in (out / "stare-images").iterdir()) == ["im0001.ppm.gz"]
    np.testing.assert_array_equal(_gunzip_decode(out / "stare-images" / "im0001.ppm.gz"),
                                  photos[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("im0002.ppm.gz" in w and "link" in w for w in warnings), warnings
    assert any("im0003.ppm.gz" in w and "link" in w for w in warnings), warnings
    assert any("copy/im0001.ppm.gz" in w and "same file name" in w for w in warnings), warnings
    assert "stare-images 1 files" in capsys.readouterr().out


def test_extract_write_failure_names_the_file_leaves_no_tmp_and_keeps_the_archive(
        tmp_path, photos, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write_tar(mirror / "stare-images.tar", [("im0001.ppm.gz", _ppm_gz(photos[0]))])
    _write_tar(mirror / "labels-ah.tar", [("im0001.ah.ppm.gz", _ppm_gz(photos[1]))])
    real_write = Path.write_bytes

    def full_disk(self, data):
        real_write(self, data[:3])  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    out = tmp_path / "stare"
    with pytest.raises(ds.OutputWriteError) as refused:
        ds.download_stare(out, mirror.as_uri(), progress=False)
    assert str(refused.value) == (f"{out / 'stare-images' / 'im0001.ppm.gz'}: cannot write: "
                                  "No space left on device")
    assert not list(out.rglob("*.tmp"))
    assert (out / "archives" / "stare-images.tar").exists()  # no refetch needed


def test_download_into_an_unusable_folder_is_one_line_exit_2(tmp_path, photos, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _write_tar(mirror / "stare-images.tar", [("im0001.ppm.gz", _ppm_gz(photos[0]))])
    _write_tar(mirror / "labels-ah.tar", [("im0001.ah.ppm.gz", _ppm_gz(photos[1]))])
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = ds_cli.main(["--output_dir", str(blocker / "stare"), "--url_base", mirror.as_uri(),
                        "--noprogress"])
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(blocker / "stare" / "archives") in lines[0] and "Not a directory" in lines[0]

"""vessel-download-stare against archives built here, served from file:// and a local HTTP server."""
import gzip
import http.server
import io
import logging
import tarfile
import threading

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import stare_download as ds
from tiled_vessel_seg import stare_download_cli as ds_cli


def _ppm_gz(array):
    ok, encoded = cv2.imencode(".ppm", array)
    assert ok
    return gzip.compress(encoded.tobytes())


def _tar(members):
    """{name: bytes} -> the bytes of an uncompressed tar holding them, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _decode(path):
    return cv2.imdecode(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8),
                        cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two mirror folders: 'clean' (with an unpaired label) and 'corrupt' (plus bad members)."""
    rng = np.random.default_rng(0)
    photos = {i: rng.integers(0, 256, (10, 12, 3), np.uint8) for i in ("im0001", "im0002")}
    labels = {i: (rng.random((10, 12, 3)) > 0.8).astype(np.uint8) * 255
              for i in ("im0001", "im0002", "im0324")}
    photo_members = {f"{i}.ppm.gz": _ppm_gz(a) for i, a in photos.items()}
    ah_members = {f"{i}.ah.ppm.gz": _ppm_gz(a) for i, a in labels.items()}
    vk_members = {f"{i}.vk.ppm.gz": _ppm_gz(255 - a) for i, a in labels.items()}

    clean = tmp_path_factory.mktemp("clean")
    (clean / "stare-images.tar").write_bytes(_tar(photo_members))
    (clean / "labels-ah.tar").write_bytes(_tar(ah_members))
    (clean / "labels-vk.tar").write_bytes(_tar(vk_members))

    corrupt = tmp_path_factory.mktemp("corrupt")
    good_gzip = _ppm_gz(photos["im0001"])
    bad_photos = dict(photo_members)
    bad_photos["im0003.ppm.gz"] = good_gzip[:len(good_gzip) // 2]  # truncated gzip stream
    bad_labels = dict(ah_members)
    ok, ppm = cv2.imencode(".ppm", labels["im0001"])
    bad_labels["im0004.ah.ppm.gz"] = gzip.compress(ppm.tobytes()[:-50])  # truncated pixels
    bad_labels["README.txt"] = b"not an image"
    (corrupt / "stare-images.tar").write_bytes(_tar(bad_photos))
    (corrupt / "labels-ah.tar").write_bytes(_tar(bad_labels))
    return {"clean": clean, "corrupt": corrupt, "photos": photos, "labels": labels,
            "photo_members": photo_members}


def test_clean_mirror_gives_stare_layout_and_exit_0(sources, tmp_path, caplog):
    out = tmp_path / "stare"
    with caplog.at_level(logging.WARNING):
        status = ds_cli.main(["--out_dir", str(out), "--url_base", sources["clean"].as_uri(),
                              "--with_vk", "--no-progress"])
    assert status == 0
    assert sorted(p.name for p in (out / "stare-images").iterdir()) == [
        "im0001.ppm.gz", "im0002.ppm.gz"]
    assert sorted(p.name for p in (out / "labels-ah").iterdir()) == [
        "im0001.ah.ppm.gz", "im0002.ah.ppm.gz", "im0324.ah.ppm.gz"]
    assert len(list((out / "labels-vk").iterdir())) == 3
    for image_id, photo in sources["photos"].items():
        np.testing.assert_array_equal(_decode(out / "stare-images" / f"{image_id}.ppm.gz"), photo)
    for image_id, label in sources["labels"].items():
        np.testing.assert_array_equal(_decode(out / "labels-vk" / f"{image_id}.vk.ppm.gz"),
                                      255 - label)
    # The unpaired label is kept and only warned about, per label folder.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("labels-ah/im0324.ah.ppm.gz" in w for w in warnings)
    assert any("labels-vk/im0324.vk.ppm.gz" in w for w in warnings)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert (out / "archives" / "stare-images.tar").read_bytes() == (
        sources["clean"] / "stare-images.tar").read_bytes()


def test_unpaired_labels_are_listed(sources, tmp_path):
    report = ds.download_stare(tmp_path, sources["clean"].as_uri(), progress=False)
    assert report.ok
    assert report.unpaired_labels == ["labels-ah/im0324.ah.ppm.gz"]
    assert not (tmp_path / "labels-vk").exists()  # without --with_vk


def test_corrupt_members_are_left_out_and_exit_1(sources, tmp_path, caplog):
    out = tmp_path / "stare"
    (out / "stare-images").mkdir(parents=True)
    (out / "stare-images" / "im0003.ppm.gz").write_bytes(b"stale copy from an older run")
    with caplog.at_level(logging.ERROR):
        status = ds_cli.main(["--out_dir", str(out), "--url_base", sources["corrupt"].as_uri(),
                              "--no-progress"])
    assert status == 1
    assert sorted(p.name for p in (out / "stare-images").iterdir()) == [
        "im0001.ppm.gz", "im0002.ppm.gz"]
    assert sorted(p.name for p in (out / "labels-ah").iterdir()) == [
        "im0001.ah.ppm.gz", "im0002.ah.ppm.gz", "im0324.ah.ppm.gz"]
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "im0003.ppm.gz" in errors and "gzip" in errors
    assert "im0004.ah.ppm.gz" in errors
    np.testing.assert_array_equal(_decode(out / "stare-images" / "im0001.ppm.gz"),
                                  sources["photos"]["im0001"])


def test_report_names_corrupt_and_skipped_members(sources, tmp_path):
    report = ds.download_stare(tmp_path, sources["corrupt"].as_uri(), progress=False)
    by_folder = {a.folder: a for a in report.archives}
    assert not report.ok
    assert list(by_folder["stare-images"].corrupt) == ["im0003.ppm.gz"]
    assert list(by_folder["labels-ah"].corrupt) == ["im0004.ah.ppm.gz"]
    assert "truncated P6 data" in by_folder["labels-ah"].corrupt["im0004.ah.ppm.gz"]
    assert "gzip" in by_folder["stare-images"].corrupt["im0003.ppm.gz"]
    assert by_folder["labels-ah"].skipped == ["README.txt"]


def test_file_resume_reads_only_the_missing_tail(sources, tmp_path):
    source = (sources["clean"] / "stare-images.tar").read_bytes()
    dest = tmp_path / "stare-images.tar"
    # A marked prefix: if the download restarted, the marks would be overwritten.
    dest.with_name(dest.name + ".part").write_bytes(b"\xab" * 1000)
    ds.fetch((sources["clean"] / "stare-images.tar").as_uri(), dest, progress=False)
    assert dest.read_bytes() == b"\xab" * 1000 + source[1000:]
    assert not dest.with_name(dest.name + ".part").exists()


def test_part_longer_than_source_restarts(sources, tmp_path):
    source = (sources["clean"] / "labels-ah.tar").read_bytes()
    dest = tmp_path / "labels-ah.tar"
    dest.with_name(dest.name + ".part").write_bytes(b"x" * (len(source) + 10))
    ds.fetch((sources["clean"] / "labels-ah.tar").as_uri(), dest, progress=False)
    assert dest.read_bytes() == source


def test_resumed_download_gives_the_layout(sources, tmp_path):
    source = (sources["clean"] / "stare-images.tar").read_bytes()
    (tmp_path / "archives").mkdir()
    (tmp_path / "archives" / "stare-images.tar.part").write_bytes(source[:777])
    assert ds_cli.main(["--out_dir", str(tmp_path), "--url_base", sources["clean"].as_uri(),
                        "--no-progress"]) == 0
    np.testing.assert_array_equal(_decode(tmp_path / "stare-images" / "im0002.ppm.gz"),
                                  sources["photos"]["im0002"])


def test_rerun_uses_kept_archives_and_no_keep_removes_them(sources, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("stare-images.tar", "labels-ah.tar"):
        (mirror / name).write_bytes((sources["clean"] / name).read_bytes())
    out = tmp_path / "stare"
    assert ds_cli.main(["--out_dir", str(out), "--url_base", mirror.as_uri(), "--no-progress"]) == 0
    for name in ("stare-images.tar", "labels-ah.tar"):
        (mirror / name).unlink()  # the mirror is gone: a rerun must use the kept archives
    assert ds_cli.main(["--out_dir", str(out), "--url_base", mirror.as_uri(), "--no-progress",
                        "--no-keep_archives"]) == 0
    assert not list((out / "archives").glob("*.tar"))
    assert len(list((out / "stare-images").iterdir())) == 2


def test_missing_archive_names_the_url_and_fails(sources, tmp_path, caplog):
    empty = tmp_path / "empty"
    empty.mkdir()
    with caplog.at_level(logging.ERROR):
        status = ds_cli.main(["--out_dir", str(tmp_path / "out"), "--url_base", empty.as_uri(),
                              "--no-progress"])
    assert status == 1
    assert (empty / "stare-images.tar").as_uri() in caplog.text


def test_truncated_archive_is_reported_and_dropped(sources, tmp_path, caplog):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    whole = (sources["clean"] / "stare-images.tar").read_bytes()
    (mirror / "stare-images.tar").write_bytes(whole[:700])  # ends inside the first member
    (mirror / "labels-ah.tar").write_bytes((sources["clean"] / "labels-ah.tar").read_bytes())
    out = tmp_path / "out"
    with caplog.at_level(logging.ERROR):
        status = ds_cli.main(["--out_dir", str(out), "--url_base", mirror.as_uri(),
                              "--no-progress"])
    assert status == 1
    assert "stare-images.tar" in caplog.text and "truncated" in caplog.text
    assert not (out / "archives" / "stare-images.tar").exists()  # a rerun fetches it again
    assert len(list((out / "labels-ah").iterdir())) == 3  # the other archive is still used


class _RangeServer(http.server.ThreadingHTTPServer):
    """Serves `files` with Range support; records request headers; can misbehave on purpose."""

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), _RangeHandler)
        self.files = files
        self.requests = []  # (path, Range header, bytes sent)
        self.ignore_range = False
        self.drop_first_after = None  # close the first response after this many bytes


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        data = server.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404, "Not Found")
            return
        requested = self.headers.get("Range")
        start = 0
        if requested and not server.ignore_range:
            start = int(requested.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drop_first_after is not None:
            body = body[:server.drop_first_after]
            server.drop_first_after = None
            self.close_connection = True
        server.requests.append((self.path, requested, len(body)))  # before the client sees it
        self.wfile.write(body)


@pytest.fixture
def http_server(sources):
    files = {name: (sources["clean"] / name).read_bytes()
             for name in ("stare-images.tar", "labels-ah.tar")}
    server = _RangeServer(files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server, name=""):
    return f"http://127.0.0.1:{server.server_address[1]}/{name}"


def test_http_resume_sends_range_and_fetches_only_the_tail(http_server, tmp_path):
    source = http_server.files["stare-images.tar"]
    dest = tmp_path / "stare-images.tar"
    dest.with_name(dest.name + ".part").write_bytes(source[:1500])
    ds.fetch(_url(http_server, "stare-images.tar"), dest, progress=False)
    assert dest.read_bytes() == source
    assert http_server.requests == [("/stare-images.tar", "bytes=1500-", len(source) - 1500)]


def test_http_server_ignoring_range_restarts_cleanly(http_server, tmp_path):
    http_server.ignore_range = True
    source = http_server.files["stare-images.tar"]
    dest = tmp_path / "stare-images.tar"
    dest.with_name(dest.name + ".part").write_bytes(b"\xab" * 1500)
    ds.fetch(_url(http_server, "stare-images.tar"), dest, progress=False)
    assert dest.read_bytes() == source


def test_http_dropped_connection_is_resumed(http_server, tmp_path, monkeypatch):
    monkeypatch.setattr(ds.time, "sleep", lambda seconds: None)
    http_server.drop_first_after = 2000
    source = http_server.files["labels-ah.tar"]
    dest = tmp_path / "labels-ah.tar"
    ds.fetch(_url(http_server, "labels-ah.tar"), dest, progress=False)
    assert dest.read_bytes() == source
    assert [r[1] for r in http_server.requests] == [None, "bytes=2000-"]


def test_http_end_to_end_and_404(http_server, tmp_path, caplog):
    assert ds_cli.main(["--out_dir", str(tmp_path), "--url_base", _url(http_server),
                        "--no-progress"]) == 0
    assert len(list((tmp_path / "stare-images").iterdir())) == 2
    with caplog.at_level(logging.ERROR):
        assert ds_cli.main(["--out_dir", str(tmp_path / "vk"), "--url_base", _url(http_server),
                            "--with_vk", "--no-progress"]) == 1
    assert "labels-vk.tar: HTTP 404" in caplog.text


def test_help_states_the_corrupt_member_policy(capsys):
    assert ds_cli.main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "A corrupt member is NOT written" in text and "exits with status 1" in text


def test_output_dir_and_the_old_spellings(sources, tmp_path, capsys):
    uri = sources["clean"].as_uri()
    assert ds_cli.main(["--output_dir", str(tmp_path / "a"), "--url_base", uri,
                        "--noprogress"]) == 0
    assert (tmp_path / "a" / "stare-images" / "im0001.ppm.gz").exists()
    assert "spelled" not in capsys.readouterr().err
    assert ds_cli.main(["--out_dir", str(tmp_path / "b"), "--url_base", uri, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "--out_dir is spelled --output_dir" in err
    assert "--no-progress is spelled --noprogress" in err
    assert (tmp_path / "b" / "stare-images" / "im0001.ppm.gz").exists()


@pytest.mark.parametrize("valid_image", [True, False])
def test_member_with_a_300_character_name_is_skipped_and_the_rest_extracted(
        sources, tmp_path, caplog, valid_image):
    long_name = "x" * 293 + ".ppm.gz"  # 300 characters: longer than any file name may be
    members = dict(sources["photo_members"])
    members = {"im0001.ppm.gz": members["im0001.ppm.gz"],
               long_name: members["im0001.ppm.gz"] if valid_image else b"not gzip",
               "im0002.ppm.gz": members["im0002.ppm.gz"]}
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "stare-images.tar").write_bytes(_tar(members))
    (mirror / "labels-ah.tar").write_bytes((sources["clean"] / "labels-ah.tar").read_bytes())
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        status = ds_cli.main(["--output_dir", str(out), "--url_base", mirror.as_uri(),
                              "--no-progress"])
    assert status == 0
    assert sorted(p.name for p in (out / "stare-images").iterdir()) == [
        "im0001.ppm.gz", "im0002.ppm.gz"]
    np.testing.assert_array_equal(_decode(out / "stare-images" / "im0002.ppm.gz"),
                                  sources["photos"]["im0002"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("xxxx" in w and "name" in w and "skipped" in w for w in warnings), warnings
    assert (out / "archives" / "stare-images.tar").exists()  # the archive was not dropped


def test_a_remote_output_dir_is_refused_in_one_line_and_nothing_is_written(
        sources, tmp_path, monkeypatch, capsys):
    """The archives are resumed in place, so the output is a local folder; a URL used to
    become a local folder named 'ram:' (pathlib folds the '//')."""
    monkeypatch.chdir(tmp_path)
    status = ds_cli.main(["--output_dir", "ram://stare_out", "--url_base",
                          sources["clean"].as_uri(), "--noprogress"])
    assert status == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "ram://stare_out" in errors[0] and "local folder" in errors[0]
    assert list(tmp_path.iterdir()) == []

"""Fetches the official STARE archives and unpacks them into the STARE layout
(tiled_vessel_seg/datasets.py: stare), verifying every member; the library behind
vessel-download-stare (stare_download_cli.py).

    OUT/archives/stare-images.tar      the downloaded archives (kept unless keep_archives=False)
    OUT/stare-images/imNNNN.ppm.gz     photographs
    OUT/labels-ah/imNNNN.ah.ppm.gz     Adam Hoover's vessel maps
    OUT/labels-vk/imNNNN.vk.ppm.gz     Valentina Kouznetsova's vessel maps (with_vk=True)

Downloads are resumable: bytes go to `NAME.part` and a rerun continues it with an HTTP
Range request (a file:// source is read from the same offset). A complete NAME.tar is not
downloaded again (overwrite=True forces it).

Verification: every archive member is gunzipped and decoded as an image before it is
written. A corrupt member is NOT written (an older copy of it is removed) and is listed
in the report; the good members are still written. Labels without a photograph (the
official labels-ah.tar holds im0324.ah.ppm.gz, whose photo is not in stare-images.tar),
duplicate file names (the first good member is kept) and link members (never followed)
are warnings. The output folder is a local one (archives are resumed in place).

Ground floor: imports no stage.
"""
from __future__ import annotations

import dataclasses
import http.client
import logging
import os
import socket
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from tiled_vessel_seg.imaging import ImageReadError, decode_image_bytes

DEFAULT_URL_BASE = "https://cecas.clemson.edu/~ahoover/stare/probing/"
# folder in the STARE layout -> (archive file name, suffix of its member files)
ARCHIVES = {
    "stare-images": ("stare-images.tar", ".ppm.gz"),
    "labels-ah": ("labels-ah.tar", ".ah.ppm.gz"),
    "labels-vk": ("labels-vk.tar", ".vk.ppm.gz"),
}
PHOTO_FOLDER = "stare-images"
LABEL_FOLDERS = ("labels-ah", "labels-vk")
CHUNK_BYTES = 1 << 16

log = logging.getLogger("vessel-download-stare")


class DownloadError(RuntimeError):
    """A download that failed for good; the message names the URL and the reason."""


class OutputWriteError(DownloadError):
    """A verified member could not be written (full or read-only output folder)."""


class _Incomplete(Exception):
    """The connection ended before Content-Length bytes arrived (retried, resumed)."""


@dataclasses.dataclass
class ArchiveReport:
    """What happened to one archive: downloaded bytes, files written, members rejected."""
    folder: str
    url: str
    fetched_bytes: int = 0
    written: list[str] = dataclasses.field(default_factory=list)
    corrupt: dict[str, str] = dataclasses.field(default_factory=dict)  # member -> reason
    skipped: list[str] = dataclasses.field(default_factory=list)  # not a STARE image file
    # member -> the member whose file was kept under the same base name
    duplicates: dict[str, str] = dataclasses.field(default_factory=dict)
    links: list[str] = dataclasses.field(default_factory=list)  # link/special members
    # member -> why its name cannot be a file name here (too long); skipped, not an error
    bad_names: dict[str, str] = dataclasses.field(default_factory=dict)
    error: Optional[str] = None  # download or archive failure

    @property
    def ok(self) -> bool:
        return self.error is None and not self.corrupt


@dataclasses.dataclass
class DownloadReport:
    archives: list[ArchiveReport]
    unpaired_labels: list[str]  # "labels-ah/im0324.ah.ppm.gz" with no photograph

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.archives)


def archive_url(url_base: str, archive_name: str) -> str:
    """The URL of `archive_name` in the folder `url_base` (a trailing '/' is optional)."""
    return url_base.rstrip("/") + "/" + archive_name


def _open_at(url: str, offset: int, timeout: float):
    """Opens `url` from byte `offset`: (stream, start, total); start is 0 or offset.

    start == 0 means the source ignored the offset and sends the whole file. total is the
    whole file's size, None when the server does not say.
    """
    if urllib.parse.urlsplit(url).scheme == "file":
        path = urllib.request.url2pathname(urllib.parse.urlsplit(url).path)
        try:
            total = os.path.getsize(path)
            stream = open(path, "rb")
        except OSError as e:
            raise DownloadError(f"{url}: cannot read: {e.strerror or e}") from None
        start = offset if 0 < offset <= total else 0
        stream.seek(start)
        return stream, start, total
    request = urllib.request.Request(url, headers={"User-Agent": "vessel-download-stare"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset > 0:  # the .part is not a prefix of this file: restart
            return _open_at(url, 0, timeout)
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status == 206:
        content_range = response.headers.get("Content-Range", "")  # bytes a-b/total
        first = content_range.split(" ")[-1].split("-")[0]
        if first != str(offset):
            response.close()
            return _open_at(url, 0, timeout)
        size = content_range.rsplit("/", 1)[-1]
        total = int(size) if size.isdigit() else (offset + length if length is not None else None)
        return response, offset, total
    return response, 0, length


def fetch(url: str, dest: Path, *, timeout: float = 60.0, retries: int = 3,
          progress: bool = True) -> int:
    """Downloads `url` to `dest`, resuming `dest.part` if present; returns bytes fetched.

    An existing `dest` is taken as complete and not fetched again. Interrupted transfers
    are retried `retries` times, each resuming where the last stopped.
    """
    if dest.exists():
        return 0
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetched = 0
    for attempt in range(retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        try:
            stream, start, total = _open_at(url, offset, timeout)
            with stream, open(part, "ab" if start else "wb") as out, tqdm(
                    total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=dest.name, disable=not progress, leave=False) as bar:
                received = start
                while chunk := stream.read(CHUNK_BYTES):
                    out.write(chunk)
                    received += len(chunk)
                    fetched += len(chunk)
                    bar.update(len(chunk))
            if total is not None and received != total:
                raise _Incomplete(f"got {received} of {total} bytes")
            os.replace(part, dest)
            return fetched
        except (_Incomplete, urllib.error.URLError, http.client.HTTPException, socket.timeout,
                ConnectionError) as e:
            reason = getattr(e, "reason", e)
            if attempt == retries:
                raise DownloadError(f"{url}: {reason} (partial data kept in {part}; "
                                    "rerun to resume)") from None
            log.warning("%s: %s; resuming (attempt %d of %d)", url, reason, attempt + 2,
                        retries + 1)
            time.sleep(min(2 ** attempt, 10))
    raise AssertionError("unreachable")


def verify_member(name: str, data: bytes) -> None:
    """Raises ImageReadError unless `data` is a gzipped image that decodes."""
    decode_image_bytes(name, data)


def _name_problem(folder: Path, name: str) -> Optional[str]:
    """Why `name` (plus our '.tmp' suffix) cannot be a file in `folder`, or None."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    length = len(os.fsencode(name + ".tmp"))
    if length > name_max:
        return (f"file name too long ({len(name)} characters; this file system allows "
                f"{name_max} bytes)")
    return None


def _short(name: str, limit: int = 60) -> str:
    """`name` cut to `limit` characters for a log line."""
    return name if len(name) <= limit else name[:limit - 3] + "..."


def extract_archive(tar_path: Path, folder: Path, suffix: str, report: ArchiveReport,
                    progress: bool = True) -> None:
    """Writes each member of `tar_path` ending in `suffix` to `folder`, after verifying it.

    Members are written by base name (paths inside the archive are ignored, so nothing
    lands outside `folder`). Corrupt members go to report.corrupt and are not written;
    other files go to report.skipped; symbolic/hard links and special members are never
    followed and go to report.links. When two members share a base name, the first one
    that decodes is kept and every later one goes to report.duplicates (a corrupt later
    copy never removes the good earlier one). report.written lists each file once.
    A member whose name cannot be a file name here (too long) goes to report.bad_names
    and the rest of the archive is still extracted.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        archive = tarfile.open(tar_path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DownloadError(f"{tar_path}: not a readable tar archive ({e})") from None
    kept: dict[str, str] = {}  # base name -> member written under it by this extraction
    with archive, tqdm(desc=f"verify {folder.name}", unit="file", disable=not progress,
                       leave=False) as bar:
        try:
            members = archive.getmembers()  # reads the headers only: gives the bar a total
            bar.total = sum(m.isfile() for m in members)
            for member in members:
                if member.isdir():
                    continue
                if not member.isfile():
                    report.links.append(member.name)
                    continue
                name = os.path.basename(member.name)
                bar.update(1)
                if not name.endswith(suffix):
                    report.skipped.append(member.name)
                    continue
                problem = _name_problem(folder, name)
                if problem:
                    report.bad_names[member.name] = problem
                    continue
                if name in kept:
                    report.duplicates[member.name] = kept[name]
                    continue
                data = archive.extractfile(member).read()
                try:
                    verify_member(name, data)
                except ImageReadError as e:
                    report.corrupt[member.name] = e.reason
                    (folder / name).unlink(missing_ok=True)  # never keep an older bad copy
                    continue
                tmp = folder / (name + ".tmp")
                try:
                    tmp.write_bytes(data)
                    os.replace(tmp, folder / name)
                except OSError as e:
                    raise OutputWriteError(f"{folder / name}: cannot write: "
                                        f"{e.strerror or e}") from None
                finally:
                    tmp.unlink(missing_ok=True)
                kept[name] = member.name
                report.written.append(name)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DownloadError(f"{tar_path}: archive is truncated or corrupt ({e})") from None


def unpaired_labels(out_dir: Path) -> list[str]:
    """Label files in OUT/labels-*/ whose photograph is missing from OUT/stare-images/."""
    photos = {p.name[:-len(".ppm.gz")] for p in (out_dir / PHOTO_FOLDER).glob("*.ppm.gz")}
    unpaired = []
    for folder in LABEL_FOLDERS:
        suffix = ARCHIVES[folder][1]
        for label in sorted((out_dir / folder).glob("*" + suffix)):
            if label.name[:-len(suffix)] not in photos:
                unpaired.append(f"{folder}/{label.name}")
    return unpaired


def download_stare(out_dir: str | os.PathLike, url_base: str = DEFAULT_URL_BASE, *,
                   with_vk: bool = False, keep_archives: bool = True, overwrite: bool = False,
                   timeout: float = 60.0, retries: int = 3,
                   progress: bool = True) -> DownloadReport:
    """Downloads, verifies and extracts the STARE archives into `out_dir`.

    One failing archive does not stop the others; see DownloadReport.ok. An output
    folder that cannot be written raises OutputWriteError (naming the path).
    """
    out_dir = Path(out_dir)
    archive_dir = out_dir / "archives"
    folders = ["stare-images", "labels-ah"] + (["labels-vk"] if with_vk else [])
    reports = []
    for folder in folders:
        archive_name, suffix = ARCHIVES[folder]
        report = ArchiveReport(folder=folder, url=archive_url(url_base, archive_name))
        reports.append(report)
        tar_path = archive_dir / archive_name
        try:
            if overwrite:
                tar_path.unlink(missing_ok=True)
                tar_path.with_name(tar_path.name + ".part").unlink(missing_ok=True)
            try:
                report.fetched_bytes = fetch(report.url, tar_path, timeout=timeout,
                                             retries=retries, progress=progress)
            except OSError as e:  # network errors are retried inside fetch: this is local
                raise OutputWriteError(f"{e.filename or archive_dir}: cannot write: "
                                       f"{e.strerror or e}") from None
            try:
                extract_archive(tar_path, out_dir / folder, suffix, report, progress)
            except OutputWriteError:
                raise  # the archive is fine: keep it for the rerun
            except DownloadError:
                tar_path.unlink(missing_ok=True)  # a rerun must fetch it again
                raise
        except OutputWriteError:
            raise  # a full or read-only output folder fails every archive alike: stop
        except DownloadError as e:
            report.error = str(e)
            log.error("%s", e)
            continue
        for member, reason in sorted(report.corrupt.items()):
            log.error("%s: corrupt member %s left out: %s", tar_path, member, reason)
        for member in report.skipped:
            log.warning("%s: %s is not a %s file; skipped", tar_path, member, suffix)
        for member in report.links:
            log.warning("%s: %s is a link or special file, not a regular file; skipped",
                        tar_path, member)
        for member, problem in report.bad_names.items():
            log.warning("%s: member %s: %s; skipped", tar_path, _short(member), problem)
        for member, first in report.duplicates.items():
            log.warning("%s: %s has the same file name as %s; kept the first, ignored this one",
                        tar_path, member, first)
        log.info("%s: %d files in %s (%d corrupt, %d duplicate names, %d links skipped)",
                 archive_name, len(report.written), out_dir / folder, len(report.corrupt),
                 len(report.duplicates), len(report.links))
        if not keep_archives and report.ok:
            tar_path.unlink()
    unpaired = unpaired_labels(out_dir)
    for label in unpaired:
        log.warning("unpaired label %s: no photograph %s/%s.ppm.gz", label, PHOTO_FOLDER,
                    label.split("/")[1].split(".")[0])
    return DownloadReport(archives=reports, unpaired_labels=unpaired)

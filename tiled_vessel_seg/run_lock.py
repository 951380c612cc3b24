"""One run owns an output folder: a lock file held with flock for the run's lifetime.

    with run_lock.owned(output_dir, "vessel-preprocess"):
        ...  # write into output_dir

`owned` creates OUT/.vessel.lock and takes an exclusive, non-blocking `flock` on it. A
second run into the same folder fails at once with `FolderLockedError`, whose one-line
message names the folder and the run holding it (tool, pid, host, start time, read from
the lock file). The lock is the kernel's: a run that is killed (even by SIGKILL) releases
it with its process, so a later run takes the folder over without a stale-lock step; the
file it leaves behind holds no lock and is reused. On a clean exit the file is removed.

Remote folders (gs://) have no lock primitive: `owned` does nothing there, and two jobs
writing one bucket folder are not detected. On network file systems flock is as good as
the server's locking (NFSv4: yes).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Iterator

from tiled_vessel_seg import storage

LOCK_FILE = ".vessel.lock"


class FolderLockedError(storage.StorageError):
    """Another run is writing the folder (exit 2 in the tools, like any StorageError)."""


def lock_path(folder: str) -> str:
    return os.path.join(folder, LOCK_FILE)


def _holder(path: str) -> str:
    """'vessel-preprocess, pid 123 on host h, since 2026-...' from the lock file, or ''."""
    try:
        with open(path, encoding="utf-8") as f:
            owner = json.loads(f.read() or "{}")
        return (f"{owner.get('tool', 'a run')}, pid {owner.get('pid')} on "
                f"{owner.get('host')}, since {owner.get('started')}")
    except (OSError, ValueError, AttributeError):
        return ""


@contextlib.contextmanager
def owned(folder: str, tool: str) -> Iterator[None]:
    """Holds the folder's lock (creating the folder) while the block runs.

    Raises FolderLockedError when another process holds it, StorageError when the folder
    cannot be created or the lock file written.
    """
    folder = str(folder)
    if storage.is_remote(folder):
        yield
        return
    storage.makedirs(folder)
    path = lock_path(folder)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise storage.StorageError(path, f"cannot create the lock file: {e.strerror}",
                                       e.errno) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise storage.StorageError(path, f"cannot lock: {e.strerror}", e.errno) from None
            holder = _holder(path)
            raise FolderLockedError(
                folder, f"another run is writing this folder ({holder or 'see ' + path}); "
                        f"wait for it to end or use another folder", errno.EBUSY) from None
        # The file we locked may have been removed by its last owner between our open and
        # our lock: then the lock guards nothing, and we start again on the new file.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        owner = {"tool": tool, "pid": os.getpid(), "host": socket.gethostname(),
                 "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(owner).encode("utf-8"))
        yield
    finally:
        try:
            os.remove(path)  # while still holding the lock (see the samestat check above)
        except OSError:
            pass
        os.close(fd)

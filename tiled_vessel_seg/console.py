"""What the tools print on stderr: our own lines and real warnings, not library chatter.

Without --verbose a console tool (cli_app) calls `quiet_logging()`: Python and absl
logging show WARNING and above, and a filter drops the warnings libraries print on every
run though nothing is wrong (NOISE: Beam's "apitools not found", its pipeline-options
dump and worker start-up lines, TensorFlow's cuFFT/TensorRT start-up lines). A Beam job
run on the DirectRunner in multi_processing mode starts worker processes that print
their own start-up lines straight to the inherited stderr; `quiet_subprocesses()` runs a
block with file descriptor 2 going through the same filter, so those lines go too.
`--verbose` turns all of it off (everything is printed, at DEBUG).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import sys
import threading
from typing import Iterator

# Lines that are noise whatever their level: printed on every run, nothing to act on.
NOISE = re.compile("|".join([
    r"apitools not found",
    r"bigquery_storage_v1|ReadFromBigQuery",
    r"Converting string literal type hint",
    r"WriteImpl min_shards undef",
    r"Discarding unparseable args",
    r"No semi_persistent_directory found",
    r"semi_persistent_directory: None",
    r"Pipeline_options: \{",
    r"Logging handler created",
    r"starting (?:control|data|state|logging) server on port",
    r"Unable to register cu(?:FFT|DNN|BLAS) factory",
    r"Could not find cuda drivers",
    r"Could not find TensorRT",
    r"cpu_feature_guard|To enable the following instructions",
    r"oneDNN custom operations are on",
]))
# A log line below WARNING, in the formats that reach stderr: absl ("I1202 11:37:51..."),
# logging.basicConfig ("INFO:name:"), TensorFlow's C++ ("2026-12-02 11:36:33.388: I "),
# and Beam's relay of a worker's record ("Worker: severity: INFO").
LOW_LEVEL = re.compile(r"^(?:[ID]\d{4} \d\d:\d\d:\d\d\.\d+ |(?:INFO|DEBUG):[\w.]*:|"
                       r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [ID] )|severity: (?:INFO|DEBUG) ")


def is_noise(line: str) -> bool:
    """True for a stderr line that is library chatter (NOISE or below WARNING)."""
    return bool(NOISE.search(line) or LOW_LEVEL.search(line))


class NoiseFilter(logging.Filter):
    """Drops log records whose message is NOISE (the level is left to the handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # pylint: disable=broad-except  # a malformed record: keep it
            return True
        return not NOISE.search(message)


_FILTER = NoiseFilter()


def quiet_logging() -> None:
    """Python/absl logging at WARNING, with NOISE dropped (idempotent)."""
    root = logging.getLogger()
    root.setLevel(logging.WARNING)
    for name in ("tensorflow", "apache_beam", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if _FILTER not in root.filters:
        root.addFilter(_FILTER)
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
        handler = absl_logging.get_absl_handler()
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    except ImportError:  # absl is a dependency; keep this module importable without it
        pass
    for handler in root.handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    # Records of library loggers that do not reach the root's filter (their own handlers)
    for name in ("apache_beam", "tensorflow"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def is_quiet() -> bool:
    """True unless --verbose (cli_app sets the root logger to DEBUG for it)."""
    return logging.getLogger().getEffectiveLevel() > logging.DEBUG


@contextlib.contextmanager
def quiet_subprocesses(enabled: bool | None = None) -> Iterator[None]:
    """Runs the block with file descriptor 2 (stderr, inherited by child processes)
    piped through `is_noise`: lines that are noise are dropped, the rest reach the real
    stderr unchanged (a partial line, e.g. a progress bar, after at most 0.2 s).

    enabled: None = `is_quiet()`. Does nothing where stderr has no file descriptor.
    """
    if enabled is None:
        enabled = is_quiet()
    try:
        original = os.dup(2) if enabled else None
    except OSError:
        original = None
    if original is None:
        yield
        return
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([read_end], [], [], 0.2)
            chunk = os.read(read_end, 65536) if ready else None
            if chunk == b"":  # every writer closed: the block and its children ended
                break
            if chunk is None:  # quiet for 0.2 s: hand on a partial line as it is
                if pending and not is_noise(pending.decode("utf-8", "replace")):
                    os.write(original, pending)
                    pending = b""
                continue
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = [line + b"\n" for line in lines
                   if not is_noise(line.decode("utf-8", "replace"))]
            if out:
                os.write(original, b"".join(out))
        if pending and not is_noise(pending.decode("utf-8", "replace")):
            os.write(original, pending)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # our end of the pipe closes; children may still hold theirs
        thread.join(timeout=5.0)
        if not thread.is_alive():  # else a lingering child keeps it; it ends with it
            os.close(original)
            os.close(read_end)

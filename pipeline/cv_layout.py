"""Where vessel-cv puts a fold's files: the one definition that vessel-cv (pipeline/cv.py, a
CLI module) writes and vessel-cv-compare (pipeline/compare.py) reads.

    W/fold_<f>/fold.json                 the fold's record (test_ids, threshold, times)
    W/fold_<f>/segment/[<dataset>/]      the held-out photos' masks and metrics
    W/cv_metrics.csv, W/cv_report.md     rows and tables over every fold; the dataset
                                         label ALL covers every held-out image
"""
from __future__ import annotations

import re
from typing import Optional

from tiled_vessel_seg import storage

FOLD_FILE = "fold.json"
SEGMENT_DIR = "segment"
ALL = "all"
_FOLD_DIR = re.compile(r"^fold_(\d+)$")


def fold_dir(workdir: str, index: int) -> str:
    """W/fold_<index>."""
    return storage.join(workdir, f"fold_{index}")


def fold_index(path: str) -> Optional[int]:
    """The fold number of a W/fold_<f> path (its last component), None for other names."""
    match = _FOLD_DIR.match(storage.basename(path))
    return int(match.group(1)) if match else None

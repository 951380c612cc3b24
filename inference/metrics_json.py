"""metrics.json: a segmentation run's per-image metrics and their summary, for programs.

Written beside metrics.csv (the same per-image figures), it adds what a table leaves out:

    {
      "threshold": 0.5,                  vessel = probability > threshold
      "fov_source": "computed" | "files",  how the fov_* figures' field of view was found
      "model": {...},                    the model used (its dir and model_info fields)
      "columns": ["dice", ..., "fov_auc"],
      "images": [{"image": "im0001", "dice": ..., "fov_auc": ..., "fov": path | "computed",
                  "counts": {"tp", "fp", "fn", "tn"}, "fov_counts": {...},
                  "used_in_training": "train" | "valid"   only for a photograph the model
                 }, ...],                                 was trained or validated on
      "summary": {"images": N,
                  "mean": {column: value}, "std": {column: value},   over images, NaN ignored
                  "pooled": {"dice", "iou", "sensitivity", "specificity", "accuracy",
                             "fov_dice", ...},                         over all pixels
                  "used_in_training": {"train": [ids], "valid": [ids]}  only when any
                  }
    }

"pooled" sums the pixel counts of all images before dividing, the "global" F1 that papers
report beside the per-image mean. Pooled AUC would need every pixel's probability at once
and is not given. Undefined values (NaN) are written as null.
"""
from __future__ import annotations

import json
import math
from typing import Any, Optional, Sequence

from tiled_vessel_seg import storage
from tiled_vessel_seg.inference import metrics

METRICS_JSON = "metrics.json"
COUNTS_KEY = "counts"
FOV_COUNTS_KEY = "fov_counts"
# "train" / "valid" on a row whose photograph the model saw (model_info.json data_ids)
USED_IN_TRAINING_KEY = "used_in_training"


def _clean(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python numbers, recursively."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pooled_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """Binary metrics of the summed pixel counts of all rows, whole image and inside the
    FOV ("fov_" prefix). rows: per-image dicts holding COUNTS_KEY and FOV_COUNTS_KEY."""
    out: dict[str, float] = {}
    for key, prefix in ((COUNTS_KEY, ""), (FOV_COUNTS_KEY, "fov_")):
        if not rows or any(key not in r for r in rows):
            continue
        totals = {n: sum(int(r[key][n]) for r in rows) for n in metrics.COUNT_NAMES}
        out.update({prefix + k: v for k, v in metrics.metrics_from_counts(**totals).items()})
    return out


def metrics_document(rows: Sequence[dict], columns: Sequence[str], *, threshold: float,
                     fov_source: str, model: Optional[dict] = None) -> dict:
    """The metrics.json content (see the module docstring) of per-image `rows`.

    rows: dicts with "image", every name of `columns` (float) and, for the pooled
      figures, COUNTS_KEY / FOV_COUNTS_KEY ({"tp", "fp", "fn", "tn"}).
    """
    stats = metrics.summarize(list(rows), columns)
    images = []
    for row in rows:
        entry = {"image": row["image"], **{c: row[c] for c in columns}}
        if "fov" in row:  # the FOV mask file used, or "computed"
            entry["fov"] = row["fov"]
        for key in (COUNTS_KEY, FOV_COUNTS_KEY):
            if key in row:
                entry[key] = {n: int(row[key][n]) for n in metrics.COUNT_NAMES}
        if row.get(USED_IN_TRAINING_KEY):
            entry[USED_IN_TRAINING_KEY] = row[USED_IN_TRAINING_KEY]
        images.append(entry)
    used: dict[str, list[str]] = {}
    for row in rows:
        if row.get(USED_IN_TRAINING_KEY):
            used.setdefault(row[USED_IN_TRAINING_KEY], []).append(row["image"])
    return _clean({
        "threshold": float(threshold),
        "fov_source": fov_source,
        "model": dict(model or {}),
        "columns": list(columns),
        "images": images,
        "summary": {"images": len(images),
                    "mean": {c: stats[c][0] for c in columns},
                    "std": {c: stats[c][1] for c in columns},
                    "pooled": pooled_metrics(rows),
                    **({USED_IN_TRAINING_KEY: used} if used else {})},
    })


def to_json(document: dict) -> str:
    return json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_metrics_json(path: str, rows: Sequence[dict], columns: Sequence[str], *,
                       threshold: float, fov_source: str, model: Optional[dict] = None) -> str:
    """Writes `metrics_document(...)` to `path` (local or gs://) atomically; returns path."""
    document = metrics_document(rows, columns, threshold=threshold, fov_source=fov_source,
                                model=model)
    return storage.write_text_atomic(path, to_json(document))


def read_metrics_json(path: str) -> dict:
    """The document written by `write_metrics_json` (null values come back as NaN in
    the per-image rows and the summary)."""
    document = json.loads(storage.read_text(path))

    def nan(d: dict) -> dict:
        return {k: (float("nan") if v is None else v) for k, v in d.items()}

    document["images"] = [nan(r) for r in document["images"]]
    summary = document["summary"]
    for key in ("mean", "std", "pooled"):
        summary[key] = nan(summary[key])
    return document

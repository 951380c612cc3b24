"""The decision threshold chosen on the validation split (`[train] select_threshold`).

After training, the best model's probabilities over every validation tile are binned
(metrics.score_histograms) and the threshold maximising F1 over those pixels
(metrics.f1_by_threshold) replaces `threshold` in model_info.json, which inference uses
by default. Validation images are already used for model selection, never for testing.
"""
from __future__ import annotations

import dataclasses
import logging

from tiled_vessel_seg import model_info as model_info_lib
from tiled_vessel_seg import model_loading, storage
from tiled_vessel_seg.trainer import metrics

_LOG = logging.getLogger("vessel-train")


def store_valid_threshold(model_dir: str, valid_dataset) -> float:
    """Chooses the F1-maximising threshold on `valid_dataset` with M/best_model.keras and
    writes it into M/model_info.json (local or remote); returns it (the stored threshold
    if no model yet)."""
    info = model_info_lib.read_model_info(model_dir)
    if not storage.exists(info.model_path(model_dir)):
        return info.threshold
    model, info = model_loading.load_model(model_dir)
    positives, negatives = metrics.score_histograms(model, valid_dataset)
    threshold, f1 = metrics.f1_by_threshold(positives, negatives)
    model_info_lib.write_model_info(model_dir, dataclasses.replace(info, threshold=threshold))
    _LOG.info("threshold %.2f maximises F1 over the validation tiles (%.4f); stored in %s",
              threshold, f1, model_info_lib.info_path(model_dir))
    return threshold

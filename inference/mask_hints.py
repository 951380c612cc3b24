"""What a segmentation run says about its own figures, beyond the numbers.

* Photographs the model was trained or validated on (model_info.json's data_ids) score
  like test photographs but are not: `training_splits` and `used_split` find them, and
  vessel-segment marks their rows (metrics.csv/json column "used_in_training").
* A (nearly) empty mask scores Dice 0 with no hint why. `empty_mask_hint` says when the
  mask is nearly empty and whether the probabilities are too: a model that has not
  learnt vessels (train longer), or one whose probabilities sit below the threshold
  (lower it; the hint names the threshold that would mark a vessel-like share).

Pure numpy; no TensorFlow.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

# Splits whose photographs the model has seen (training, or model selection).
SEEN_SPLITS = ("train", "valid")
# A mask marking fewer than this share of the pixels is "nearly empty": vessels cover
# about 8-14 % of a fundus photograph (STARE labels-ah 7-15 %, CHASE_DB1 7-11 %).
NEARLY_EMPTY_FRACTION = 0.002
TYPICAL_VESSEL_FRACTION = 0.10
# Probabilities whose top share stays below this are empty too: no threshold helps.
NO_SIGNAL = 0.02


def training_splits(data_ids: Optional[Mapping[str, Sequence[str]]]) -> dict[str, str]:
    """{image id: "train" | "valid"} of the photographs a model was trained or validated
    on, from model_info.json's data_ids ({split: [image ids]}); {} without data_ids."""
    out: dict[str, str] = {}
    for split in SEEN_SPLITS:
        for image_id in (data_ids or {}).get(split, []):
            out.setdefault(str(image_id), split)
    return out


def used_split(stem: str, splits: Mapping[str, str]) -> Optional[str]:
    """The split ("train"/"valid") the photograph named `stem` was used in, or None.
    Output stems keep dots the image ids drop ('im0001.ah' for id 'im0001'): both match."""
    return splits.get(stem) or splits.get(stem.split(".", 1)[0])


def suggested_threshold(probabilities: np.ndarray, share: float) -> float:
    """The threshold (two decimals, rounded down, at least 0.01) above which about
    `share` of the pixels lie: the (1 - share) quantile of probabilities float [H, W]."""
    value = float(np.quantile(probabilities, 1.0 - share))
    return max(0.01, math.floor(value * 100) / 100)


def empty_mask_hint(probabilities: np.ndarray, mask: np.ndarray, threshold: float,
                    truth_fraction: Optional[float] = None) -> Optional[str]:
    """A one-line hint when `mask` (bool or 0/255 [H, W]) marks fewer than
    NEARLY_EMPTY_FRACTION of the pixels; None otherwise.

    probabilities: float [H, W] in [0, 1]; threshold: the one that made the mask.
    truth_fraction: the ground truth's vessel share, if known (else TYPICAL_VESSEL_FRACTION)
      for the suggested threshold.
    """
    fraction = np.count_nonzero(mask) / max(1, mask.size)
    if fraction >= NEARLY_EMPTY_FRACTION:
        return None
    if truth_fraction is not None and truth_fraction < 2 * NEARLY_EMPTY_FRACTION:
        return None  # the truth is (nearly) empty too: nothing is wrong
    share = truth_fraction or TYPICAL_VESSEL_FRACTION
    top = float(np.quantile(probabilities, 1.0 - share))
    said = (f"mask nearly empty: {100 * fraction:.2f} % of the pixels above threshold "
            f"{threshold:g}")
    if top < NO_SIGNAL:
        return (f"{said}, and so are the probabilities (fewer than {100 * share:.0f} % of the "
                f"pixels reach {NO_SIGNAL:g}): the model has not learnt vessels; train "
                "longer (more epochs or data)")
    lower = suggested_threshold(probabilities, share)
    return (f"{said}, but the probabilities are not (the top {100 * share:.0f} % of the "
            f"pixels are above {top:.3f}): train longer, or lower the threshold "
            f"(--threshold {lower:g} marks about {100 * share:.0f} %)")

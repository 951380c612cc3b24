"""Error maps: where a predicted vessel mask agrees with the ground truth, pixel by pixel.

Colours follow bob.ip.binseg's "overlayed analysis" convention:

    true positive   white  (255, 255, 255)   vessel in both
    false positive  red    (255,   0,   0)   predicted, not in the truth
    false negative  blue   (  0,   0, 255)   in the truth, missed
    true negative   black  (  0,   0,   0)   background in both

The map has the full resolution of the masks; nothing is resized or smoothed.
"""
from __future__ import annotations

import numpy as np

TRUE_POSITIVE = (255, 255, 255)
FALSE_POSITIVE = (255, 0, 0)
FALSE_NEGATIVE = (0, 0, 255)
TRUE_NEGATIVE = (0, 0, 0)

# Indexed by 2 * predicted + truth.
_PALETTE = np.array([TRUE_NEGATIVE, FALSE_NEGATIVE, FALSE_POSITIVE, TRUE_POSITIVE], np.uint8)


def error_map(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The colour-coded agreement of two masks.

    Args:
      prediction: [H, W] predicted mask; nonzero (or True) is vessel.
      truth: [H, W] ground-truth mask; nonzero (or True) is vessel.

    Returns:
      uint8 RGB [H, W, 3] in the colours of the module docstring.

    Raises:
      ValueError: the masks are not 2-D or differ in shape.
    """
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    if prediction.ndim != 2 or prediction.shape != truth.shape:
        raise ValueError(f"error_map needs two [H, W] masks of one shape, got "
                         f"{prediction.shape} and {truth.shape}")
    code = (prediction != 0).astype(np.uint8) * 2 + (truth != 0)
    return _PALETTE[code]

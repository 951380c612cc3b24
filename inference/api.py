"""The notebook API: segment a photograph held in a numpy array.

    from tiled_vessel_seg.inference.api import segment
    probabilities, mask = segment(image)                  # the shipped "fundus_small"
    probabilities, mask = segment(image, model="runs/x/model", tta="d4")

Tiling, blending and test-time augmentation are the one TensorFlow graph of
`inference.predictor.TiledPredictor`; the predictor of a (model, settings) pair is built
once and reused by later calls.
"""
from __future__ import annotations

import functools
import warnings
from typing import Optional

import numpy as np

from tiled_vessel_seg import models
from tiled_vessel_seg.configs import schema
from tiled_vessel_seg.inference import predictor as predictor_lib
from tiled_vessel_seg.inference import tiling


@functools.lru_cache(maxsize=4)
def _predictor(model_dir: str, overlap: Optional[int], batch_size: int, blend: str,
               tta: str, input_scale: str, min_overlap: Optional[int] = None):
    # No threshold in the key: it is an argument of the traced graph, so a new
    # threshold reuses the predictor and its trace.
    return predictor_lib.load_predictor(model_dir, overlap=overlap, batch_size=batch_size,
                                        blend=blend, tta=tta, input_scale=input_scale,
                                        min_overlap=min_overlap)


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] from uint8 RGB, float RGB in [0, 1], or RGBA (alpha dropped)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"image must be RGB [height, width, 3], got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if np.issubdtype(image.dtype, np.floating):
        if image.size and (np.nanmin(image) < 0 or np.nanmax(image) > 1):
            raise ValueError("a float image must be RGB in [0, 1]")
        return np.round(np.nan_to_num(image) * 255.0).astype(np.uint8)
    raise ValueError(f"image dtype {image.dtype} is not supported: give uint8 or float in [0, 1]")


def segment(image: np.ndarray, model: Optional[str] = None, *, tta: str = "none",
            threshold: Optional[float] = None, overlap: Optional[int] = None,
            batch_size: int = 4, blend: str = "gaussian", min_overlap: Optional[int] = None,
            input_scale: str | float = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Vessel probabilities and mask of one fundus photograph.

    Args:
      image: RGB [H, W, 3], uint8 or float in [0, 1] (RGBA: alpha ignored).
      model: a shipped model name ("fundus_small", the default, or "stare_small") or a
        model directory.
      tta: none | flips | d4 test-time augmentation (d4: 8x the work, slightly better).
      threshold: vessel where probability > threshold; default model_info.json's
        (fundus_small: 0.75, the F1 optimum over its training photos, none of them a user's;
        stare_small: 0.5, fixed by its recipe; see each MODEL_CARD.md).
        Another threshold reuses the traced graph (no retracing).
      overlap, batch_size, blend: tiling (overlap default: model_info.json's).
      min_overlap: the fitted grid (inference/tiling.py fitted_grid); with neither it nor
        overlap given, vessel-segment's default, min_overlap 8.
      input_scale: "auto" (resampled so its field of view is as many px across as the
        model's training photos', and the probabilities back: inference/input_scale.py;
        a photo without a visible FOV, or a model recording no FOV diameter, as with
        "native"), "native" (photos as taken; a model trained on enlarged tiles enlarges
        in the graph), "enlarged" (already at the model's training scale), or a number:
        the photo resampled by it. A warning (warnings.warn) says when auto found no FOV
        or the photo's scale is outside the model's training zoom range.

    Returns:
      (probabilities float32 [H, W] in [0, 1], mask bool [H, W]).
    """
    if threshold is not None:
        schema.check_threshold(threshold, "segment(): threshold")
    if overlap is None and min_overlap is None:
        min_overlap = tiling.DEFAULT_MIN_OVERLAP
    predictor = _predictor(models.resolve_model(model), overlap, batch_size, blend, tta,
                           input_scale, min_overlap)
    probabilities, mask = predictor(as_rgb_uint8(image), threshold=threshold)
    decision = getattr(predictor, "last_decision", None)
    if decision is not None and not decision.fits:
        warnings.warn(f"segment(): input {decision.reason}", stacklevel=2)
    return probabilities.numpy(), mask.numpy() > 0

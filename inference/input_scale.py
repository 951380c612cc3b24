"""`--input_scale`: at what scale each photograph is segmented.

auto (the default), for a model whose model_info.json records `fov_diameter` (the FOV
diameter of its training photos, before enlargement; vessel-preprocess measures it, or
resamples every photo to it with [preprocess] fov_diameter): each photograph's own FOV
diameter d is measured (tiled_vessel_seg/fov.py) and the photo is resampled by
factor = model's / d (imaging.resample_image: bicubic up, area average down, in numpy
with OpenCV before the TensorFlow graph), segmented as a native photo (the graph
enlarges it by the model's `scale`), and the probabilities are resampled back to the
photo's own size (imaging.resample_probabilities) and thresholded there. Resampling
runs outside the graph on purpose: it is the very function the Beam job resampled the
training photos with, so a photo at inference gets the pixels training would have
given it (tf.image.resize's bicubic is another kernel).
  - A factor within SNAP (3 %) of 1 is taken as 1: one camera's FOV estimates spread by
    ~1 % (STARE 650-653 px), and resampling by 1.02 would only blur.
  - One line per image says the factor (segment.py prints decision.reason).
  - A warning when the photo's scale (its FOV / the model's = 1 / factor) is outside the
    zoom range the model was trained with ([train] augment_zoom, from model_info.json's
    config; (1/TOLERANCE, TOLERANCE) when it trained without zoom): such a photo depends
    wholly on the FOV estimate being right, and a strong reduction loses thin vessels.
  - No FOV found in the photo (a crop filled by retina): segmented as given (native),
    with one line saying so.
auto for a model without `fov_diameter` (older models, or training data of mixed scales):
  the size-based decision, as before: is the photograph at the size of the model's
  training photos ("native") or already enlarged by its scale ("enlarged")? Its size is
  compared with the training photos' sizes (`source_sizes`) and those times the scale,
  the nearer wins, measured as |log| of the ratio of pixel counts' square roots; further
  than TOLERANCE (1.5x in side) from both still segments, with a warning.
native / enlarged: as given (native: the graph enlarges by the model's scale).
A number (e.g. 0.7): every photo resampled by it, segmented native, resampled back.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import weakref
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from tiled_vessel_seg import imaging
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # vessel-segment --help validates --input_scale with this module
    import tensorflow as tf
    from tiled_vessel_seg import fov  # OpenCV

INPUT_SCALES = ("auto", "enlarged", "native")
TOLERANCE = 1.5
SNAP = 0.03
MAX_FACTOR = 16.0


@dataclasses.dataclass(frozen=True)
class ScaleDecision:
    """input_scale: the predictor used, "native" or "enlarged". factor: the photo is
    resampled by it first and the probabilities back (1.0: not resampled). fits: no
    warning. reason: the one line of the per-image log. fov_diameter: the photo's
    measured FOV diameter in px (None: not measured or none found)."""
    input_scale: str
    fits: bool
    reason: str
    factor: float = 1.0
    fov_diameter: Optional[float] = None


def parse_input_scale(value: Union[str, float, int]) -> Union[str, float]:
    """"auto" | "native" | "enlarged", or a positive factor (a number or its text) in
    (0, MAX_FACTOR]; ValueError naming the value otherwise."""
    if isinstance(value, str) and value.strip() in INPUT_SCALES:
        return value.strip()
    try:
        factor = float(value)
    except (TypeError, ValueError):
        factor = math.nan
    if isinstance(value, bool) or not 0.0 < factor <= MAX_FACTOR:
        raise ValueError(f"input_scale must be auto, native, enlarged or a resampling "
                         f"factor in (0, {MAX_FACTOR:g}], got {value!r}")
    return factor


def zoom_range(config: dict) -> tuple[float, float]:
    """The (low, high) zoom on vessel widths a model was trained with: [train]
    augment_zoom of model_info.json's config; (1/TOLERANCE, TOLERANCE) when absent or
    (1, 1) (trained without zoom)."""
    zoom = (config or {}).get("train", {}).get("augment_zoom")
    try:
        low, high = (float(z) for z in zoom)
    except (TypeError, ValueError):
        low = high = 1.0
    if not 0.0 < low <= high or (low, high) == (1.0, 1.0):
        return (1.0 / TOLERANCE, TOLERANCE)
    return (low, high)


def _size(wh: Sequence[int]) -> str:
    return f"{int(wh[0])}x{int(wh[1])}"


def _distance(width: int, height: int, ref_w: float, ref_h: float) -> float:
    return abs(0.5 * math.log((width * height) / (ref_w * ref_h)))


def decide_input_scale(width: int, height: int, scale: int,
                       source_sizes: Optional[Sequence[Sequence[int]]]) -> ScaleDecision:
    """The size-based choice for one image of `width` x `height` pixels (models without
    a recorded FOV diameter).

    Args:
      width, height: the image's size.
      scale: the model's training enlargement (model_info.json `scale`).
      source_sizes: the training photographs' (width, height) sizes before enlargement;
        empty or None for models trained before they were recorded.
    """
    if scale == 1:
        return ScaleDecision("native", True, "native (the model was trained at scale 1)")
    if not source_sizes:
        return ScaleDecision(
            "enlarged", False,
            f"enlarged (assumed: model_info.json records no training photo sizes; pass "
            f"--input_scale native for photos not yet enlarged x{scale})")
    native = min(source_sizes, key=lambda s: _distance(width, height, s[0], s[1]))
    enlarged = min(source_sizes, key=lambda s: _distance(width, height, scale * s[0],
                                                         scale * s[1]))
    d_native = _distance(width, height, native[0], native[1])
    d_enlarged = _distance(width, height, scale * enlarged[0], scale * enlarged[1])
    limit = math.log(TOLERANCE)
    if d_native <= d_enlarged:
        choice, fits = "native", d_native <= limit
        said = (f"native, x{scale} in the graph (training photos {_size(native)})")
    else:
        choice, fits = "enlarged", d_enlarged <= limit
        said = (f"enlarged (training photos {_size(enlarged)} x{scale} = "
                f"{_size((scale * enlarged[0], scale * enlarged[1]))})")
    if not fits:
        said += (f"; WARNING: {width}x{height} fits neither the training photos' size nor "
                 f"its x{scale} enlargement within x{TOLERANCE}: vessels will not have the "
                 "widths the model was trained on")
    return ScaleDecision(choice, fits, said)


def decide_fov_factor(width: int, height: int, photo_diameter: Optional[float],
                      model_diameter: float, zoom: tuple[float, float],
                      scale: int = 1) -> ScaleDecision:
    """The FOV-based choice for one photo of `width` x `height` px whose FOV is
    `photo_diameter` px across (None: none found), for a model trained on photos whose
    FOV was `model_diameter` px across, with zoom augmentation `zoom` (low, high) and
    enlargement `scale`. Always the native predictor; factor = model / photo (1.0 within
    SNAP, or when no FOV was found)."""
    graph = f", x{scale} in the graph" if scale > 1 else ""
    if photo_diameter is None:
        return ScaleDecision(
            "native", False,
            f"native{graph}: no field of view found in the photo (a crop, or no dark "
            f"surround), so it is segmented as given, not resampled to the model's FOV of "
            f"{model_diameter:.0f} px")
    factor = model_diameter / photo_diameter
    said = f"FOV {photo_diameter:.0f} px, the model's {model_diameter:.0f} px"
    if abs(factor - 1.0) <= SNAP:
        return ScaleDecision("native", True, f"native{graph} ({said}: factor "
                                             f"{factor:.3f} taken as 1)", 1.0, photo_diameter)
    h, w = imaging.resampled_size(height, width, factor)
    reason = (f"resampled x{factor:.3f} to {w}x{h} ({said}){graph}, probabilities back to "
              f"{width}x{height}")
    relative = photo_diameter / model_diameter
    fits = zoom[0] <= relative <= zoom[1]
    if not fits:
        reason += (f"; WARNING: the photo's FOV is {relative:.2f}x the model's, outside the "
                   f"zoom range x{zoom[0]:.2f}-x{zoom[1]:.2f} it was trained with: the "
                   f"result rests on the FOV estimate (check it, or pass --input_scale)")
    return ScaleDecision("native", fits, reason, factor, photo_diameter)


class AutoScalePredictor:
    """Segments each image at the scale chosen for it (see the module docstring).

    make_predictor: "native" | "enlarged" -> a TiledPredictor; both share one Keras
      model (building one is cheap: its graph is traced on first use).
    scale, source_sizes: model_info.json's, for the size-based choice.
    fov_diameter: model_info.json's; when set, auto resamples by the FOV (decide_fov_factor).
    zoom: the model's training zoom range (zoom_range(info.config)).
    factor: a fixed resampling factor (--input_scale 0.7) instead of auto.
    Calling it with uint8 [H, W, 3] (and optionally threshold=...) returns
    (probabilities float32 [H, W], mask uint8 [H, W] 0/255) tensors as a TiledPredictor
    does, at the image's own size, and sets `last_decision`. Other attributes
    (tile_size, overlap, ...) are the enlarged predictor's; `enlarge` is the model scale.
    """

    def __init__(self, make_predictor: Callable[[str], Any], scale: int,
                 source_sizes: Optional[Sequence[Sequence[int]]],
                 fov_diameter: Optional[float] = None,
                 zoom: tuple[float, float] = (1.0 / TOLERANCE, TOLERANCE),
                 factor: Optional[float] = None):
        self.scale = int(scale)
        self.source_sizes = [list(s) for s in source_sizes or []]
        self.fov_diameter = fov_diameter
        self.zoom = tuple(zoom)
        self.factor = factor
        self.input_scale = "auto" if factor is None else factor
        self._predictors = {s: make_predictor(s) for s in ("enlarged", "native")}
        self.last_decision: Optional[ScaleDecision] = None
        # decide() runs in segment.py's reader thread (its memory check) and again for
        # the call: the decision of the last few images is kept, by identity.
        self._lock = threading.Lock()
        self._recent: list[tuple[Any, ScaleDecision]] = []

    @property
    def threshold(self) -> float:
        return self._predictors["native"].threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        for predictor in self._predictors.values():
            predictor.threshold = float(value)

    def _decide(self, image) -> ScaleDecision:
        height, width = int(image.shape[0]), int(image.shape[1])
        graph = f", x{self.scale} in the graph" if self.scale > 1 else ""
        if self.factor is not None:
            h, w = imaging.resampled_size(height, width, self.factor)
            return ScaleDecision("native", True, f"resampled x{self.factor:g} to {w}x{h} "
                                                 f"(--input_scale){graph}", self.factor)
        if self.fov_diameter is None:
            decision = decide_input_scale(width, height, self.scale, self.source_sizes)
            return dataclasses.replace(
                decision, reason=decision.reason + " [the model records no FOV diameter: "
                                                   "chosen by the photo's size]")
        return decide_fov_factor(width, height, fov.fov_diameter(_as_numpy(image)),
                                 self.fov_diameter, self.zoom, self.scale)

    def decide(self, image) -> ScaleDecision:
        with self._lock:
            for ref, decision in self._recent:
                if ref() is image:
                    return decision
        decision = self._decide(image)
        try:
            ref = weakref.ref(image)
        except TypeError:  # not weak-referenceable (a tensor): not kept
            return decision
        with self._lock:
            self._recent = [(r, d) for r, d in self._recent if r() is not None][-3:]
            self._recent.append((ref, decision))
        return decision

    def __call__(self, image, threshold: Optional[float] = None):
        decision = self.last_decision = self.decide(image)
        predictor = self._predictors[decision.input_scale]
        if decision.factor == 1.0:
            return predictor(image, threshold=threshold)
        photo = _as_numpy(image)
        height, width = photo.shape[:2]
        probabilities, _ = predictor(imaging.resample_image(photo, decision.factor),
                                     threshold=threshold)
        probabilities = imaging.resample_probabilities(probabilities.numpy(), height, width)
        value = predictor.threshold if threshold is None else threshold
        mask = np.where(probabilities > value, 255, 0).astype(np.uint8)
        return tf.constant(probabilities), tf.constant(mask)

    @property
    def enlarge(self) -> int:
        return self._predictors["native"].enlarge

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._predictors["enlarged"], name)


def _as_numpy(image):
    return image.numpy() if hasattr(image, "numpy") else np.asarray(image)


def scaled_predictor(make_predictor: Callable[[str], Any], info, input_scale):
    """The predictor of `input_scale` (parse_input_scale) for a model of ModelInfo `info`:
    make_predictor(input_scale) for native / enlarged, else an AutoScalePredictor."""
    choice = parse_input_scale(input_scale)
    if choice in ("native", "enlarged"):
        return make_predictor(choice)
    return AutoScalePredictor(make_predictor, info.scale, info.source_sizes,
                              fov_diameter=getattr(info, "fov_diameter", None),
                              zoom=zoom_range(info.config),
                              factor=None if choice == "auto" else choice)

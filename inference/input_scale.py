"""`--input_scale auto`: is a photograph at the size the model's training photos had
("native"), or already enlarged by the model's scale ("enlarged")?

A model trained on STARE at scale 5 saw 700x605 photographs enlarged to 3500x3025. Given a
new image, auto compares its size with the training photos' sizes (recorded by
vessel-preprocess in dataset_info.json and carried into model_info.json as
`source_sizes`) and with those sizes times the scale, and picks the nearer one, measured
as |log| of the ratio of pixel counts' square roots (so 2x too wide counts like 2x too
narrow). An image further than TOLERANCE (a factor of 1.5 in side length) from both is
still segmented, at the nearer one, with a warning: the model will see vessels of a
width it was not trained on.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

INPUT_SCALES = ("auto", "enlarged", "native")
TOLERANCE = 1.5


@dataclasses.dataclass(frozen=True)
class ScaleDecision:
    """input_scale: "native" or "enlarged". fits: the image is within TOLERANCE of the
    chosen size. reason: one line for the per-image log."""
    input_scale: str
    fits: bool
    reason: str


def _size(wh: Sequence[int]) -> str:
    return f"{int(wh[0])}x{int(wh[1])}"


def _distance(width: int, height: int, ref_w: float, ref_h: float) -> float:
    return abs(0.5 * math.log((width * height) / (ref_w * ref_h)))


def decide_input_scale(width: int, height: int, scale: int,
                       source_sizes: Optional[Sequence[Sequence[int]]]) -> ScaleDecision:
    """Chooses the input scale of one image of `width` x `height` pixels.

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


class AutoScalePredictor:
    """A TiledPredictor per input scale, chosen per image by `decide_input_scale`.

    make_predictor: input scale ("native" or "enlarged") -> a TiledPredictor; both share
      one Keras model (building one is cheap: its graph is traced on first use).
    Calling it with uint8 [H, W, 3] returns (probabilities, mask) as a TiledPredictor
    does, and sets `last_decision` (a ScaleDecision). Other attributes (tile_size,
    overlap, threshold, ...) are the enlarged predictor's; `enlarge` is the model scale.
    """

    input_scale = "auto"

    def __init__(self, make_predictor: Callable[[str], Any], scale: int,
                 source_sizes: Optional[Sequence[Sequence[int]]]):
        self.scale = int(scale)
        self.source_sizes = [list(s) for s in source_sizes or []]
        self._predictors = {s: make_predictor(s) for s in ("enlarged", "native")}
        self.last_decision: Optional[ScaleDecision] = None

    def decide(self, image) -> ScaleDecision:
        height, width = int(image.shape[0]), int(image.shape[1])
        return decide_input_scale(width, height, self.scale, self.source_sizes)

    def __call__(self, image, threshold=None):
        self.last_decision = self.decide(image)
        return self._predictors[self.last_decision.input_scale](image, threshold)

    @property
    def enlarge(self) -> int:
        return self._predictors["native"].enlarge

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._predictors["enlarged"], name)


"""Field-of-view scale harmonisation of one decoded pair ([preprocess] fov_diameter).

Cameras differ in how many pixels their field of view spans (STARE ~651 px across,
CHASE_DB1 ~918: tiled_vessel_seg/fov.py), so the same vessel is ~1.4x wider in pixels
in one than in the other. `harmonise` resamples the photograph, its vessel mask and its
FOV plane by target / (the photo's measured FOV diameter), so every photo's FOV is
`target` px across before the `scale` enlargement: the datasets then train at one
vessel scale, and inference resamples a new photo the same way (`--input_scale auto`).

Pure numpy / OpenCV, no Beam: the image stage (pipeline.PlanImageFn) calls it.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from tiled_vessel_seg import imaging
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # OpenCV: loaded by the Beam worker that measures a FOV, not the driver
    from tiled_vessel_seg import fov as fov_lib


class NoFovError(ValueError):
    """The photograph shows no field of view to measure (a crop, no dark surround)."""


@dataclasses.dataclass(frozen=True)
class FovScale:
    """diameter: the FOV diameter measured in the photograph as given, px (None: none
    found). factor: the resampling applied (1.0: none). size: (width, height) after it."""
    diameter: Optional[float]
    factor: float
    size: tuple[int, int]


def measure_diameter(image: np.ndarray, fov: Optional[np.ndarray] = None) -> Optional[float]:
    """The FOV diameter of a photo (uint8 [H, W, 3]) in px: from its FOV mask (uint8
    [H, W] {0, 1}, e.g. the dataset's FOV file) when given, else from the photo."""
    if fov is not None:
        circle = fov_lib.fov_circle(np.asarray(fov) > 0)
        return None if circle is None else circle.diameter
    return fov_lib.fov_diameter(image)


def harmonise(image: np.ndarray, mask: np.ndarray, fov: Optional[np.ndarray],
              target: Optional[float]):
    """Resamples a pair so its FOV is `target` px across.

    image uint8 [H, W, 3]; mask uint8 [H, W] {0, 1}; fov uint8 [H, W] {0, 1} or None.
    Returns (image, mask, fov, FovScale): image by imaging.resample_image (bicubic up,
    area average down), mask and fov by imaging.resample_mask (bilinear on 0/255, > 127),
    all three of size round(H f) x round(W f) with f = target / diameter, the same pixel
    geometry. target None: nothing is resampled, the diameter is still measured (a
    photo without FOV then records None). Raises NoFovError when target is set and no
    FOV is found.
    """
    diameter = measure_diameter(image, fov)
    h, w = image.shape[:2]
    if target is None:
        return image, mask, fov, FovScale(diameter, 1.0, (w, h))
    if diameter is None:
        raise NoFovError(f"no field of view found in the photograph (a crop filled by "
                         f"retina, or no dark surround): cannot resample it to "
                         f"[preprocess] fov_diameter = {target:g}")
    factor = float(target) / diameter
    image = imaging.resample_image(image, factor)
    mask = imaging.resample_mask(mask, factor)
    if fov is not None:
        fov = imaging.resample_mask(fov, factor)
    return image, mask, fov, FovScale(diameter, factor, (image.shape[1], image.shape[0]))


def dataset_fov_diameter(diameters: list[Optional[float]], target: Optional[float],
                         max_spread: float = 1.15) -> Optional[float]:
    """The FOV diameter, in px before enlargement, of the photographs a dataset's tiles
    were cut from: `target` when harmonised; else the median of the measured diameters
    when they agree (largest / smallest <= max_spread: one camera's scale); None when
    none was measured or they disagree (e.g. STARE and CHASE_DB1 unharmonised: no one
    scale to resample new photos to)."""
    if target is not None:
        return float(target)
    found = [d for d in diameters if d is not None]
    if not found or max(found) > max_spread * min(found):
        return None
    return float(np.median(found))


def summary_line(info) -> str:
    """One line of vessel-preprocess's summary on the FOV scale of a DatasetInfo."""
    found = sorted(d for d in info.fov_diameters.values() if d is not None)
    missing = len(info.fov_diameters) - len(found)
    span = f"{found[0]:.0f}-{found[-1]:.0f} px" if found else "none found"
    none_note = f", {missing} photo(s) without a visible FOV" if missing else ""
    target = info.parameters.values.get("fov_diameter")
    if target is not None:
        return (f"FOV scale: every photo resampled to a FOV diameter of {target:g} px "
                f"(measured {span}{none_note})")
    if info.fov_diameter is not None:
        return (f"FOV scale: photos as given, FOV diameter {span}{none_note}; recorded "
                f"{info.fov_diameter:.0f} px for --input_scale auto")
    return (f"FOV scale: photos as given, FOV diameter {span}{none_note}; no one scale "
            f"recorded (set [preprocess] fov_diameter to harmonise them)")

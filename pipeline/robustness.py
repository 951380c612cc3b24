"""How the cross-validated models hold up on photographs unlike their training data.

Each fold's model segments its own held-out photos (never seen in training or selection)
as they are and changed as another camera or pipeline would change them; F1 is computed
inside the FOV of the changed photo against the label changed the same way:

  as is        the photo at native size
  scale 0.75   photo resized by 0.75 (INTER_AREA), label by area-averaging then > 0.5
  scale 1.5    photo resized by 1.5 (INTER_CUBIC), label by bilinear then > 0.5
  colour       a warmer, darker camera: RGB gains (1.08, 0.92, 0.80), then gamma 1.2
  jpeg 70      the photo JPEG-compressed at quality 70

Pure numpy/OpenCV functions below (`perturb`); `evaluate_folds` does the I/O.
"""
from __future__ import annotations

import csv
import io
from typing import Callable

import cv2
import numpy as np

from tiled_vessel_seg import fov, imaging, storage
from tiled_vessel_seg.inference import metrics

PERTURBATIONS = ("as is", "scale 0.75", "scale 1.5", "colour", "jpeg 70")
COLOUR_GAINS = (1.08, 0.92, 0.80)
COLOUR_GAMMA = 1.2
ROBUSTNESS_CSV = "cv_robustness.csv"


def _resize_label(truth: np.ndarray, size: tuple[int, int], shrink: bool) -> np.ndarray:
    method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(truth.astype(np.float32), size, interpolation=method) > 0.5


def perturb(name: str, image: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 RGB [h, w, 3], truth bool [h, w]) after perturbation `name`."""
    height, width = truth.shape
    if name == "as is":
        return image, truth
    if name.startswith("scale "):
        factor = float(name.split()[1])
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        shrink = factor < 1
        resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink
                             else cv2.INTER_CUBIC)
        return resized, _resize_label(truth, size, shrink)
    if name == "colour":
        x = image.astype(np.float32) / 255.0 * np.array(COLOUR_GAINS, np.float32)
        x = np.clip(x, 0.0, 1.0) ** COLOUR_GAMMA
        return np.round(x * 255.0).astype(np.uint8), truth
    if name.startswith("jpeg "):
        quality = int(name.split()[1])
        ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy(), truth
    raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")


def evaluate_folds(workdir: str, folds, pairs, predictor_for: Callable,
                   say: Callable[[str], None] = lambda message: None
                   ) -> dict[str, tuple[float, float]]:
    """Writes W/cv_robustness.csv (fold, image, F1 inside the FOV per perturbation, then
    mean and std over folds of the fold means); returns {perturbation: (mean, std)}.

    predictor_for(fold): the predictor that scored the fold's held-out photos (vessel-cv's
    fold_predictor), so "as is" is that figure. say: one progress line per fold."""
    rows = []
    total = sum(p.image_id in f.test_ids for f in folds for p in pairs)
    for fold in folds:
        predictor = predictor_for(fold)
        for pair in (p for p in pairs if p.image_id in fold.test_ids):
            image = imaging.read_image(pair.image_path)
            truth = imaging.read_mask(pair.mask_path) > 0
            row = {"fold": fold.index, "image": pair.image_id}
            for name in PERTURBATIONS:
                changed, label = perturb(name, image, truth)
                probabilities = predictor(changed)[0].numpy()
                row[name] = metrics.segmentation_metrics(
                    probabilities, label, predictor.threshold, fov.fov_mask(changed))["dice"]
            rows.append(row)
        say(f"fold {fold.index}: scored; {len(rows)} of {total} photo(s) done")
    per_fold = {f.index: {n: float(np.mean([r[n] for r in rows if r["fold"] == f.index]))
                          for n in PERTURBATIONS} for f in folds}
    summary = {n: (float(np.mean([per_fold[f.index][n] for f in folds])),
                   float(np.std([per_fold[f.index][n] for f in folds]))) for n in PERTURBATIONS}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["fold", "image"] + list(PERTURBATIONS))
    for row in rows:
        writer.writerow([row["fold"], row["image"]] + [f"{row[n]:.6f}" for n in PERTURBATIONS])
    writer.writerow(["", "mean"] + [f"{summary[n][0]:.6f}" for n in PERTURBATIONS])
    writer.writerow(["", "std"] + [f"{summary[n][1]:.6f}" for n in PERTURBATIONS])
    storage.write_text_atomic(storage.join(workdir, ROBUSTNESS_CSV), buf.getvalue())
    return summary


def report_section(summary: dict[str, tuple[float, float]]) -> list[str]:
    """cv_report.md's lines for `evaluate_folds`' {perturbation: (mean, std)}."""
    return ["## Robustness: held-out photos changed", "",
            f"F1 inside the FOV, mean +- std over folds ({ROBUSTNESS_CSV}; "
            "pipeline/robustness.py says what each change is).", "",
            "| " + " | ".join(PERTURBATIONS) + " |",
            "|" + "---|" * len(PERTURBATIONS),
            "| " + " | ".join(f"{summary[n][0]:.3f} +- {summary[n][1]:.3f}"
                              for n in PERTURBATIONS) + " |", ""]

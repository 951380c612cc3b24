"""vessel-cv --robustness (pipeline/robustness.py): the scores of the changed photos and
the table of cv_report.md."""
import types

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import datasets, fov
from tiled_vessel_seg.pipeline import robustness


def test_report_section_has_one_column_per_perturbation_with_mean_and_std():
    summary = {name: (0.5 + i / 100, i / 1000) for i, name in
               enumerate(robustness.PERTURBATIONS)}
    lines = robustness.report_section(summary)
    assert lines[0] == "## Robustness: held-out photos changed" and lines[-1] == ""
    header, rule, values = lines[-4:-1]
    assert header.strip("| ").split(" | ") == list(robustness.PERTURBATIONS)
    assert rule == "|" + "---|" * len(robustness.PERTURBATIONS)
    cells = values.strip("| ").split(" | ")
    assert cells == [f"{0.5 + i / 100:.3f} +- {i / 1000:.3f}"
                     for i in range(len(robustness.PERTURBATIONS))]
    assert robustness.ROBUSTNESS_CSV in lines[2]


class _GreenPredictor:
    """Stands in for a fold's predictor: the probability is the green channel / 255."""
    threshold = 0.5

    def __call__(self, image):
        probabilities = image[..., 1].astype(np.float32) / 255.0
        return [types.SimpleNamespace(numpy=lambda: probabilities)]


def test_evaluate_folds_scores_each_change_with_the_fold_predictor(tmp_path):
    rng = np.random.default_rng(4)
    photo = rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)
    truth = rng.random((48, 56)) > 0.6
    cv2.imwrite(str(tmp_path / "im0001.png"), photo[..., ::-1])
    cv2.imwrite(str(tmp_path / "im0001_label.png"), truth.astype(np.uint8) * 255)
    pair = datasets.ImagePair("im0001", str(tmp_path / "im0001.png"),
                              str(tmp_path / "im0001_label.png"))
    folds = [types.SimpleNamespace(index=0, test_ids=("im0001",))]
    asked, said = [], []
    summary = robustness.evaluate_folds(str(tmp_path), folds, [pair],
                                        lambda fold: asked.append(fold) or _GreenPredictor(),
                                        say=said.append)
    assert asked == folds
    assert said == ["fold 0: scored; 1 of 1 photo(s) done"]
    for name in robustness.PERTURBATIONS:  # F1 inside the FOV of the changed photo, by hand
        changed, label = robustness.perturb(name, photo, truth)
        region = fov.fov_mask(changed)
        predicted = (changed[..., 1] / 255.0 >= 0.5)[region]
        tp = np.sum(predicted & label[region])
        f1 = 2 * tp / (predicted.sum() + label[region].sum())
        assert summary[name] == pytest.approx((f1, 0.0), abs=1e-6), name
    text = (tmp_path / robustness.ROBUSTNESS_CSV).read_text()
    assert text.splitlines()[0] == "fold,image," + ",".join(robustness.PERTURBATIONS)

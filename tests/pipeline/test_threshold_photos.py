"""[train] threshold_photos: which photos vessel-cv's image threshold is chosen on."""
import dataclasses

import numpy as np
import pytest

from tiled_vessel_seg import datasets, imaging, model_info
from tiled_vessel_seg.configs import config_file
from tiled_vessel_seg.pipeline import cv

# Each photo is one grey level; its vessel map is the label itself scaled into
# [low, low + span]: every threshold in (low, low + span] separates the classes exactly
# (F1 = 1), and f1_by_threshold returns the first such bin edge, low + 0.01.
LEVELS = {"im0001": (10, 0.20, 0.60), "im0002": (20, 0.20, 0.60), "im0003": (30, 0.05, 0.10)}


class _Maps:
    threshold = 0.5

    def __init__(self, truths):
        self.truths = truths

    def __call__(self, image):
        image_id = next(i for i, (grey, _, _) in LEVELS.items() if image[0, 0, 0] == grey)
        _, low, span = LEVELS[image_id]
        probabilities = low + span * self.truths[image_id].astype(np.float32)
        return [_Numpy(probabilities)]


class _Numpy:
    def __init__(self, array):
        self.array = array

    def numpy(self):
        return self.array


def _pairs(tmp_path):
    rng = np.random.default_rng(0)
    pairs, truths = [], {}
    for image_id, (grey, _, _) in LEVELS.items():
        image = np.full((40, 48, 3), grey, np.uint8)  # no visible FOV: the whole photo
        truth = rng.random((40, 48)) < 0.2
        (tmp_path / f"{image_id}.png").write_bytes(imaging.encode_png(image))
        (tmp_path / f"{image_id}_mask.png").write_bytes(
            imaging.encode_png(truth.astype(np.uint8) * 255))
        pairs.append(datasets.ImagePair(image_id, str(tmp_path / f"{image_id}.png"),
                                        str(tmp_path / f"{image_id}_mask.png")))
        truths[image_id] = truth
    return pairs, truths


@pytest.mark.parametrize("photos, expected", [("train", 0.21), ("valid", 0.06)])
def test_the_threshold_is_chosen_on_the_named_photos(tmp_path, make_tiny_model_dir,
                                                     photos, expected):
    pairs, truths = _pairs(tmp_path)
    model_dir = make_tiny_model_dir()
    config = config_file.with_overrides(config_file.load_config(None),
                                        {"train.threshold_photos": photos})
    fold = cv.Fold(0, test_ids=(), valid_ids=("im0003",), train_ids=("im0001", "im0002"))
    line = cv._select_image_threshold(config, _Maps(truths), model_dir, fold, pairs)
    assert model_info.read_model_info(model_dir).threshold == pytest.approx(expected)
    assert line.startswith(f"threshold {expected:.2f} maximises F1 inside the FOV of ")
    assert line.endswith("(1.0000)")


def test_an_unknown_threshold_photos_is_refused():
    config = config_file.load_config(None)
    with pytest.raises(ValueError, match="threshold_photos"):
        dataclasses.replace(config.train, threshold_photos="test")

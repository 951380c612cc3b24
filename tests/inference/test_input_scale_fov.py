"""`--input_scale auto` by field of view (inference/input_scale.py): the factor chosen per
photo, the warning outside the training zoom range, the fall-back lines, the resampling
round trip, numeric factors, and vessel-segment end to end with a tiny model."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tiled_vessel_seg import fov, imaging
from tiled_vessel_seg.inference import input_scale as lib

STARE_ENLARGED = (pathlib.Path(__file__).resolve().parents[2].parent / "shared" / "data"
                  / "stare" / "enlarged" / "images")


def disc_photo(height, width, diameter, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    inside = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 <= (diameter / 2) ** 2
    image = rng.integers(0, 10, (height, width, 3)).astype(np.uint8)
    image[inside] = np.stack([rng.integers(120, 220, inside.sum()),
                              rng.integers(40, 90, inside.sum()),
                              rng.integers(10, 40, inside.sum())], axis=-1)
    return image


class FakePredictor:
    """A TiledPredictor stand-in: probabilities = red / 255 at the input's size."""
    enlarge = 1

    def __init__(self, scale):
        self.scale_name, self.threshold, self.inputs = scale, 0.5, []

    def __call__(self, image, threshold=None):
        import tensorflow as tf
        image = np.asarray(image)
        self.inputs.append(image.shape)
        p = image[..., 0].astype(np.float32) / 255.0
        t = self.threshold if threshold is None else threshold
        return tf.constant(p), tf.constant(np.where(p > t, 255, 0).astype(np.uint8))


def auto(fov_diameter, zoom=(0.7, 1.5), factor=None, scale=1, sizes=([700, 605],)):
    made = {}

    def make(name):
        made[name] = FakePredictor(name)
        return made[name]
    return lib.AutoScalePredictor(make, scale, list(sizes), fov_diameter=fov_diameter,
                                  zoom=zoom, factor=factor), made


def test_factor_is_model_over_photo_diameter_and_round_trips_the_size():
    photo = disc_photo(300, 330, 250)
    predictor, made = auto(fov_diameter=175.0)
    probabilities, mask = predictor(photo)
    d = predictor.last_decision
    assert d.fov_diameter == pytest.approx(250, rel=0.01)
    assert d.factor == pytest.approx(0.7, rel=0.01) and d.fits
    assert d.input_scale == "native" and "resampled x0.70" in d.reason
    # The model saw the photo resampled by the factor; the output is at the photo's size.
    h, w = imaging.resampled_size(300, 330, d.factor)
    assert made["native"].inputs == [(h, w, 3)]
    assert probabilities.shape == mask.shape == (300, 330)
    # Independently: area-reduce, red / 255, bilinear back, threshold 0.5.
    small = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    expected = cv2.resize(small[..., 0].astype(np.float32) / 255.0, (330, 300),
                          interpolation=cv2.INTER_LINEAR)
    assert np.abs(probabilities.numpy() - expected).max() < 1e-5
    assert np.array_equal(mask.numpy() > 0, expected > 0.5)
    # The threshold is the predictor's, set once for both of its scales.
    predictor.threshold = 0.9
    assert made["native"].threshold == made["enlarged"].threshold == 0.9
    assert np.array_equal(predictor(photo)[1].numpy() > 0, expected > 0.9)


def test_snap_no_fov_and_zoom_warning():
    d = lib.decide_fov_factor(700, 605, 650.0, 651.0, (0.7, 1.5))
    assert d.factor == 1.0 and d.fits and "taken as 1" in d.reason
    d = lib.decide_fov_factor(700, 605, None, 651.0, (0.7, 1.5))
    assert d.factor == 1.0 and d.input_scale == "native" and not d.fits
    assert "no field of view found" in d.reason and "\n" not in d.reason
    d = lib.decide_fov_factor(3500, 3025, 3255.0, 651.0, (0.7, 1.5), scale=5)
    assert d.factor == pytest.approx(0.2) and not d.fits and "WARNING" in d.reason
    assert "x5 in the graph" in d.reason
    # Within the zoom range: CHASE_DB1 (918 px) for a STARE model trained with zoom 0.7-1.5.
    d = lib.decide_fov_factor(999, 960, 918.0, 651.0, (0.7, 1.5))
    assert d.factor == pytest.approx(651 / 918) and d.fits
    assert not lib.decide_fov_factor(999, 960, 918.0, 651.0, (0.8, 1.25)).fits


def test_models_without_fov_diameter_keep_the_size_based_choice():
    predictor, made = auto(fov_diameter=None, scale=5)
    photo = disc_photo(605, 700, 650)
    predictor(photo)
    d = predictor.last_decision
    assert d.input_scale == "native" and d.factor == 1.0
    assert "records no FOV diameter" in d.reason
    assert made["native"].inputs == [(605, 700, 3)]


def test_numeric_factor_and_parsing():
    predictor, made = auto(fov_diameter=651.0, factor=0.5)
    probabilities, _ = predictor(disc_photo(100, 120, 80))
    assert made["native"].inputs == [(50, 60, 3)] and probabilities.shape == (100, 120)
    assert lib.parse_input_scale("auto") == "auto"
    assert lib.parse_input_scale("0.7") == 0.7 and lib.parse_input_scale(2) == 2.0
    for bad in ("big", "0", "-1", "17", True):
        with pytest.raises(ValueError, match="input_scale"):
            lib.parse_input_scale(bad)
    assert lib.zoom_range({"train": {"augment_zoom": [0.7, 1.5]}}) == (0.7, 1.5)
    assert lib.zoom_range({"train": {"augment_zoom": [1.0, 1.0]}}) == (1 / 1.5, 1.5)
    assert lib.zoom_range({}) == (1 / 1.5, 1.5)


def test_decision_is_measured_once_per_photo(monkeypatch):
    calls = []
    real = fov.fov_diameter
    monkeypatch.setattr(fov, "fov_diameter", lambda image: calls.append(1) or real(image))
    predictor, _ = auto(fov_diameter=100.0)
    photo = disc_photo(150, 160, 130)
    predictor.decide(photo)  # segment.py's memory check, in its reader thread
    predictor(photo)
    assert len(calls) == 1
    predictor(disc_photo(150, 160, 130, seed=1))
    assert len(calls) == 2


def shipped_auto():
    from tiled_vessel_seg import model_info, models
    info = model_info.read_model_info(models.resolve_model("stare_small"))
    return lib.scaled_predictor(FakePredictor, info, "auto"), info


def test_shipped_model_records_the_stare_fov_diameter():
    predictor, info = shipped_auto()
    assert 645 <= info.fov_diameter <= 656
    assert isinstance(predictor, lib.AutoScalePredictor)
    assert predictor.zoom == (0.7, 1.5)


@pytest.mark.real_data
def test_real_stare_photo_enlarged_and_reduced_gets_the_inverse_factors(real_stare_dir):
    image = imaging.read_image(str(real_stare_dir / "stare-images" / "im0077.ppm.gz"))
    predictor, _ = shipped_auto()
    native = predictor.decide(image).factor
    assert native == 1.0  # within 3 % of the model's own FOV
    for scale, method, expected in ((1.5, cv2.INTER_CUBIC, 1 / 1.5),
                                    (0.5, cv2.INTER_AREA, 2.0)):
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=method)
        factor = predictor.decide(resized).factor
        assert abs(factor / expected - 1) < 0.03, (scale, factor)


@pytest.mark.real_data
def test_real_stare_photo_enlarged_5x_gets_one_fifth(real_stare_dir):
    path = STARE_ENLARGED / "im0002.jpg"
    if not path.exists():
        pytest.skip(f"{path} not found (../shared/data/stare/enlarged)")
    predictor, _ = shipped_auto()
    d = predictor.decide(imaging.read_image(str(path)))
    assert abs(d.factor / 0.2 - 1) < 0.03, d
    assert not d.fits and "WARNING" in d.reason  # 5x is outside the zoom range 0.7-1.5


@pytest.fixture(scope="module")
def tiny_fov_model(tmp_path_factory):
    keras = pytest.importorskip("keras")
    from tiled_vessel_seg.model_info import ModelInfo, write_model_info
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inp)
    out_dir = tmp_path_factory.mktemp("fov_model")
    keras.Model(inp, out).save(str(out_dir / "best_model.keras"))
    write_model_info(str(out_dir), ModelInfo(tile_size=32, scale=1, overlap=8, threshold=0.5,
                                             fov_diameter=60.0))
    return out_dir


def test_vessel_segment_says_the_factor_and_the_no_fov_fallback_once(tiny_fov_model,
                                                                     tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    cv2.imwrite(str(photos / "disc.png"), disc_photo(100, 110, 90)[..., ::-1])
    crop = np.random.default_rng(2).integers(80, 220, (70, 80, 3)).astype(np.uint8)
    cv2.imwrite(str(photos / "crop.png"), crop)
    result = subprocess.run(
        [sys.executable, "-m", "tiled_vessel_seg.inference.cli", "--model", tiny_fov_model,
         "--input", photos, "--output_dir", tmp_path / "out"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (result.stdout + result.stderr).replace("\r", "\n").splitlines()
    disc_lines = [l for l in lines if l.startswith("disc:")]
    crop_lines = [l for l in lines if l.startswith("crop:")]
    assert len(disc_lines) == 1 and "resampled x0.66" in disc_lines[0], disc_lines
    assert len(crop_lines) == 1 and "no field of view found" in crop_lines[0], crop_lines
    assert "native" in crop_lines[0]
    # Outputs at each photo's own size.
    assert cv2.imread(str(tmp_path / "out" / "disc.png")).shape[:2] == (100, 110)
    assert cv2.imread(str(tmp_path / "out" / "crop.png")).shape[:2] == (70, 80)


def test_model_info_fov_diameter_round_trip_and_checks(tmp_path):
    import dataclasses
    import json
    from tiled_vessel_seg import model_info
    info = model_info.ModelInfo(tile_size=32, scale=1, fov_diameter=640.5)
    model_info.write_model_info(str(tmp_path), info)
    assert model_info.read_model_info(str(tmp_path)).fov_diameter == 640.5
    raw = dataclasses.asdict(info)
    for value, ok in ((None, True), (700, True), ("640", False), (-3.0, False), (True, False)):
        raw["fov_diameter"] = value
        (tmp_path / model_info.INFO_FILE).write_text(json.dumps(raw))
        if ok:
            assert model_info.read_model_info(str(tmp_path)).fov_diameter == value
        else:
            with pytest.raises(model_info.ModelDirError, match="'fov_diameter'"):
                model_info.read_model_info(str(tmp_path))
    raw.pop("fov_diameter")  # model dirs written before the field existed still read
    (tmp_path / model_info.INFO_FILE).write_text(json.dumps(raw))
    assert model_info.read_model_info(str(tmp_path)).fov_diameter is None


def test_dataset_info_fov_fields_round_trip_and_older_files_read(tmp_path):
    import json
    from tiled_vessel_seg.tfrecords import dataset_info as info_lib
    info = info_lib.DatasetInfo(
        schema_version=2, compression="none", parameters={"scale": 1, "fov_diameter": 640.0},
        splits={"train": info_lib.SplitInfo(["a", "b"], 2, 0, 2, ["train/x.tfrecord"])},
        encoding={"image": "png", "mask": "png", "jpeg_quality": 95},
        fov_diameters={"a": 651.1, "b": None}, fov_diameter=640.0)
    info_lib.write_dataset_info(str(tmp_path), info)
    back = info_lib.read_dataset_info(str(tmp_path))
    assert back.fov_diameters == {"a": 651.1, "b": None} and back.fov_diameter == 640.0
    raw = json.loads((tmp_path / info_lib.INFO_FILE).read_text())
    del raw["fov_diameters"], raw["fov_diameter"]
    (tmp_path / info_lib.INFO_FILE).write_text(json.dumps(raw))
    back = info_lib.read_dataset_info(str(tmp_path))
    assert back.fov_diameters == {} and back.fov_diameter is None


def test_cv_and_run_score_held_out_photos_at_the_models_fov(tiny_fov_model):
    """vessel-cv's held-out scoring takes [tiledinfer] input_scale, auto by default: a
    harmonised model resamples each held-out photo to its FOV diameter."""
    from tiled_vessel_seg.configs import schema
    from tiled_vessel_seg.pipeline import cv
    tiled = schema.TiledInferConfig(overlap=8)  # input_scale: the default
    predictor = cv.fold_predictor(schema.Config(tiledinfer=tiled), str(tiny_fov_model))
    assert isinstance(predictor, lib.AutoScalePredictor) and predictor.fov_diameter == 60.0
    probabilities, _ = predictor(disc_photo(100, 110, 90))
    assert predictor.last_decision.factor == pytest.approx(60 / 90, rel=0.02)
    assert probabilities.shape == (100, 110)
    native = cv.fold_predictor(schema.Config(tiledinfer=schema.TiledInferConfig(
        overlap=8, input_scale="native")), str(tiny_fov_model))
    assert not isinstance(native, lib.AutoScalePredictor)

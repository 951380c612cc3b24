"""A new threshold must not retrace the one-graph predictor (issue 19, section 2): the
threshold is an argument of the traced graph. Masks are checked against numpy
thresholding of the predictor's own probabilities."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")


TILE = 32


@pytest.fixture(scope="module")
def model_dir(make_tiny_model_dir):
    return make_tiny_model_dir(TILE, 8, hidden=4, source_sizes=[[70, 50]])


def _images():
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),
            rng.integers(0, 256, (41, 97, 3), dtype=np.uint8)]


def test_threshold_is_a_graph_argument(model_dir):
    from tiled_vessel_seg.inference import predictor as predictor_lib
    predictor = predictor_lib.load_predictor(model_dir, input_scale="enlarged")
    for image in _images():
        probabilities = predictor(image)[0].numpy()
        for threshold in (0.3, 0.5, 0.7, None):
            mask = predictor(image, threshold=threshold)[1].numpy()
            expected = probabilities > (0.5 if threshold is None else threshold)
            np.testing.assert_array_equal(mask, expected.astype(np.uint8) * 255)
        predictor.threshold = float(np.median(probabilities))  # what vessel-cv does
        mask = predictor(image)[1].numpy()
        np.testing.assert_array_equal(mask > 0, probabilities > predictor.threshold)
        predictor.threshold = 0.5
    assert predictor.segment.experimental_get_tracing_count() == 1


def test_notebook_api_threshold_reuses_the_trace(model_dir, monkeypatch):
    from tiled_vessel_seg.inference import api
    from tiled_vessel_seg.inference import predictor as predictor_lib
    built, load = [], predictor_lib.load_predictor
    monkeypatch.setattr(predictor_lib, "load_predictor",
                        lambda *a, **k: built.append(load(*a, **k)) or built[-1])
    api._predictor.cache_clear()
    image = _images()[0]
    probabilities, mask = api.segment(image, model=model_dir, threshold=0.5,
                                      input_scale="native")
    for threshold in (0.2, 0.45, 0.8):
        again, mask = api.segment(image, model=model_dir, threshold=threshold,
                                   input_scale="native")
        np.testing.assert_array_equal(again, probabilities)
        np.testing.assert_array_equal(mask, probabilities > threshold)
    (predictor,) = built  # one predictor for every threshold
    assert predictor.segment.experimental_get_tracing_count() == 1

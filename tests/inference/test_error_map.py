"""Error map colours against a hand-made example."""
import numpy as np
import pytest

from tiled_vessel_seg.inference import error_map as error_map_lib

W, R, B, K = (255, 255, 255), (255, 0, 0), (0, 0, 255), (0, 0, 0)


def test_error_map_colours_hand_made():
    prediction = np.array([[1, 1, 0],
                           [0, 1, 0]], np.uint8) * 255
    truth = np.array([[1, 0, 1],
                      [0, 1, 0]], bool)
    expected = np.array([[W, R, B],
                         [K, W, K]], np.uint8)
    out = error_map_lib.error_map(prediction, truth)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out, expected)


def test_error_map_counts_match_confusion_counts():
    rng = np.random.default_rng(0)
    prediction = rng.random((37, 41)) > 0.6
    truth = rng.random((37, 41)) > 0.7
    out = error_map_lib.error_map(prediction, truth)
    def count(colour):
        return int(np.all(out == colour, axis=-1).sum())
    assert count(W) == np.sum(prediction & truth)
    assert count(R) == np.sum(prediction & ~truth)
    assert count(B) == np.sum(~prediction & truth)
    assert count(K) == np.sum(~prediction & ~truth)


def test_error_map_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        error_map_lib.error_map(np.zeros((4, 5)), np.zeros((5, 4)))

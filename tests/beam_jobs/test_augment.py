"""beam_jobs.augment sampling maps against references written here in plain numpy.

The grid distortion and the elastic field are rebuilt from the same random draws with
independent code (per-cell piecewise-linear maps; a separable Gaussian with reflect-101
borders), on non-square tiles so that a swapped axis cannot pass.
"""
import math

import numpy as np
import pytest

from tiled_vessel_seg.beam_jobs import augment

H, W = 37, 53  # non-square: x runs over 53 columns, y over 37 rows


def _grid_axis_reference(length, steps):
    """Source coordinate of each output coordinate when cell j is stretched by steps[j].

    The output axis [0, length - 1] is cut into len(steps) equal cells; the source axis
    into cells proportional to steps (same total length). Inside a cell, output -> source
    is linear.
    """
    cells = len(steps)
    scale = (length - 1) / float(np.sum(steps))
    cell_out = (length - 1) / cells
    out = np.empty(length)
    for x in range(length):  # 37-53 values: clarity over speed
        j = min(int(x // cell_out), cells - 1)
        t = (x - j * cell_out) / cell_out
        out[x] = scale * (float(np.sum(steps[:j])) + t * steps[j])
    return out


@pytest.mark.parametrize("kind", sorted(augment.GRID_DISTORTIONS))
def test_grid_distortion_maps_match_a_per_cell_reference(kind):
    cells, limit = augment.GRID_DISTORTIONS[kind]
    map_x, map_y = augment.grid_map((H, W), np.random.default_rng(3), cells, limit)
    draws = np.random.default_rng(3)
    steps_x = 1.0 + draws.uniform(-limit, limit, cells)  # the x axis draws first
    steps_y = 1.0 + draws.uniform(-limit, limit, cells)
    ref_x = _grid_axis_reference(W, steps_x)
    ref_y = _grid_axis_reference(H, steps_y)
    assert map_x.shape == map_y.shape == (H, W)
    assert map_x.dtype == map_y.dtype == np.float32
    np.testing.assert_allclose(map_x, np.broadcast_to(ref_x[None, :], (H, W)), atol=1e-4)
    np.testing.assert_allclose(map_y, np.broadcast_to(ref_y[:, None], (H, W)), atol=1e-4)


@pytest.mark.parametrize("kind", sorted(augment.GRID_DISTORTIONS))
def test_grid_distortion_keeps_the_edges_and_stretches_each_cell_within_its_limit(kind):
    cells, limit = augment.GRID_DISTORTIONS[kind]
    length = 201  # cell boundaries land on whole pixels for 5 and 10 cells
    map_x, map_y = augment.grid_map((length, length), np.random.default_rng(9), cells, limit)
    for axis in (map_x[0], map_y[:, 0]):
        assert axis[0] == pytest.approx(0, abs=1e-4)
        assert axis[-1] == pytest.approx(length - 1, abs=1e-4)
        slopes = np.diff(axis)
        assert (slopes > 0).all()  # monotonic: no folds
        per_cell = slopes.reshape(cells, -1)
        # constant inside a cell; relative stretches within (1 +- limit) / mean
        assert np.abs(per_cell - per_cell[:, :1]).max() < 1e-3
        ratio = per_cell[:, 0].max() / per_cell[:, 0].min()
        assert 1.0 < ratio <= (1 + limit) / (1 - limit) + 1e-6
    assert not np.allclose(map_x[0], map_y[:, 0])  # the two axes draw different cells


def _gaussian_blur_reference(field, sigma):
    """Separable Gaussian, reflect-101 borders, OpenCV's float kernel size round(8 sigma + 1) | 1."""
    size = int(round(sigma * 8 + 1)) | 1
    offsets = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    pad = size // 2
    padded = np.pad(field.astype(np.float64), pad, mode="reflect")  # numpy 'reflect' = 101
    rows = sum(k * padded[:, i:i + field.shape[1]] for i, k in enumerate(kernel))
    return sum(k * rows[i:i + field.shape[0], :] for i, k in enumerate(kernel))


@pytest.mark.parametrize("sigma", [2.0, 4.0])
def test_elastic_maps_match_blurred_uniform_fields_on_both_axes(sigma):
    alpha = 30.0
    map_x, map_y = augment.elastic_map((H, W), np.random.default_rng(5), alpha, sigma)
    fields = np.random.default_rng(5).uniform(-1.0, 1.0, (2, H, W)).astype(np.float32)
    ys, xs = np.indices((H, W))
    dx = _gaussian_blur_reference(fields[0], sigma) * alpha
    dy = _gaussian_blur_reference(fields[1], sigma) * alpha
    np.testing.assert_allclose(map_x - xs, dx, atol=1e-3)
    np.testing.assert_allclose(map_y - ys, dy, atol=1e-3)  # the second axis: its own field
    assert np.abs(dy - dx).max() > 0.1 * np.abs(dy).max()


def _bilinear_reflect101(image, map_x, map_y):
    """Samples image [H, W, C] at float positions, bilinear, reflect-101 outside."""
    h, w = image.shape[:2]

    def reflect(i, n):
        period = 2 * (n - 1)
        i = np.mod(i, period)
        return np.where(i < n, i, period - i)

    x0, y0 = np.floor(map_x).astype(int), np.floor(map_y).astype(int)
    fx, fy = (map_x - x0)[..., None], (map_y - y0)[..., None]
    img = image.astype(np.float64)

    def at(y, x):
        return img[reflect(y, h), reflect(x, w)]

    return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
            + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


@pytest.mark.parametrize("kind", ["elastic", "grid_distortion_1", "grid_distortion_2"])
def test_warped_image_is_bilinear_sampling_at_the_map(kind):
    ys, xs = np.indices((H, W))
    smooth = np.stack([4 * xs + 20, 5 * ys + 10, 2 * (xs + ys)], axis=-1).astype(np.uint8)
    mask = (xs > W // 2).astype(np.uint8)
    variant = augment.Variant(kind, kind)
    map_x, map_y = augment.draw_map(variant, (H, W), np.random.default_rng(1), 30.0, 3.0)
    out_image, out_mask = augment.augment(smooth, mask, variant, np.random.default_rng(1),
                                          elastic_alpha=30.0, elastic_sigma=3.0)
    expected = _bilinear_reflect101(smooth, map_x, map_y)
    # OpenCV samples at 1/32-pixel steps: with gradients <= 10 levels/px that is <= 0.4
    assert np.abs(out_image - expected).max() <= 1.5
    expected_mask = _bilinear_reflect101(mask[..., None] * 255.0, map_x, map_y)[..., 0] > 127.5
    disagree = out_mask != expected_mask
    # only where the interpolated mask is within a 1/32 step of the threshold
    assert disagree.sum() <= max(2, int(0.01 * disagree.size))
    assert math.isclose(out_mask.mean(), expected_mask.mean(), abs_tol=0.02)

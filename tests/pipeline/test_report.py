"""The run report's pictures and second-observer row, against numpy."""
import dataclasses
import gzip
import os

import numpy as np
import pytest

from tiled_vessel_seg.pipeline import report


def _panels(h, w, seed=0):
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    truth = (rng.random((h, w)) > 0.8).astype(np.uint8) * 255
    return [photo, truth, truth, truth, photo]  # photo, truth, probability, prediction, errors


def test_full_resolution_montage_keeps_every_pixel_and_has_titles():
    h, w = 60, 70
    rows = [("im0001 Dice 0.9", _panels(h, w, 0)), ("im0002 Dice 0.8", _panels(h, w, 1))]
    out = report.labelled_montage(rows, width=None)
    band = int(round(34 * max(0.7, w / 500)))
    total = 5 * w + 6 * report.GAP
    assert out.dtype == np.uint8 and out.shape[1] == total
    # Panels sit unchanged after the header band and the first row's title band.
    top = 2 * band
    for i, panel in enumerate(rows[0][1]):
        x = report.GAP + i * (w + report.GAP)
        expected = np.dstack([panel] * 3) if panel.ndim == 2 else panel
        np.testing.assert_array_equal(out[top:top + h, x:x + w], expected)
        # Each column title draws dark pixels in the header above its panel.
        assert (out[:band, x:x + w] < 128).any()
    # The row title band holds text (dark pixels) on its grey background.
    assert (out[band:2 * band] < 128).any()
    second_top = top + h + report.GAP + band
    np.testing.assert_array_equal(out[second_top:second_top + h, report.GAP:report.GAP + w],
                                  rows[1][1][0])


def test_montage_panels_are_resized_to_the_panel_width():
    out = report.labelled_montage([("a", _panels(100, 200))], width=80, legend=None)
    assert out.shape[1] == 5 * 80 + 6 * report.GAP
    with pytest.raises(ValueError, match="4 panels for 5 titles"):
        report.labelled_montage([("a", _panels(10, 10)[:4])])


def test_training_curves_mark_the_best_epoch(tmp_path):
    history = {"epoch": [0, 1, 2, 3], "loss": [1.0, 0.8, 0.7, 0.6],
               "val_loss": [0.9, 0.7, 0.75, 0.8], "dice_coef": [0.1, 0.3, 0.4, 0.5],
               "val_dice_coef": [0.2, 0.35, 0.3, 0.3]}
    path = tmp_path / "curves.png"
    assert report.plot_training_curves(history, str(path))
    assert path.stat().st_size > 1000
    assert not report.plot_training_curves({}, str(tmp_path / "none.png"))


@dataclasses.dataclass
class Pair:
    image_id: str
    image_path: str
    mask_path: str
    fov_path: str = None
    second_mask_path: str = None


def _write_ppm_gz(path, mask):
    rgb = np.dstack([mask] * 3)
    h, w = mask.shape
    with open(path, "wb") as f:
        f.write(gzip.compress(b"P6\n%d %d\n255\n" % (w, h) + rgb.tobytes()))


def test_second_observer_scored_against_the_first(tmp_path):
    rng = np.random.default_rng(3)
    first = rng.random((30, 40)) > 0.7
    second = first ^ (rng.random((30, 40)) > 0.9)
    region = np.zeros((30, 40), bool)
    region[5:25, 5:35] = True
    for name, m in (("im0001.ah.ppm.gz", first), ("im0001.vk.ppm.gz", second)):
        _write_ppm_gz(str(tmp_path / name), m.astype(np.uint8) * 255)
    pairs = [Pair("im0001", "x", str(tmp_path / "im0001.ah.ppm.gz"),
                  second_mask_path=str(tmp_path / "im0001.vk.ppm.gz")),
             Pair("im0002", "y", "z")]  # no second annotator: no row
    rows = report.second_observer_rows(pairs, {"im0001": region, "im0002": None})
    assert len(rows) == 1
    tp = np.sum(second & first)
    assert rows[0]["dice"] == pytest.approx(2 * tp / (second.sum() + first.sum()))
    s, f = second[region], first[region]
    assert rows[0]["fov_sensitivity"] == pytest.approx(np.sum(s & f) / f.sum())
    assert np.isnan(rows[0]["auc"])
    table = report.metrics_table({"im0001": rows[0], report.SECOND_OBSERVER: rows[0]})
    assert "| **second observer** |" in table and "n/a" in table
    assert rows[0]["fov_counts"]["tp"] == np.sum(s & f)  # for the pooled figures
    with pytest.raises(ValueError, match=r"im0001.ah.ppm.gz: 40x30, its FOV is 20x30"):
        report.second_observer_row(pairs[0], region[:, :20])

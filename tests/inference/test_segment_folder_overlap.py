"""vessel-segment's folder run overlaps decoding and writing with the model (issue 19,
section 2): while the model runs on photograph i, photograph i + 1 is being decoded and
photograph i - 1's outputs written. A fake predictor waits (with a timeout) for those
events inside its call; run one photograph after the other, they never come."""
from __future__ import annotations

import threading

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tiled_vessel_seg import imaging, storage  # noqa: E402
from tiled_vessel_seg.inference import segment  # noqa: E402

N = 4


class WaitingPredictor:
    """Thresholds the red channel; for photo i waits until photo i + 1's decoding
    and photo i - 1's writing have started."""
    threshold = 0.5
    enlarge = 1

    def __init__(self, decoding, writing):
        self.decoding, self.writing, self.calls, self.overlapped = decoding, writing, 0, []

    def __call__(self, image, threshold=None):
        i = int(image[0, 0, 1])  # the photo's index, in its green channel
        seen = True
        if i + 1 < N:
            seen &= self.decoding[i + 1].wait(10)
        if i >= 1:
            seen &= self.writing[i - 1].wait(10)
        self.overlapped.append(seen)
        probabilities = image[..., 0].astype(np.float32) / 255.0
        return tf.constant(probabilities), tf.constant(
            (probabilities > self.threshold).astype(np.uint8) * 255)


def test_decoding_and_writing_overlap_the_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    photos = []
    for i in range(N):
        image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
        image[0, 0, 1] = i
        path = tmp_path / f"p{i}.png"
        path.write_bytes(imaging.encode_png(image))
        photos.append((str(path), image))
    (tmp_path / "p9.png").write_bytes(b"not a png")  # a bad photo among them
    decoding = [threading.Event() for _ in range(N)]
    writing = [threading.Event() for _ in range(N)]
    read_image, write = imaging.read_image, storage.write_bytes_atomic

    def tracked_read(path, *args, **kwargs):
        if path.endswith(".png") and path[-5].isdigit() and int(path[-5]) < N:
            decoding[int(path[-5])].set()
        return read_image(path, *args, **kwargs)

    def tracked_write(path, data):
        name = str(path).rsplit("/", 1)[-1]
        if name[1:-4].isdigit():
            writing[int(name[1:-4])].set()
        return write(path, data)

    monkeypatch.setattr(imaging, "read_image", tracked_read)
    monkeypatch.setattr(storage, "write_bytes_atomic", tracked_write)
    predictor = WaitingPredictor(decoding, writing)
    out = tmp_path / "out"
    summary = segment.segment_files(predictor, [p for p, _ in photos] + [str(tmp_path / "p9.png")],
                                    str(out), progress=False)
    assert predictor.overlapped == [True] * N
    assert summary.written == [f"p{i}" for i in range(N)]
    assert [p for p, _ in summary.failed] == [str(tmp_path / "p9.png")]
    for i, (_, image) in enumerate(photos):
        mask = imaging.read_mask(str(out / f"p{i}.png"))
        np.testing.assert_array_equal(mask > 0, image[..., 0] / 255.0 > 0.5)
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(N)]

"""Shared fixtures. Keep this import-light: no TensorFlow at module level."""
from __future__ import annotations

import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_STARE_DIR = REPO_ROOT.parent / "shared" / "data" / "stare"

# Size and seed of the session's synthetic STARE folder.
SYNTHETIC_WIDTH = 160
SYNTHETIC_HEIGHT = 140
SYNTHETIC_NUM_IMAGES = 4
SYNTHETIC_SEED = 0


@pytest.fixture(scope="session")
def synthetic_stare_dir(tmp_path_factory) -> pathlib.Path:
    """A folder in STARE layout with 4 synthetic 160x140 (WxH) images, seed 0.

    stare-images/im0001.ppm.gz .. im0004.ppm.gz and labels-ah/im0001.ah.ppm.gz ..
    im0004.ah.ppm.gz. Made once per session; treat it as read-only.
    """
    from tiled_vessel_seg.synthetic import stare_layout  # pylint: disable=import-outside-toplevel

    out = tmp_path_factory.mktemp("synthetic_stare")
    stare_layout.write_synthetic_stare(
        str(out), SYNTHETIC_NUM_IMAGES, width=SYNTHETIC_WIDTH, height=SYNTHETIC_HEIGHT,
        seed=SYNTHETIC_SEED)
    return out


@pytest.fixture(scope="session")
def real_stare_dir() -> pathlib.Path:
    """../shared/data/stare (7 real STARE images, read-only); skips the test when absent."""
    images = REAL_STARE_DIR / "stare-images"
    if not images.is_dir() or not any(images.glob("*.ppm.gz")):
        pytest.skip(f"real STARE sample not found at {REAL_STARE_DIR}: "
                    "expected stare-images/*.ppm.gz (see ../shared/data/stare/README.md)")
    return REAL_STARE_DIR

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


@pytest.fixture(scope="session")
def make_tiny_model_dir(tmp_path_factory):
    """A function -> a model dir holding a tiny sigmoid model (seed 0) and its
    model_info.json: the smallest models the tools accept.

    tile, overlap, scale, source_sizes ([[W, H], ...]): model_info.json's fields;
    hidden: 0 for one Conv2D(1, 3), else Conv2D(hidden, 3, relu) before it.
    """
    def make(tile: int = 32, overlap: int = 8, scale: int = 1, hidden: int = 0,
             source_sizes=None) -> str:
        import keras
        from tiled_vessel_seg.model_info import ModelInfo, write_model_info
        keras.utils.set_random_seed(0)
        inp = keras.Input((tile, tile, 3))
        x = keras.layers.Conv2D(hidden, 3, padding="same", activation="relu")(inp) if hidden else inp
        out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
        folder = tmp_path_factory.mktemp("model")
        keras.Model(inp, out).save(str(folder / "best_model.keras"))
        write_model_info(str(folder), ModelInfo(tile_size=tile, scale=scale, overlap=overlap,
                                                threshold=0.5, source_sizes=source_sizes or []))
        return str(folder)
    return make

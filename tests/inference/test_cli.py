"""vessel-segment and vessel-export end to end on synthetic STARE images, metrics checked
against numpy written here, the SavedModel round trip, and the per-epoch callback."""
from __future__ import annotations

import csv
import gzip
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg.configs import schema  # noqa: E402
from tiled_vessel_seg import fov, imaging  # noqa: E402
from tiled_vessel_seg.inference import export, segment  # noqa: E402
from tiled_vessel_seg.inference.predictor import TiledPredictor, load_predictor  # noqa: E402
from tiled_vessel_seg.model_info import ModelInfo, write_model_info  # noqa: E402

TILE, OVERLAP, SCALE = 32, 8, 2


def tiny_model():
    keras.utils.set_random_seed(0)
    inp = keras.Input((TILE, TILE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inp, out)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    tiny_model().save(str(out / "best_model.keras"))
    write_model_info(str(out), ModelInfo(tile_size=TILE, scale=SCALE, overlap=OVERLAP,
                                         threshold=0.5))
    return out


def read_ppm_gz(path):
    """Independent P6 reader (not tensorflow-io): header of 3 tokens, then RGB bytes."""
    data = gzip.decompress(path.read_bytes())
    magic, w, h, maxval, rest = data.split(maxsplit=4)
    assert magic == b"P6" and maxval == b"255"
    return np.frombuffer(rest, np.uint8).reshape(int(h), int(w), 3)


def brute_force_metrics(probs, truth, threshold):
    pred = probs > threshold
    tp, fp = np.sum(pred & truth), np.sum(pred & ~truth)
    fn, tn = np.sum(~pred & truth), np.sum(~pred & ~truth)
    pos, neg = np.sort(probs[truth]), probs[~truth]
    # AUC: for each negative, positives above it + half the tied ones.
    above = pos.size - np.searchsorted(pos, neg, side="right")
    ties = np.searchsorted(pos, neg, side="right") - np.searchsorted(pos, neg, side="left")
    auc = (above.sum() + 0.5 * ties.sum()) / (pos.size * neg.size)
    return {"dice": 2 * tp / (2 * tp + fp + fn), "iou": tp / (tp + fp + fn),
            "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
            "accuracy": (tp + tn) / pred.size, "auc": auc}


def run_tool(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def segment_run(synthetic_stare_dir, model_dir, tmp_path_factory):
    """One vessel-segment run over the 4 synthetic photos plus a corrupt one."""
    inputs = tmp_path_factory.mktemp("inputs")
    for p in sorted((synthetic_stare_dir / "stare-images").glob("*.ppm.gz")):
        shutil.copy(p, inputs / p.name)
    (inputs / "im0009.ppm.gz").write_bytes(gzip.compress(b"P6\n10 10\n255\n" + b"\x00" * 7))
    out = tmp_path_factory.mktemp("segmented")
    result = run_tool("tiled_vessel_seg.inference.cli", "--model_dir", model_dir, "--output_dir", out,
                      "--input", inputs, "--input_scale", "native", "--save_probabilities",
                      "--overlay", "--masks_dir", synthetic_stare_dir / "labels-ah")
    return inputs, out, result


def test_cli_writes_masks_and_reports_the_corrupt_file(segment_run):
    inputs, out, result = segment_run
    assert result.returncode == 1, result.stderr[-2000:]
    assert "im0009.ppm.gz" in result.stderr and "FAILED" in result.stderr
    assert "4 written" in result.stdout and "1 failed" in result.stdout
    for stem in ("im0001", "im0002", "im0003", "im0004"):
        photo = read_ppm_gz(inputs / f"{stem}.ppm.gz")
        mask = tf.io.decode_png((out / f"{stem}.png").read_bytes()).numpy()[..., 0]
        assert mask.shape == photo.shape[:2] == (140, 160)
        assert set(np.unique(mask)) <= {0, 255}
        probs16 = tf.io.decode_png((out / f"{stem}_probabilities.png").read_bytes(),
                                   dtype=tf.uint16).numpy()[..., 0]
        near = np.abs(probs16 / 65535.0 - 0.5) < 1e-4   # rounding may cross the threshold
        np.testing.assert_array_equal((mask == 255)[~near], (probs16 / 65535.0 > 0.5)[~near])
        overlay = tf.io.decode_png((out / f"{stem}_overlay.png").read_bytes()).numpy()
        np.testing.assert_array_equal(overlay[mask == 0], photo[mask == 0])
        if (mask > 0).any():
            assert (overlay[mask > 0][:, 1] >= photo[mask > 0][:, 1]).all()
    assert not (out / "im0009.png").exists()
    assert not list(out.glob("*.tmp"))


def test_cli_probabilities_and_metrics_match_numpy(segment_run, model_dir, synthetic_stare_dir):
    inputs, out, _ = segment_run
    model = keras.models.load_model(str(model_dir / "best_model.keras"), compile=False,
                                    safe_mode=True)
    # vessel-segment's default grid: the fitted one (issue 19)
    predictor = TiledPredictor(model, min_overlap=8, scale=SCALE, input_scale="native")
    with open(out / "metrics.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"im0001", "im0002", "im0003", "im0004", "mean", "std"}
    values = {}
    for stem in ("im0001", "im0002", "im0003", "im0004"):
        photo = read_ppm_gz(inputs / f"{stem}.ppm.gz")
        truth = read_ppm_gz(synthetic_stare_dir / "labels-ah" / f"{stem}.ah.ppm.gz")[..., 0] > 127
        probs = predictor(photo)[0].numpy()
        probs16 = tf.io.decode_png((out / f"{stem}_probabilities.png").read_bytes(),
                                   dtype=tf.uint16).numpy()[..., 0]
        np.testing.assert_allclose(probs16 / 65535.0, probs, atol=1 / 65535 + 1e-6)
        whole = brute_force_metrics(probs, truth, 0.5)
        region = fov.fov_mask(photo)
        inside = brute_force_metrics(probs[region], truth[region], 0.5)
        expected = {**whole, **{f"fov_{k}": v for k, v in inside.items()}}
        for key, value in expected.items():
            assert float(rows[stem][key]) == pytest.approx(value, abs=2e-6), (stem, key)
        values[stem] = expected
    for key in values["im0001"]:
        column = np.array([values[s][key] for s in values])
        assert float(rows["mean"][key]) == pytest.approx(column.mean(), abs=2e-6)
        assert float(rows["std"][key]) == pytest.approx(column.std(), abs=2e-6)


def test_segment_files_skips_existing_unless_overwrite(synthetic_stare_dir, model_dir, tmp_path):
    predictor = load_predictor(str(model_dir), input_scale="native")
    files = sorted(str(p) for p in (synthetic_stare_dir / "stare-images").glob("*.ppm.gz"))[:2]
    first = segment.segment_files(predictor, files, str(tmp_path), progress=False)
    assert first.written == ["im0001", "im0002"] and not first.failed
    (tmp_path / "im0001.png").write_bytes(b"sentinel")
    again = segment.segment_files(predictor, files, str(tmp_path), progress=False)
    assert again.skipped == ["im0001", "im0002"] and not again.written
    assert (tmp_path / "im0001.png").read_bytes() == b"sentinel"
    redo = segment.segment_files(predictor, files, str(tmp_path), overwrite=True, progress=False)
    assert redo.written == ["im0001", "im0002"]
    assert (tmp_path / "im0001.png").read_bytes()[:4] == b"\x89PNG"


def test_expand_inputs_and_truth_pairing(synthetic_stare_dir, tmp_path):
    images = synthetic_stare_dir / "stare-images"
    files, unmatched = segment.expand_inputs([str(images / "im000[12].ppm.gz"), str(images),
                                          str(tmp_path / "nothing*.png")])
    assert [os.path.basename(f) for f in files] == [
        "im0001.ppm.gz", "im0002.ppm.gz", "im0003.ppm.gz", "im0004.ppm.gz"]
    assert unmatched == [str(tmp_path / "nothing*.png")]
    (tmp_path / "im0001.png").write_bytes(b"x")
    (tmp_path / "im0001.ah.ppm.gz").write_bytes(b"x")
    (tmp_path / "im0002.ah.ppm.gz").write_bytes(b"x")
    index = segment.truth_index(str(tmp_path))
    assert index == {"im0001": str(tmp_path / "im0001.png"),
                     "im0002": str(tmp_path / "im0002.ah.ppm.gz")}


def test_cli_bad_model_dir_is_named(synthetic_stare_dir, tmp_path):
    result = run_tool("tiled_vessel_seg.inference.cli", "--model_dir", tmp_path / "nope", "--output_dir",
                      tmp_path, "--input", synthetic_stare_dir / "stare-images")
    assert result.returncode == 2
    assert f"{tmp_path / 'nope' / 'model_info.json'}: not found" in result.stderr


def test_export_round_trip(model_dir, tmp_path):
    out = tmp_path / "saved"
    result = run_tool("tiled_vessel_seg.inference.export", "--model_dir", model_dir, "--output_dir", out,
                      "--blend", "linear", "--tta", "flips")
    assert result.returncode == 0, result.stderr[-2000:]
    ops = export.graph_op_types(str(out))
    assert {"DecodeImage", "EncodePng", "While", "Conv2D"} <= ops
    assert not [op for op in ops if op.startswith("IO>") or "PyFunc" in op]
    serving = tf.saved_model.load(str(out)).signatures["serving_default"]
    predictor = load_predictor(str(model_dir), blend="linear", tta="flips")
    image = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    for encoded in (tf.io.encode_png(image), tf.io.encode_jpeg(image, quality=95)):
        result = serving(image_bytes=encoded)
        # the CLI's decoder (OpenCV): the export decodes JPEG bit for bit alike
        probs, mask = predictor(imaging.decode_image_bytes(
            "photo.jpg" if tf.io.is_jpeg(encoded) else "photo.png", encoded.numpy()))
        np.testing.assert_allclose(result["probabilities"].numpy(), probs.numpy(), atol=1e-6)
        served_mask = tf.io.decode_png(result["mask_png_bytes"]).numpy()[..., 0]
        np.testing.assert_array_equal(served_mask, mask.numpy())


def test_epoch_callback_writes_masks(synthetic_stare_dir, tmp_path):
    from tiled_vessel_seg.pipeline import training_callbacks
    # The model's facts come from its model_info.json (scale 2), not the config (scale 1).
    config = schema.Config(
        train=schema.TrainConfig(num_infer_images=2, epoch_change_tiledinfer=True),
        tiledinfer=schema.TiledInferConfig(images_dir=str(synthetic_stare_dir / "stare-images"),
                                           input_scale="native"),
        preprocess=schema.PreprocessConfig(scale=1))
    write_model_info(str(tmp_path), ModelInfo(tile_size=TILE, scale=SCALE, overlap=OVERLAP))
    model = tiny_model()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).random((4, TILE, TILE, 3)).astype(np.float32)
    y = (x[..., :1] > 0.5).astype(np.float32)
    callbacks = training_callbacks.from_config(config, str(tmp_path))
    assert len(callbacks) == 1
    model.fit(x, y, epochs=2, batch_size=2, verbose=0, callbacks=callbacks)
    written = sorted(p.name for p in (tmp_path / "epoch_change_tiledinfer").iterdir())
    assert written == ["Epoch_1_im0001.png", "Epoch_1_im0002.png",
                       "Epoch_2_im0001.png", "Epoch_2_im0002.png"]
    mask = tf.io.decode_png((tmp_path / "epoch_change_tiledinfer" / "Epoch_2_im0001.png")
                            .read_bytes()).numpy()
    assert mask.shape == (140, 160, 1)
    # The masks are the predictor's on the current weights.
    photo = read_ppm_gz(synthetic_stare_dir / "stare-images" / "im0001.ppm.gz")
    expected = TiledPredictor(model, overlap=OVERLAP, scale=SCALE, input_scale="native",
                              batch_size=4)(photo)[1].numpy()
    np.testing.assert_array_equal(mask[..., 0], expected)


def test_tiling_options_precedence_flag_then_config_then_model_info(tmp_path):
    """Flags win; --config/--set fill the rest from [tiledinfer]; without them overlap
    and threshold are left to model_info.json (None)."""
    import json
    code = ("import json, sys; from absl import flags; from tiled_vessel_seg import cli_app; "
            "from tiled_vessel_seg.inference import predictor_flags; "
            "cli_app.define_common_flags(); predictor_flags.define_flags(); "
            "flags.FLAGS(sys.argv); print(json.dumps(predictor_flags.predictor_options()))")

    def options(*args):
        result = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                                capture_output=True, text=True, timeout=300)  # imports TF
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    assert options() == {"overlap": None, "batch_size": 4, "blend": "gaussian", "tta": "none",
                         "threshold": None, "input_scale": "auto", "min_overlap": 8,
                         "tiler": "auto"}  # the fitted grid is the default (issue 19)
    assert options("--overlap", 32)["min_overlap"] is None  # --overlap: the margin grid
    config = tmp_path / "c.config"
    config.write_text("[tiledinfer]\noverlap = 32\nblend = 'linear'\nthreshold = 0.4\n")
    assert options("--config", config, "--set", "tiledinfer.tta=d4", "--blend", "none") == {
        "overlap": 32, "batch_size": 4, "blend": "none", "tta": "d4", "threshold": 0.4,
        "input_scale": "auto", "min_overlap": None, "tiler": "auto"}
    # --set names batch_size only: overlap stays model_info.json's (issue 18 item 6)
    assert options("--set", "tiledinfer.batch_size=2")["overlap"] is None
    assert options("--set", "tiledinfer.batch_size=2")["batch_size"] == 2
    fitted = options("--min_overlap", "8", "--tiler", "extract_patches")
    assert (fitted["min_overlap"], fitted["tiler"]) == (8, "extract_patches")
    assert options("--set", "tiledinfer.min_overlap=4")["min_overlap"] == 4

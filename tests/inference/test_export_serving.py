"""The export and the CLI agree (issue 18 item 16): one JPEG decoding (the export's graph
decodes like OpenCV, bit for bit), and the TF Serving REST request the docs show has
the shape the exported signature takes (no server needed: its parsing is emulated)."""
from __future__ import annotations

import base64
import json
import pathlib

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tiled_vessel_seg import imaging  # noqa: E402
from tiled_vessel_seg.inference import export  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
REAL_CHASE = ROOT.parent / "shared" / "data" / "chase_db1"


def jpeg_photo(path, seed=0, quality=85):
    """A textured 150x130 photo written as JPEG (chroma-subsampled, so decoders differ)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (13, 15, 3)).astype(np.float32)
    image = cv2.resize(coarse, (150, 130), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(data.tobytes())
    return path


def test_the_graph_decodes_jpeg_as_the_cli_does(tmp_path):
    path = jpeg_photo(tmp_path / "photo.jpg")
    ours = imaging.read_image(str(path))
    graph = export.decode_photo_graph(tf.constant(path.read_bytes())).numpy()
    np.testing.assert_array_equal(graph, ours)
    # TF's default IDCT does differ on this photo: the test would see a wrong decoder
    default = tf.io.decode_jpeg(path.read_bytes(), channels=3).numpy()
    assert (default != ours).any()
    png = tmp_path / "photo.png"
    cv2.imwrite(str(png), ours[..., ::-1])
    np.testing.assert_array_equal(export.decode_photo_graph(tf.constant(png.read_bytes())),
                                  ours)


@pytest.mark.real_data
def test_real_chase_db1_jpegs_decode_alike():
    photos = sorted(REAL_CHASE.glob("Image_*.jpg"))[:3]
    if not photos:
        pytest.skip(f"real CHASE_DB1 sample not found at {REAL_CHASE}")
    for path in photos:
        np.testing.assert_array_equal(
            export.decode_photo_graph(tf.constant(path.read_bytes())).numpy(),
            imaging.read_image(str(path)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from tiled_vessel_seg.inference.predictor import load_predictor
    from tiled_vessel_seg.model_info import ModelInfo, write_model_info
    model_dir = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    out = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    keras.Model(inp, out).save(str(model_dir / "best_model.keras"))
    write_model_info(str(model_dir), ModelInfo(tile_size=32, scale=1, overlap=8,
                                               threshold=0.5))
    predictor = load_predictor(str(model_dir), input_scale="native")
    serving = tmp_path_factory.mktemp("serving") / "1"
    export.export_saved_model(predictor, str(serving))
    return predictor, serving


def test_export_and_cli_give_the_same_probabilities_on_a_jpeg(exported, tmp_path):
    predictor, serving = exported
    path = jpeg_photo(tmp_path / "p.jpg", seed=3)
    signature = tf.saved_model.load(str(serving)).signatures[export.SIGNATURE]
    served = signature(image_bytes=tf.constant(path.read_bytes()))
    probabilities, mask = predictor(imaging.read_image(str(path)))
    np.testing.assert_allclose(served["probabilities"].numpy(), probabilities.numpy(),
                               atol=1e-6)
    served_mask = tf.io.decode_png(served["mask_png_bytes"]).numpy()[..., 0]
    np.testing.assert_array_equal(served_mask > 0, mask.numpy() > 0)


def test_rest_request_matches_the_signature(exported, tmp_path):
    _, serving = exported
    photo = jpeg_photo(tmp_path / "q.jpg", seed=5).read_bytes()
    body = json.loads(json.dumps(export.serving_request(photo)))   # what goes on the wire
    signature = tf.saved_model.load(str(serving)).signatures[body["signature_name"]]
    specs = signature.structured_input_signature[1]
    assert set(body["inputs"]) == set(specs)
    tensors = {}
    for name, value in body["inputs"].items():
        # TF Serving's columnar form: the value is the tensor; {"b64": ...} is binary
        assert set(value) == {"b64"}
        spec = specs[name]
        assert spec.dtype == tf.string and spec.shape.rank == 0   # one scalar string
        tensors[name] = tf.constant(base64.b64decode(value["b64"]))
    assert tensors["image_bytes"].numpy() == photo
    outputs = signature(**tensors)
    assert set(outputs) == {"probabilities", "mask_png_bytes"}
    # string outputs come back base64 only when their name ends in _bytes
    assert all(name.endswith("_bytes") for name, t in outputs.items() if t.dtype == tf.string)
    assert outputs["probabilities"].shape == (130, 150)


def test_the_docs_show_the_same_request():
    text = (ROOT / "docs" / "tools.md").read_text(encoding="utf-8")
    assert "tensorflow/serving" in text and "/v1/models/vessel:predict" in text
    assert '{"signature_name": "serving_default", "inputs": {"image_bytes": {"b64": ' in text


def test_segment_docstring_states_each_shipped_models_threshold():
    """segment()'s docstring, each model_info.json and each model card agree on the
    threshold a shipped model uses by default."""
    from tiled_vessel_seg.inference import api
    doc = " ".join(api.segment.__doc__.split())
    for name in ("fundus_small", "stare_small"):
        info = json.loads((ROOT / "models" / name / "model_info.json").read_text())
        card = " ".join((ROOT / "models" / name / "MODEL_CARD.md").read_text(
            encoding="utf-8").split())
        assert f"{name}: {info['threshold']:g}," in doc, name
        assert (f"probabilities > {info['threshold']:g} " in card
                or f"fixed at {info['threshold']:g}" in card), name
    assert "validation image" not in doc and "F1-maximising" not in doc

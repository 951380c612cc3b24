"""Record schema v2: every image/mask encoding round-trips, on synthetic and real tiles.

Expected values are computed independently: the tile itself (lossless encodings), a PSNR
against it (JPEG), TensorFlow's own tf.train.Example for the hand-written serialiser.
"""
import gzip
import itertools

import cv2
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tiled_vessel_seg.tfrecords import encoding, example_proto, schema  # noqa: E402
from tiled_vessel_seg.trainer.fake_data import fake_tile  # noqa: E402

ALL_ENCODINGS = [encoding.TileEncoding(image, mask)
                 for image, mask in itertools.product(encoding.IMAGE_ENCODINGS,
                                                      encoding.MASK_ENCODINGS)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def record(image, mask, y=0, x=0):
    return schema.TileRecord(image, mask, "im0001", y, x, 5, schema.NO_AUGMENTATION, "a/im0001.ppm")


def test_hand_written_example_equals_tensorflows():
    features = {"b": b"\x00\xffbytes", "empty": b"", "i": 7, "neg": -1, "big": 2 ** 40,
                "f": 0.1, "z": 0}
    mine = tf.train.Example.FromString(example_proto.serialize_example(features))
    theirs = tf.train.Example(features=tf.train.Features(feature={
        "b": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"\x00\xffbytes"])),
        "empty": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b""])),
        "i": tf.train.Feature(int64_list=tf.train.Int64List(value=[7])),
        "neg": tf.train.Feature(int64_list=tf.train.Int64List(value=[-1])),
        "big": tf.train.Feature(int64_list=tf.train.Int64List(value=[2 ** 40])),
        "f": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1])),
        "z": tf.train.Feature(int64_list=tf.train.Int64List(value=[0]))}))
    assert mine == theirs
    parsed = tf.io.parse_single_example(example_proto.serialize_example(features), {
        "neg": tf.io.FixedLenFeature([], tf.int64), "f": tf.io.FixedLenFeature([], tf.float32)})
    assert int(parsed["neg"]) == -1 and float(parsed["f"]) == np.float32(0.1)
    with pytest.raises(TypeError):
        example_proto.serialize_example({"s": "text"})


@pytest.mark.parametrize("enc", ALL_ENCODINGS, ids=lambda e: f"{e.image}-{e.mask}")
@pytest.mark.parametrize("shape", [(32, 32), (13, 7)])  # 13 x 7 = 91 bits: not whole bytes
def test_synthetic_round_trip(enc, shape):
    rng = np.random.default_rng(1)
    image, mask = fake_tile(rng, max(shape))
    image, mask = np.ascontiguousarray(image[:shape[0], :shape[1]]), mask[:shape[0], :shape[1]]
    serialized = schema.encode_example(record(image, mask, 3, -1), enc)
    fmt = schema.RecordFormat(schema.SCHEMA_VERSION, enc)
    assert schema.record_format_of(serialized) == schema.RecordFormat(2, encoding.TileEncoding(
        enc.image, enc.mask))  # the quality is the dataset's, not the record's
    got_image, got_mask = schema.tile_decoder(fmt)(tf.constant(serialized))
    assert got_image.dtype == tf.uint8 and tuple(got_image.shape) == (*shape, 3)
    assert tuple(got_mask.shape) == (*shape, 1)
    np.testing.assert_array_equal(got_mask.numpy()[..., 0], (mask > 0).astype(np.uint8))
    if enc.image == "jpeg":
        assert psnr(got_image.numpy(), image) > 30
    else:
        np.testing.assert_array_equal(got_image.numpy(), image)
    # the numpy decoders (tools) agree with the graph
    np.testing.assert_array_equal(
        encoding.decode_mask(encoding.encode_mask(mask, enc), enc, *shape), mask > 0)
    numpy_image = encoding.decode_image(encoding.encode_image(image, enc), enc, *shape)
    if enc.image == "jpeg":  # OpenCV's and TensorFlow's IDCTs differ by a few grey levels
        assert psnr(numpy_image, image) > 30
    else:
        np.testing.assert_array_equal(numpy_image, image)

    image_out, mask_out, meta = schema.decode_example_numpy(serialized)
    assert set(np.unique(mask_out)) <= {0, 255}
    assert meta["schema_version"] == 2 and meta["image/encoding"] == enc.image
    assert meta["mask/encoding"] == enc.mask and (meta["tile_y"], meta["tile_x"]) == (3, -1)
    assert meta["vessel_fraction"] == pytest.approx(np.count_nonzero(mask) / mask.size)


def test_parse_function_holds_only_its_own_decoders():
    """One parse function per dataset: its graph has no op of another encoding."""
    ops_of = {}
    for enc in ALL_ENCODINGS:
        fn = tf.function(schema.tile_decoder(schema.RecordFormat(2, enc)))
        graph = fn.get_concrete_function(tf.TensorSpec([], tf.string)).graph
        ops_of[enc] = {op.type for op in graph.get_operations()}
    for enc, ops in ops_of.items():
        assert ("DecodeJpeg" in ops) == (enc.image == "jpeg")
        assert ("DecodePng" in ops) == (enc.image == "png" or enc.mask == "png")
        assert ("GatherV2" in ops) == (enc.mask == "packed")  # the bits-of-a-byte table
        assert not {"If", "StatelessIf", "Case", "StatelessCase", "DecodeImage"} & ops


def test_bad_formats_are_refused():
    with pytest.raises(ValueError, match="image encoding"):
        encoding.TileEncoding("webp")
    with pytest.raises(ValueError, match="mask encoding"):
        encoding.TileEncoding("png", "jpeg")  # masks are always lossless
    with pytest.raises(ValueError, match="jpeg_quality"):
        encoding.TileEncoding(jpeg_quality=0)
    with pytest.raises(ValueError, match="version 1"):
        schema.RecordFormat(1, encoding.TileEncoding("jpeg", "png"))
    with pytest.raises(ValueError, match="version 3"):
        schema.RecordFormat(3)


def _read_ppm_gz(path, flags):
    return cv2.imdecode(np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8), flags)


@pytest.mark.real_data
def test_real_tiles_every_encoding(real_stare_dir):
    """im0001 enlarged 5x by cv2 INTER_CUBIC: JPEG >= 49 dB, PNG/raw exact, masks bit-exact."""
    photo = _read_ppm_gz(real_stare_dir / "stare-images" / "im0001.ppm.gz", cv2.IMREAD_COLOR)[..., ::-1]
    label = _read_ppm_gz(real_stare_dir / "labels-ah" / "im0001.ah.ppm.gz", cv2.IMREAD_GRAYSCALE)
    big = cv2.resize(photo, (3500, 3025), interpolation=cv2.INTER_CUBIC)
    big_mask = cv2.resize(np.where(label > 127, 255, 0).astype(np.uint8), (3500, 3025),
                          interpolation=cv2.INTER_LINEAR) > 127
    # A vessel-rich tile at the centre, the optic-disc side, a FOV border and a corner.
    origins = [(1024, 1536), (1024, 512), (2048, 2560), (0, 0)]
    for enc in ALL_ENCODINGS:
        decode = schema.tile_decoder(schema.RecordFormat(2, enc))
        for y, x in origins:
            tile = np.ascontiguousarray(big[y:y + 512, x:x + 512])
            mask = big_mask[y:y + 512, x:x + 512].astype(np.uint8)
            image, got_mask = decode(tf.constant(schema.encode_example(record(tile, mask, y, x), enc)))
            np.testing.assert_array_equal(got_mask.numpy()[..., 0], mask)
            if enc.image == "jpeg":
                assert psnr(image.numpy(), tile) >= 49.0, (enc, y, x)  # as README quotes
            else:
                np.testing.assert_array_equal(image.numpy(), tile)


def _photo_like_tile(size: int = 256) -> np.ndarray:
    """A smooth reddish tile with vessel-like dark lines and fine noise (fake_data's
    generator, seed fixed): JPEG's quality shows in its size and error."""
    image, _ = fake_tile(np.random.default_rng(7), size)
    noise = np.random.default_rng(8).normal(0, 3, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def test_jpeg_quality_is_used():
    """A planted bug encoding at 95 whatever the dataset's quality went unnoticed: a lower
    quality must give a smaller record and a lower PSNR through the training decoder."""
    tile = _photo_like_tile()
    mask = np.zeros(tile.shape[:2], np.uint8)
    results = {}
    for quality in (30, 95):
        enc = encoding.TileEncoding("jpeg", "packed", quality)
        serialized = schema.encode_example(record(tile, mask), enc)
        image, _ = schema.tile_decoder(schema.RecordFormat(2, enc))(tf.constant(serialized))
        results[quality] = (len(serialized), psnr(image.numpy(), tile))
    (size_30, psnr_30), (size_95, psnr_95) = results[30], results[95]
    assert size_30 < 0.5 * size_95, results
    assert psnr_30 < psnr_95 - 5.0, results
    # and the JPEG in the record is the one OpenCV writes at that quality
    enc_30 = encoding.TileEncoding("jpeg", "packed", 30)
    ok, reference = cv2.imencode(".jpg", cv2.cvtColor(tile, cv2.COLOR_RGB2BGR),
                                 [cv2.IMWRITE_JPEG_QUALITY, 30])
    assert ok and encoding.encode_image(tile, enc_30) == reference.tobytes()


@pytest.mark.parametrize("quality", [30, 95])
def test_training_jpeg_decoder_is_libjpegs_accurate_idct_exactly(quality):
    """The graph decodes JPEG tiles with the accurate integer IDCT: bit for bit what
    OpenCV's libjpeg decoder (JDCT_ISLOW) gives, an independent decoder. TF's default
    (INTEGER_FAST) differs by up to 7 grey levels and costs ~4 dB on real tiles, which
    the 45 dB bar of the real-data test did not notice."""
    tile = _photo_like_tile()
    enc = encoding.TileEncoding("jpeg", "packed", quality)
    data = encoding.encode_image(tile, enc)
    serialized = schema.encode_example(record(tile, np.zeros(tile.shape[:2], np.uint8)), enc)
    image, _ = schema.tile_decoder(schema.RecordFormat(2, enc))(tf.constant(serialized))
    opencv = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                          cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(image.numpy(), opencv)

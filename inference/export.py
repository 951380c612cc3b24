"""`vessel-export`: a SavedModel for TF Serving, core TF ops only.

  vessel-export [--model stare_small|M] --output_dir S [--config C --set tiledinfer.tta=d4]

serving_default: image_bytes (scalar string, PNG or JPEG; GIF/BMP also decode) ->
  probabilities float32 [H, W], mask_png_bytes (scalar string, 8-bit PNG, 0/255).
The whole tiled predictor (padding, tiles, batched model, blending, TTA, native-scale
enlargement, the same cubic kernel as the Beam job) is inside the signature. PPM and TIFF
have no core TF decoder: convert such photos to PNG first.
"""
from __future__ import annotations

import sys

from absl import app, flags

from tiled_vessel_seg import cli_app
from tiled_vessel_seg.inference import predictor_flags

FLAGS = flags.FLAGS


def export_saved_model(predictor, output_dir: str) -> str:
    """Writes `predictor` as a SavedModel with the serving_default signature above."""
    import keras
    import tensorflow as tf

    def serve(image_bytes):
        image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8,
                                   expand_animations=False)
        probabilities, mask = predictor.segment_graph(image)
        return {"probabilities": probabilities,
                "mask_png_bytes": tf.io.encode_png(mask[..., None])}

    archive = keras.export.ExportArchive()
    archive.track(predictor.model)
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
    archive.write_out(output_dir, verbose=False)
    return output_dir


def graph_op_types(saved_model_dir: str) -> set[str]:
    """Every op type in the SavedModel's graph and its function library."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tiled_vessel_seg import storage
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(storage.read_bytes(storage.join(saved_model_dir, "saved_model.pb")))
    ops = set()
    for meta in proto.meta_graphs:
        ops.update(n.op for n in meta.graph_def.node)
        for fn in meta.graph_def.library.function:
            ops.update(n.op for n in fn.node_def)
    return ops


def define_flags() -> None:
    flags.DEFINE_string("output_dir", None, "SavedModel directory to write (local or gs://).")
    predictor_flags.define_flags()


def main(argv: list[str]) -> int:
    from tiled_vessel_seg import model_info
    from tiled_vessel_seg.inference import predictor as predictor_lib
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    model_dir = predictor_flags.model_dir("vessel-export")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    options = predictor_flags.predictor_options()
    if options["input_scale"] == "auto":  # decided per image: a SavedModel serves one scale
        options["input_scale"] = "enlarged"
        print("vessel-export: input scale enlarged (auto is decided per image; a SavedModel "
              "serves one scale: pass --input_scale native for photos as taken)")
    elif options["input_scale"] not in ("native", "enlarged"):
        raise app.UsageError("vessel-export serves photos at one scale: --input_scale native "
                             "or enlarged (a resampling factor is applied outside the graph)")
    try:
        predictor = predictor_lib.load_predictor(model_dir, **options)
    except (model_info.ModelDirError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    try:
        export_saved_model(predictor, FLAGS.output_dir)
    except Exception as e:  # TF and OS errors of an unwritable --output_dir
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise cli_app.ToolError(f"{FLAGS.output_dir}: cannot write the SavedModel: "
                                f"{reason}") from None
    foreign = sorted(op for op in graph_op_types(FLAGS.output_dir) if op.startswith("IO>"))
    if foreign:
        print(f"error: the export holds non-core ops {foreign}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.output_dir}: serving_default(image_bytes: PNG/JPEG string) -> "
          f"probabilities float32 [H, W], mask_png_bytes; tiles cut by {predictor.tiler}"
          + (" (auto, decided here: pass --tiler extract_patches for a GPU server)"
             if options.get("tiler") == "auto" else ""))
    return 0


def run():
    """Console entry point `vessel-export`."""
    cli_app.run(__name__, __doc__, define_flags, main)


if __name__ == "__main__":
    run()

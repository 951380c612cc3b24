"""`vessel-export`: a SavedModel for TF Serving, core TF ops only.

  vessel-export [--model fundus_small|M] --output_dir S [--config C --set tiledinfer.tta=d4]
  vessel-export --output_dir S --overwrite      # replace the SavedModel already in S

serving_default: image_bytes (scalar string, PNG or JPEG; GIF/BMP also decode) ->
  probabilities float32 [H, W], mask_png_bytes (scalar string, 8-bit PNG, 0/255).
JPEG is decoded with libjpeg's accurate integer IDCT (dct_method INTEGER_ACCURATE), as
OpenCV decodes it for vessel-segment: the same photo gives the same pixels, bit for bit,
so the export and the CLI give the same masks (TF's default IDCT was up to 4 grey levels
off on 43 % of a CHASE_DB1 photo's pixels). TF Serving's REST API takes the photo as
base64: `serving_request` builds the body (docs/tools.md, vessel-export).
The whole tiled predictor (padding, tiles, batched model, blending, TTA, native-scale
enlargement, the same cubic kernel as the Beam job) is inside the signature. PPM and TIFF
have no core TF decoder: convert such photos to PNG first.

The SavedModel is written into a staging folder beside S (S.staging-PID-XXXX) and renamed
to S when complete, so S holds a whole export or the one before it, never a mix or the
saved_model.pb.tmp* files of a failed write (on gs:// the final move is file by file). A
folder S that is not empty is refused unless --overwrite.
Exit status: 0 written; 1 the export holds non-core ops (not written); 2 flags, model
dir, or an output folder that is not empty (without --overwrite) or cannot be written.
"""
from __future__ import annotations

import base64
import os
import sys
import uuid

from absl import app, flags

from tiled_vessel_seg import cli_app, model_info, storage
from tiled_vessel_seg.inference import predictor_flags
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # vessel-export --help imports no TensorFlow
    import keras
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2
    from tiled_vessel_seg.inference import predictor as predictor_lib

FLAGS = flags.FLAGS


SIGNATURE = "serving_default"
INPUT_NAME = "image_bytes"


def decode_photo_graph(image_bytes):
    """uint8 RGB [H, W, 3] of a PNG/JPEG/GIF/BMP string tensor, in core TF ops. JPEG is
    decoded with the accurate integer IDCT, the one OpenCV (vessel-segment's decoder,
    tiled_vessel_seg.imaging) uses: the same pixels, bit for bit."""
    return tf.cond(
        tf.io.is_jpeg(image_bytes),
        lambda: tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(image_bytes, channels=3, dtype=tf.uint8,
                                   expand_animations=False))


def serving_request(image_bytes: bytes) -> dict:
    """The JSON body of a TF Serving REST predict request for one photograph (POST to
    http://HOST:8501/v1/models/NAME:predict): the columnar "inputs" form, since the
    signature takes one scalar string, not a batch; the bytes go base64 in {"b64": ...}.
    The response is {"outputs": {"probabilities": [[...]], "mask_png_bytes": {"b64":
    ...}}} (TF Serving base64-encodes string outputs whose name ends in _bytes)."""
    return {"signature_name": SIGNATURE,
            "inputs": {INPUT_NAME: {"b64": base64.b64encode(image_bytes).decode("ascii")}}}


def export_saved_model(predictor, output_dir: str) -> str:
    """Writes `predictor` as a SavedModel with the serving_default signature above."""
    def serve(image_bytes):
        image = decode_photo_graph(image_bytes)
        probabilities, mask = predictor.segment_graph(image)
        return {"probabilities": probabilities,
                "mask_png_bytes": tf.io.encode_png(mask[..., None])}

    archive = keras.export.ExportArchive()
    archive.track(predictor.model)
    archive.add_endpoint(name="serving_default", fn=serve,
                         input_signature=[tf.TensorSpec([], tf.string, name="image_bytes")])
    archive.write_out(output_dir, verbose=False)
    return output_dir


STAGING_INFIX = ".staging-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_dead_staging(output_dir: str) -> list[str]:
    """Removes the staging folders `S.staging-PID-XXXX` beside `output_dir` whose process
    is gone (a killed export); returns them. Local folders only."""
    removed = []
    if storage.is_remote(output_dir):
        return removed
    prefix = output_dir.rstrip("/") + STAGING_INFIX
    for path in storage.glob(prefix + "*"):
        pid = path[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            storage.remove_tree(path)
            removed.append(path)
    return removed


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    """Refuses (cli_app.ToolError) a path that is a file, or a non-empty folder without
    `overwrite`: the export would mix with what is there."""
    if not storage.exists(output_dir):
        return
    if not storage.isdir(output_dir):
        raise cli_app.ToolError(f"{output_dir}: exists and is not a folder")
    if storage.listdir(output_dir) and not overwrite:
        raise cli_app.ToolError(f"{output_dir}: not empty; pass --overwrite to replace its "
                                f"contents with the SavedModel")


def install_folder(staging: str, output_dir: str) -> None:
    """Puts the complete folder `staging` in place of `output_dir` (replacing it). Local:
    two renames, so output_dir is never a mix of old and new files; remote: file by file."""
    if not storage.is_remote(output_dir):
        old = None
        if os.path.lexists(output_dir):
            old = f"{output_dir.rstrip('/')}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(output_dir, old)
        os.rename(staging, output_dir)
        if old:
            storage.remove_tree(old)
        return
    storage.remove_tree(output_dir)
    for folder, _, names in tf.io.gfile.walk(staging):
        target = storage.join(output_dir, folder[len(staging):].lstrip("/"))
        storage.makedirs(target)
        for name in names:
            storage.rename(storage.join(folder, name), storage.join(target, name))
    storage.remove_tree(staging)


def graph_op_types(saved_model_dir: str) -> set[str]:
    """Every op type in the SavedModel's graph and its function library."""
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
    flags.DEFINE_bool("overwrite", False, "Replace what is in a non-empty --output_dir "
                      "(without it such a folder is refused).")
    predictor_flags.define_flags()


def export_options(options: dict) -> dict:
    """predictor_flags' options for a SavedModel, which serves photos at one scale: auto
    (decided per image) becomes enlarged, with a note; a resampling factor is refused
    (app.UsageError)."""
    options = dict(options)
    if options["input_scale"] == "auto":  # decided per image: a SavedModel serves one scale
        options["input_scale"] = "enlarged"
        print("vessel-export: input scale enlarged (auto is decided per image; a SavedModel "
              "serves one scale: pass --input_scale native for photos as taken)")
    elif options["input_scale"] not in ("native", "enlarged"):
        raise app.UsageError("vessel-export serves photos at one scale: --input_scale native "
                             "or enlarged (a resampling factor is applied outside the graph)")
    return options


def export_model(model_dir: str, options: dict, output_dir: str, overwrite: bool = False) -> int:
    """Writes the tiled predictor of `model_dir` with `options` (load_predictor's keyword
    arguments, one input scale) as a SavedModel at `output_dir`, through a staging folder
    beside it; returns 0, or 1 when the graph holds non-core ops (nothing written).

    Raises cli_app.ToolError for an unusable model dir, or an output_dir that is not
    empty (without `overwrite`) or cannot be written.
    """
    try:
        predictor = predictor_lib.load_predictor(model_dir, **options)
    except (model_info.ModelDirError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    given = output_dir
    output_dir = output_dir.rstrip("/") or output_dir
    remove_dead_staging(output_dir)
    check_output_dir(output_dir, overwrite)
    # Written beside the target and renamed in when complete: a full disk left
    # saved_model.pb.tmp* files in the target that survived a successful rerun.
    staging = f"{output_dir}{STAGING_INFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            parent = os.path.dirname(output_dir)
            if parent:
                storage.makedirs(parent)
            export_saved_model(predictor, staging)
        except Exception as e:  # TF and OS errors of an unwritable --output_dir
            reason = (e.strerror if isinstance(e, OSError) and e.strerror else
                      str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
            raise cli_app.ToolError(f"{output_dir}: cannot write the SavedModel: "
                                    f"{reason}") from None
        foreign = sorted(op for op in graph_op_types(staging) if op.startswith("IO>"))
        if foreign:
            print(f"error: the export holds non-core ops {foreign}; not written",
                  file=sys.stderr)
            return 1
        install_folder(staging, output_dir)
    finally:
        storage.remove_tree(staging)
    print(f"wrote {given}: serving_default(image_bytes: PNG/JPEG string) -> "
          f"probabilities float32 [H, W], mask_png_bytes; tiles cut by {predictor.tiler}"
          + (" (auto, decided here: pass --tiler extract_patches for a GPU server)"
             if options.get("tiler") == "auto" else ""))
    return 0


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    model_dir = predictor_flags.model_dir("vessel-export")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required")
    options = export_options(predictor_flags.predictor_options())
    return export_model(model_dir, options, FLAGS.output_dir, FLAGS.overwrite)


def run():
    """Console entry point `vessel-export`."""
    cli_app.run(__name__, __doc__, define_flags, main)


if __name__ == "__main__":
    run()

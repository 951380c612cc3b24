"""The tiled-predictor flags shared by `vessel-segment` and `vessel-export`.

Precedence, highest first: the flag; the config's [tiledinfer] section when --config or
--set is given; for overlap and threshold, the model's model_info.json; the built-in
defaults of [tiledinfer].
"""
from __future__ import annotations

from absl import flags

from tiled_vessel_seg import cli_app, models
from tiled_vessel_seg.configs import schema, tool_config
from tiled_vessel_seg.inference import input_scale as input_scale_lib
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # TensorFlow: not for --help
    from tiled_vessel_seg.inference import tiling

FLAGS = flags.FLAGS
_DEFAULTS = schema.TiledInferConfig()
# flag name -> [tiledinfer] key
CONFIG_KEYS = {"overlap": "overlap", "batch_size": "batch_size", "blend": "blend",
               "tta": "tta", "threshold": "threshold", "input_scale": "input_scale",
               "min_overlap": "min_overlap", "tiler": "tiler"}


def define_flags() -> None:
    """--model (alias --model_dir) and the tiling flags."""
    flags.DEFINE_string("model", None, models.MODEL_FLAG_HELP)
    flags.DEFINE_alias("model_dir", "model")
    flags.DEFINE_integer("overlap", None, "Tile overlap in px, with a margin of overlap/2 "
                         "reflected px around the photo (the grid before --min_overlap became "
                         "the default; default: [tiledinfer] overlap with --config/--set, else "
                         "model_info.json).")
    flags.DEFINE_integer("min_overlap", None, "Instead of --overlap: per image, the smallest "
                         "tile grid whose tiles overlap by at least this many px, without a "
                         "reflected margin (fewer tiles: 42 instead of 56 for a 3500x3025 photo "
                         "with 512 tiles at <= 9 px) (default: [tiledinfer] min_overlap with "
                         "--config/--set, else 8 (inference/tiling.py DEFAULT_MIN_OVERLAP) "
                         "unless --overlap is given).",
                         lower_bound=0)
    flags.DEFINE_enum("tiler", None, ["auto", "extract_patches", "slices"],
                      "How the graph cuts tiles: slices (fastest on a CPU), extract_patches "
                      "(tf.image.extract_patches, for GPUs), auto: extract_patches when "
                      "TensorFlow sees a GPU, else slices; same probabilities either way "
                      f"(default: [tiledinfer] tiler, {_DEFAULTS.tiler}).")
    flags.DEFINE_integer("batch_size", None, "Tiles per model call (default: [tiledinfer] "
                         f"batch_size, {_DEFAULTS.batch_size}).", lower_bound=1)
    flags.DEFINE_enum("blend", None, ["gaussian", "linear", "none"],
                      "Tile blending: gaussian (sigma = tile/8), linear ramps over the overlap, "
                      f"none (plain average) (default: [tiledinfer] blend, {_DEFAULTS.blend}).")
    flags.DEFINE_enum("tta", None, ["none", "flips", "d4"],
                      "Test-time augmentation averaged in the graph: flips (4x work) or d4 (8x) "
                      f"(default: [tiledinfer] tta, {_DEFAULTS.tta}).")
    flags.DEFINE_float("threshold", None, "Vessel if probability > threshold (default: "
                       "[tiledinfer] threshold with --config/--set, else model_info.json).")
    flags.DEFINE_string("input_scale", None,
                        "auto: each photo resampled so its field of view is as many px "
                        "across as the model's training photos' (model_info.json "
                        "fov_diameter), segmented, and the probabilities resampled back to "
                        "the photo's size; the factor is said in the per-image line (no FOV "
                        "found: as given; models recording no FOV diameter: native or "
                        "enlarged by the photo's size). native: photos as taken, enlarged by "
                        "the model's scale in the graph; enlarged: photos already at the "
                        "training scale (e.g. 3500x3025 STARE); a number, e.g. 0.7: every "
                        "photo resampled by it "
                        f"(default: [tiledinfer] input_scale, {_DEFAULTS.input_scale}).")

    def _valid(value):
        if value is None:
            return True
        try:
            input_scale_lib.parse_input_scale(value)
        except ValueError:
            return False
        return True

    flags.register_validator("input_scale", _valid, message="--input_scale must be auto, "
                             "native, enlarged or a resampling factor in (0, 16]")

    def _threshold_valid(value):
        try:
            return value is None or bool(schema.check_threshold(value))
        except ValueError:
            return False

    flags.register_validator("threshold", _threshold_valid,
                             message="--threshold must be a number in (0, 1)")


def model_dir(tool: str) -> str:
    """The directory of --model (a shipped name or a directory). Call it first: with no
    --model it prints, as the tool's first line, that the shipped model is used."""
    try:
        return models.resolve_model_flag(tool, FLAGS.model)
    except models.UnknownModelError as e:
        raise cli_app.ToolError(str(e)) from None


def predictor_options() -> dict:
    """Keyword arguments of predictor.load_predictor from the flags and the config."""
    use_config = bool(FLAGS.config or FLAGS.set)
    tiled = tool_config.load_config().tiledinfer if use_config else _DEFAULTS
    # Only the keys the file or --set name override model_info.json and the tool's own
    # defaults: any --set tiledinfer.* replaced the model's overlap with the default 64.
    given = tool_config.given_keys("tiledinfer") if use_config else set()
    options = {}
    for name, key in CONFIG_KEYS.items():
        value = getattr(FLAGS, name)
        if value is None and (key in given or name not in ("overlap", "threshold")):
            value = getattr(tiled, key)
        options[name] = value
    if not given & {"overlap", "min_overlap"} and FLAGS.overlap is None \
            and FLAGS.min_overlap is None:
        options["min_overlap"] = tiling.DEFAULT_MIN_OVERLAP  # the fitted grid (issue 19)
    if options["input_scale"] is not None:  # "0.7" -> 0.7; the validator checked it
        options["input_scale"] = input_scale_lib.parse_input_scale(options["input_scale"])
    return options

"""One vessel-segment run in this process: finds the photographs of a SegmentRequest,
loads the tiled predictor once, segments them (inference/segment.py: decoding and
writing overlap the model) and prints the summary.
"""
from __future__ import annotations

import sys

from tiled_vessel_seg import cli_app, datasets, imaging, model_info
from tiled_vessel_seg.inference import mask_hints, segment
from tiled_vessel_seg.inference.segment_request import SegmentRequest, find_photos
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():
    from tiled_vessel_seg.inference import predictor as predictor_lib  # TensorFlow


def _settings_line(predictor, count: int, input_scale) -> str:
    fov_diameter = getattr(predictor, "fov_diameter", None)
    scale_note = {"auto": (f" (each photo resampled to the model's FOV of {fov_diameter:.0f} px)"
                           if fov_diameter else " (native or enlarged per image by its size: "
                           f"the model records no FOV diameter; model scale x{predictor.enlarge})"),
                  "native": f" (x{predictor.enlarge} in the graph)" if predictor.enlarge > 1
                  else ""}.get(input_scale, "")
    grid = "min overlap" if predictor.fitted else "overlap"
    return (f"segmenting {count} image(s): tile {predictor.tile_size}, {grid} "
            f"{predictor.overlap}, tiler {predictor.tiler}, batch {predictor.batch_size}, "
            f"blend {predictor.blend}, tta {predictor.tta}, threshold {predictor.threshold}, "
            f"input {input_scale}{scale_note}")


def segment_folder(request: SegmentRequest) -> int:
    """Runs `request`; returns the exit status: 0, or 1 when an input matched nothing or
    a photograph or its ground truth was rejected (each named on stderr).

    Raises cli_app.ToolError for an unusable model, manifest or ground-truth folder, or
    an output that cannot be written (outputs already written are complete and kept).
    """
    try:
        found = find_photos(request)
    except datasets.InputDirError as e:
        raise cli_app.ToolError(str(e)) from None
    for pattern in found.unmatched:
        print(f"no image matches {imaging.one_line(pattern)}", file=sys.stderr)
    if found.ignored:
        print(datasets.ignored_note(found.ignored, "--masks_dir"), file=sys.stderr)
    for problem in found.problems:
        print(f"skipped {imaging.one_line(problem.path)}: {imaging.one_line(problem.reason)}",
              file=sys.stderr)
    if not found.files:
        print("nothing to segment", file=sys.stderr)
        return 1
    try:
        predictor = predictor_lib.load_predictor(request.model_dir, **request.predictor)
        # photographs the model was trained or validated on: their scores are marked
        seen = mask_hints.training_splits(
            model_info.read_model_info(request.model_dir).data_ids)
    except (model_info.ModelDirError, FileNotFoundError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    input_scale = request.predictor["input_scale"]
    print(_settings_line(predictor, len(found.files), input_scale))
    model = {"model_dir": request.model_dir, "tile_size": predictor.tile_size,
             "overlap": predictor.overlap, "blend": predictor.blend, "tta": predictor.tta,
             "input_scale": input_scale}
    try:
        summary = segment.segment_files(
            predictor, found.files, request.output_dir,
            save_probabilities=request.save_probabilities, overlay=request.overlay,
            truths=found.truths, overwrite=request.overwrite, error_map=request.error_map,
            model=model, max_pixels=request.max_pixels, used_in_training=seen)
    except segment.OutputError as e:  # read-only or full output location
        raise cli_app.ToolError(f"{e} (outputs already written are complete and kept)") \
            from None
    print(segment.format_summary(summary, request.output_dir))
    return 1 if summary.failed or found.unmatched or found.problems else 0

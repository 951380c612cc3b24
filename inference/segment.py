"""Batch segmentation of whole photographs: the library half of `vessel-segment`.

    files, unmatched = expand_inputs(["photos/", "more/*.jpg"])
    summary = segment_files(predictor, files, "out/", truths=truth_index("masks/"))
    print(format_summary(summary, "out/"))

Writes out/<stem>.png (0/255 vessel mask) per input, optionally <stem>_probabilities.png
(16-bit, probability x 65535) with <stem>_probabilities_preview.png (8-bit, for ordinary
viewers) and <stem>_overlay.png, and with ground truth <stem>_errors.png (error map:
true positives white, false positives red, false negatives blue), out/metrics.csv
(whole-image and inside-FOV metrics per image, then mean and std) and out/metrics.json
(the same rows with pixel counts, a summary with the pooled figures, the threshold, the
FOV source and the model: inference/metrics_json.py). One
bad file never stops the others; outputs are written atomically (storage), locally or
on gs://. Used by vessel-segment, vessel-run and the per-epoch training callback.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import sys
import time
from typing import Optional

from tiled_vessel_seg import imaging, storage

GREEN = (0, 255, 0)
# Memory a photo needs on top of the model's own (TF runtime, weights, one batch of
# activations), measured as peak RSS on this 2-core CPU (README, "Memory"): about 35
# bytes per pixel segmented, 49 when the graph enlarges the photo (--input_scale native).
MEMORY_BYTES_PER_PIXEL = {False: 35, True: 49}  # {enlarged in the graph: bytes}
OVERLAY_ALPHA = 0.6


@dataclasses.dataclass
class Summary:
    """What a run did: stems written, skipped, failed (with reasons), metric rows."""
    written: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)      # (path, reason)
    no_truth: list = dataclasses.field(default_factory=list)
    metrics: list = dataclasses.field(default_factory=list)     # dict rows
    scales: dict = dataclasses.field(default_factory=dict)      # stem -> input scale used
    fov_source: str = ""                                        # as in metrics.json
    seconds: float = 0.0


class OutputError(storage.StorageError):
    """An output that cannot be written (read-only or full location). It stops the run:
    every later image would fail the same way."""


def _write(path: str, data: bytes) -> None:
    try:
        storage.write_bytes_atomic(path, data)
    except storage.StorageError as e:
        raise OutputError(e.path, e.reason, e.errno) from None


def memory_estimate_bytes(pixels: int, enlarged_in_graph: bool) -> float:
    """Approximate memory an image of `pixels` pixels (after any enlargement in the
    graph) needs on top of the model's; see MEMORY_BYTES_PER_PIXEL."""
    return MEMORY_BYTES_PER_PIXEL[enlarged_in_graph] * pixels


def _graph_enlargement(predictor, image) -> int:
    """The factor the predictor will enlarge `image` by (an auto-scale predictor decides
    per image)."""
    decide = getattr(type(predictor), "decide", None)
    if decide is not None:
        return predictor.scale if predictor.decide(image).input_scale == "native" else 1
    return int(getattr(predictor, "enlarge", 1))


def _too_large(path: str, width: int, height: int, enlarge: int, max_pixels: int):
    pixels = width * height * enlarge * enlarge
    gigabytes = memory_estimate_bytes(pixels, enlarge > 1) / 1e9
    size = f"{width}x{height}" + (f" (x{enlarge} in the graph: {width * enlarge}x"
                                  f"{height * enlarge})" if enlarge > 1 else "")
    return imaging.ImageReadError(
        path, f"{size} is {pixels} pixels to segment, more than --max_pixels {max_pixels}; "
              f"it needs about {gigabytes:.1f} GB of memory besides the model's: raise "
              "--max_pixels to segment it")


def read_photo(path: str, predictor, max_pixels: int = imaging.MAX_PIXELS):
    """uint8 RGB [H, W, 3] of `path`, refused (ImageReadError) when the pixels the
    predictor would process, after its enlargement, exceed max_pixels. A header that
    declares more than max_pixels is refused before anything is decoded."""
    try:
        image = imaging.read_image(path, max_pixels=max_pixels)
    except imaging.PixelLimitError as e:
        raise _too_large(path, e.width, e.height, 1, max_pixels) from None
    enlarge = _graph_enlargement(predictor, image)
    if image.shape[0] * image.shape[1] * enlarge * enlarge > max_pixels:
        raise _too_large(path, image.shape[1], image.shape[0], enlarge, max_pixels)
    return image


def expand_inputs(patterns: list[str]):
    """Files, folders (their image files, sorted) and globs -> (files, unmatched patterns)."""
    files, unmatched = [], []
    for pattern in patterns:
        if storage.isdir(pattern):
            found = [storage.join(pattern, n) for n in storage.listdir(pattern)
                     if imaging.is_image_path(n)]
        elif any(c in pattern for c in "*?["):
            found = [p for p in storage.glob(pattern) if not storage.isdir(p)]
        else:
            found = [pattern]
        if not found:
            unmatched.append(pattern)
        files.extend(p for p in found if p not in files)
    return files, unmatched


def truth_index(masks_dir: str) -> dict[str, str]:
    """{image stem: mask path} of masks_dir; 'im0001.ah.ppm.gz' also answers 'im0001'."""
    if not storage.isdir(masks_dir):
        raise FileNotFoundError(f"--masks_dir {masks_dir}: not a folder")
    index = {}
    for name in storage.listdir(masks_dir):
        if not imaging.is_image_path(name):
            continue
        stem = imaging.image_stem(name)
        path = storage.join(masks_dir, name)
        if stem.endswith(".ah"):
            index.setdefault(stem[:-3], path)
        else:
            index[stem] = path  # an exact stem wins over the .ah form
    return index


def overlay_image(image, mask):
    """uint8 RGB [H, W, 3], mask [H, W] (nonzero = vessel) -> the photo with vessels
    blended towards green."""
    import numpy as np
    out = image.copy()
    vessel = mask > 0
    out[vessel] = np.round((1 - OVERLAY_ALPHA) * image[vessel]
                           + OVERLAY_ALPHA * np.array(GREEN)).astype(np.uint8)
    return out


def metric_columns() -> list[str]:
    from tiled_vessel_seg.inference.metrics import METRIC_NAMES
    return list(METRIC_NAMES) + [f"fov_{m}" for m in METRIC_NAMES]


def read_truth(truth_path: str, shape, what: str = "ground truth"):
    """bool [H, W] mask of truth_path; ValueError naming the file if it is not `shape`."""
    truth = imaging.read_mask(truth_path).astype(bool)
    if truth.shape != tuple(shape):
        raise ValueError(f"{what} {truth_path} is {truth.shape[1]}x{truth.shape[0]}, "
                         f"the output is {shape[1]}x{shape[0]} (check --input_scale)")
    return truth


def image_metrics(image, probabilities, truth_path: str, threshold: float,
                  fov_path: Optional[str] = None, truth=None) -> dict:
    """Whole-image and inside-FOV metrics of one image against the mask at truth_path,
    with their pixel counts (metrics_json.COUNTS_KEY / FOV_COUNTS_KEY) for the pooled
    figures. The FOV is the mask at fov_path, else computed from the photo (tiled_vessel_seg/fov.py).
    """
    from tiled_vessel_seg import fov
    from tiled_vessel_seg.inference import metrics, metrics_json
    if truth is None:
        truth = read_truth(truth_path, probabilities.shape)
    region = (read_truth(fov_path, probabilities.shape, "FOV mask") if fov_path
              else fov.fov_mask(image))
    row = metrics.segmentation_metrics(probabilities, truth, threshold)
    inside = metrics.segmentation_metrics(probabilities, truth, threshold, region)
    row.update({f"fov_{k}": v for k, v in inside.items()})
    predicted = probabilities > threshold
    row[metrics_json.COUNTS_KEY] = metrics.confusion_counts(predicted, truth)
    row[metrics_json.FOV_COUNTS_KEY] = metrics.confusion_counts(predicted[region], truth[region])
    return row


def write_metrics_csv(path: str, rows: list[dict]) -> None:
    """Per-image rows, then 'mean' and 'std' rows (NaN ignored), atomically."""
    from tiled_vessel_seg.inference import metrics
    columns = metric_columns()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image"] + columns)
    for row in rows:
        writer.writerow([row["image"]] + [f"{row[c]:.6f}" for c in columns])
    stats = metrics.summarize(rows, columns)
    writer.writerow(["mean"] + [f"{stats[c][0]:.6f}" for c in columns])
    writer.writerow(["std"] + [f"{stats[c][1]:.6f}" for c in columns])
    storage.write_text_atomic(path, buf.getvalue())


def segment_files(predictor, files: list[str], output_dir: str, *,
                  save_probabilities: bool = False, overlay: bool = False,
                  truths: Optional[dict] = None, overwrite: bool = False,
                  progress: bool = True, error_map: bool = False,
                  model: Optional[dict] = None,
                  max_pixels: int = imaging.MAX_PIXELS) -> Summary:
    """Segments `files` into output_dir; one bad file never stops the others.

    truths: {output stem: mask path, or a datasets.ImagePair whose fov_path (if any) is
      used for the fov_* metrics instead of the computed FOV}.
    error_map: also write <stem>_errors.png for the images with ground truth.
    model: what metrics.json records as the model used (model dir, tiling options).
    max_pixels: photos with more pixels to segment (after the predictor's enlargement)
      are refused before the predictor runs (memory_estimate_bytes says why).
    An image whose outputs all exist is skipped unless `overwrite`; with `truths` it is
    still segmented for its metrics, but its files are left as they are. With an
    input_scale.AutoScalePredictor, each image's scale decision is one line.

    Raises:
      OutputError: output_dir or an output file cannot be written; files written
        before stay (each is complete: writes are atomic).
    """
    import numpy as np
    from tqdm import tqdm
    from tiled_vessel_seg.inference import error_map as error_map_lib

    try:
        storage.makedirs(output_dir)
    except storage.StorageError as e:
        raise OutputError(e.path, e.reason, e.errno) from None
    summary = Summary()
    start = time.time()
    seen = {}
    bar = tqdm(files, unit="image", disable=not progress, file=sys.stderr)
    for path in bar:
        stem = imaging.image_stem(path)
        bar.set_postfix_str(stem)
        if stem in seen:
            summary.failed.append((path, f"same output name {stem}.png as {seen[stem]}"))
            tqdm.write(f"FAILED {path}: same output name {stem}.png as {seen[stem]}",
                       file=sys.stderr)
            continue
        seen[stem] = path
        outputs = {"mask": storage.join(output_dir, stem + ".png")}
        if save_probabilities:
            outputs["probabilities"] = storage.join(output_dir, stem + "_probabilities.png")
            outputs["preview"] = storage.join(output_dir, stem + "_probabilities_preview.png")
        if overlay:
            outputs["overlay"] = storage.join(output_dir, stem + "_overlay.png")
        entry = truths.get(stem) if truths is not None else None
        truth_path = getattr(entry, "mask_path", entry)
        fov_path = getattr(entry, "fov_path", None)
        if error_map and truth_path is not None:
            outputs["errors"] = storage.join(output_dir, stem + "_errors.png")
        exists = not overwrite and all(storage.exists(p) for p in outputs.values())
        if truths is not None and truth_path is None:
            summary.no_truth.append(path)
        if exists and truth_path is None:
            summary.skipped.append(stem)
            continue
        try:
            image = read_photo(path, predictor, max_pixels)
            probabilities, mask = predictor(image)
            probabilities, mask = probabilities.numpy(), mask.numpy()
            decision = getattr(predictor, "last_decision", None)
            if decision is not None:
                summary.scales[stem] = decision.input_scale
                if progress or not decision.fits:
                    tqdm.write(f"{stem}: {image.shape[1]}x{image.shape[0]}, input "
                               f"{decision.reason}", file=sys.stderr)
            truth = (read_truth(truth_path, probabilities.shape)
                     if truth_path is not None else None)
            if not exists:
                _write(outputs["mask"], imaging.encode_png(mask))
                if save_probabilities:
                    p16 = np.round(probabilities * 65535.0).astype(np.uint16)
                    _write(outputs["probabilities"], imaging.encode_png(p16))
                    p8 = np.round(probabilities * 255.0).astype(np.uint8)
                    _write(outputs["preview"], imaging.encode_png(p8))
                if overlay:
                    _write(outputs["overlay"], imaging.encode_png(overlay_image(image, mask)))
                if "errors" in outputs:
                    _write(outputs["errors"], imaging.encode_png(
                        error_map_lib.error_map(mask, truth)))
                summary.written.append(stem)
            else:
                summary.skipped.append(stem)
            if truth is not None:
                row = image_metrics(image, probabilities, truth_path, predictor.threshold,
                                    fov_path, truth=truth)
                summary.metrics.append({"image": stem, "fov": fov_path or "computed", **row})
        except OutputError:
            raise
        except Exception as e:  # pylint: disable=broad-except  # report, go on
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if reason.startswith(f"{path}: "):  # ImageReadError, StorageError name it
                reason = reason[len(path) + 2:]
            summary.failed.append((path, reason))
            tqdm.write(f"FAILED {path}: {reason}", file=sys.stderr)
    summary.seconds = time.time() - start
    if truths is not None and summary.metrics:
        from tiled_vessel_seg.inference import metrics_json
        from_files = sum(r["fov"] != "computed" for r in summary.metrics)
        summary.fov_source = (
            "computed" if not from_files else "files" if from_files == len(summary.metrics)
            else f"files for {from_files} of {len(summary.metrics)} images, computed otherwise")
        try:
            write_metrics_csv(storage.join(output_dir, "metrics.csv"), summary.metrics)
            metrics_json.write_metrics_json(
                storage.join(output_dir, metrics_json.METRICS_JSON), summary.metrics,
                metric_columns(), threshold=predictor.threshold,
                fov_source=summary.fov_source, model=model)
        except storage.StorageError as e:
            raise OutputError(e.path, e.reason, e.errno) from None
    return summary


def format_summary(summary: Summary, output_dir: str) -> str:
    done = len(summary.written) + len(summary.skipped)
    lines = [f"{len(summary.written)} written, {len(summary.skipped)} skipped (exist; "
             f"--overwrite to redo), {len(summary.failed)} failed, in {summary.seconds:.1f} s"
             + (f" ({summary.seconds / done:.2f} s/image)" if done else "")
             + f" -> {output_dir}"]
    for path, reason in summary.failed:
        lines.append(f"  failed: {path}: {reason}")
    if summary.no_truth:
        lines.append(f"  no ground truth for {len(summary.no_truth)} image(s): "
                     + ", ".join(os.path.basename(p) for p in summary.no_truth))
    if summary.metrics:
        from tiled_vessel_seg.inference import metrics
        stats = metrics.summarize(summary.metrics, metric_columns())
        lines.append(f"  metrics over {len(summary.metrics)} image(s) (mean +- std; FOV "
                     f"{summary.fov_source}), {os.path.join(output_dir, 'metrics.csv')} and "
                     "metrics.json:")
        for name in metrics.METRIC_NAMES:
            m, s = stats[name]
            fm, fs = stats["fov_" + name]
            lines.append(f"    {name:<12} {m:.4f} +- {s:.4f}   inside FOV {fm:.4f} +- {fs:.4f}")
        from tiled_vessel_seg.inference import metrics_json
        pooled = metrics_json.pooled_metrics(summary.metrics)
        if pooled:
            lines.append(f"    pooled F1 over all pixels {pooled['dice']:.4f}, inside FOV "
                         f"{pooled['fov_dice']:.4f}")
    return "\n".join(lines)

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

import collections
import csv
import dataclasses
import io
import os
import sys
import time
from concurrent import futures
from typing import Optional

import numpy as np

from tiled_vessel_seg import imaging, storage
from tiled_vessel_seg.inference import error_map as error_map_lib
from tiled_vessel_seg.inference import mask_hints, metrics, metrics_json
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # vessel-segment --help imports this module
    import tqdm
    from tiled_vessel_seg import fov  # OpenCV

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
    empty: list = dataclasses.field(default_factory=list)       # (stem, mask_hints hint)


class OutputError(storage.StorageError):
    """An output that cannot be written (read-only or full location). It stops the run:
    every later image would fail the same way."""


class InputOverwriteError(storage.StorageError):
    """An output path that is one of the run's inputs: refused before anything is
    written, with or without --overwrite (exit 2)."""


def _same_file_key(path: str) -> str:
    """A key equal for two spellings of one file: the resolved real path (symlinks, '..',
    relative paths), or the URL with duplicate slashes dropped for remote paths."""
    path = str(path)
    if storage.is_remote(path):
        scheme, rest = path.split("://", 1)
        return scheme + "://" + "/".join(p for p in rest.split("/") if p not in ("", "."))
    return os.path.realpath(path)


def check_outputs_are_not_inputs(files: list[str], output_dir: str,
                                 truths: Optional[dict] = None, *,
                                 save_probabilities: bool = False, overlay: bool = False,
                                 error_map: bool = False) -> None:
    """Raises InputOverwriteError naming the first output of the run (masks, overlays,
    probability maps, error maps, metrics files) that is one of its input files (photos,
    ground-truth and FOV masks): `--output_dir` the photos' folder replaced photographs
    by their masks."""
    inputs = {}
    for path in files:
        inputs.setdefault(_same_file_key(path), path)
    for entry in (truths or {}).values():
        for path in (getattr(entry, "mask_path", entry), getattr(entry, "fov_path", None)):
            if isinstance(path, str):
                inputs.setdefault(_same_file_key(path), path)
    outputs = [storage.join(output_dir, "metrics.csv"),
               storage.join(output_dir, "metrics.json")]
    for path in files:
        outputs += output_paths(output_dir, imaging.image_stem(path),
                                save_probabilities=save_probabilities, overlay=overlay,
                                error_map=error_map).values()
    for output in outputs:
        source = inputs.get(_same_file_key(output))
        if source is not None:
            raise InputOverwriteError(
                output, f"would overwrite the input {source}; inputs are never written, "
                        f"so choose an --output_dir apart from the inputs")


def _write(path: str, data: bytes) -> None:
    try:
        storage.write_bytes_atomic(path, data)
    except storage.StorageError as e:
        raise OutputError(e.path, e.reason, e.errno) from None


def memory_estimate_bytes(pixels: int, enlarged_in_graph: bool) -> float:
    """Approximate memory an image of `pixels` pixels (after any enlargement in the
    graph) needs on top of the model's; see MEMORY_BYTES_PER_PIXEL."""
    return MEMORY_BYTES_PER_PIXEL[enlarged_in_graph] * pixels


def _graph_enlargement(predictor, image) -> float:
    """The factor the predictor will enlarge `image` by (an auto-scale predictor decides
    per image: its FOV resampling times the model's scale when native)."""
    decide = getattr(type(predictor), "decide", None)
    if decide is not None:
        decision = predictor.decide(image)
        return decision.factor * (predictor.scale if decision.input_scale == "native" else 1)
    return int(getattr(predictor, "enlarge", 1))


def _too_large(path: str, width: int, height: int, enlarge: float, max_pixels: int):
    pixels = int(round(width * enlarge) * round(height * enlarge))
    gigabytes = memory_estimate_bytes(pixels, enlarge > 1) / 1e9
    size = f"{width}x{height}" + (f" (x{enlarge:g} in the graph: {round(width * enlarge)}x"
                                  f"{round(height * enlarge)})" if enlarge != 1 else "")
    return imaging.ImageReadError(
        path, f"{size} is {pixels} pixels to segment, more than --max_pixels {max_pixels}; "
              f"it needs about {gigabytes:.1f} GB of memory besides the model's: raise "
              "--max_pixels to segment it")


def decode_photo(path: str, max_pixels: int = imaging.MAX_PIXELS):
    """uint8 RGB [H, W, 3] of `path`; a header that declares more than max_pixels is
    refused (ImageReadError) before anything is decoded."""
    try:
        return imaging.read_image(path, max_pixels=max_pixels)
    except imaging.PixelLimitError as e:
        raise _too_large(path, e.width, e.height, 1, max_pixels) from None


def check_photo_size(path: str, image, predictor, max_pixels: int = imaging.MAX_PIXELS):
    """Refuses (ImageReadError) a decoded photo whose pixels after the predictor's
    enlargement exceed max_pixels; returns the image."""
    enlarge = _graph_enlargement(predictor, image)
    if image.shape[0] * image.shape[1] * enlarge * enlarge > max_pixels:
        raise _too_large(path, image.shape[1], image.shape[0], enlarge, max_pixels)
    return image


def read_photo(path: str, predictor, max_pixels: int = imaging.MAX_PIXELS):
    """uint8 RGB [H, W, 3] of `path`, refused (ImageReadError) when the pixels the
    predictor would process, after its enlargement, exceed max_pixels. A header that
    declares more than max_pixels is refused before anything is decoded."""
    return check_photo_size(path, decode_photo(path, max_pixels), predictor, max_pixels)


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
    out = image.copy()
    vessel = mask > 0
    out[vessel] = np.round((1 - OVERLAY_ALPHA) * image[vessel]
                           + OVERLAY_ALPHA * np.array(GREEN)).astype(np.uint8)
    return out


def metric_columns() -> list[str]:
    return list(metrics.METRIC_NAMES) + [f"fov_{m}" for m in metrics.METRIC_NAMES]


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
    """Per-image rows, then 'mean' and 'std' rows (NaN ignored), atomically. When a row
    is marked as a photograph the model was trained or validated on, a used_in_training
    column follows the image column ("train", "valid" or empty)."""
    used = metrics_json.USED_IN_TRAINING_KEY
    columns = metric_columns()
    marked = [used] if any(r.get(used) for r in rows) else []
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image"] + marked + columns)
    for row in rows:
        writer.writerow([row["image"]] + [row.get(used) or "" for _ in marked]
                        + [f"{row[c]:.6f}" for c in columns])
    stats = metrics.summarize(rows, columns)
    writer.writerow(["mean"] + [""] * len(marked) + [f"{stats[c][0]:.6f}" for c in columns])
    writer.writerow(["std"] + [""] * len(marked) + [f"{stats[c][1]:.6f}" for c in columns])
    storage.write_text_atomic(path, buf.getvalue())


@dataclasses.dataclass(frozen=True)
class PhotoJob:
    """One photograph to segment: its outputs {kind: path} (mask, probabilities,
    preview, overlay, errors), its ground truth (truth_path, fov_path; None without),
    and keep_outputs: its outputs exist and are left as they are (it is segmented for
    its metrics only)."""
    path: str
    stem: str
    outputs: dict
    truth_path: Optional[str] = None
    fov_path: Optional[str] = None
    keep_outputs: bool = False


def output_paths(output_dir: str, stem: str, *, save_probabilities: bool = False,
                 overlay: bool = False, error_map: bool = False) -> dict:
    """{kind: path} of one photograph's outputs (error_map: only pass True when it
    has ground truth)."""
    outputs = {"mask": storage.join(output_dir, stem + ".png")}
    if save_probabilities:
        outputs["probabilities"] = storage.join(output_dir, stem + "_probabilities.png")
        outputs["preview"] = storage.join(output_dir, stem + "_probabilities_preview.png")
    if overlay:
        outputs["overlay"] = storage.join(output_dir, stem + "_overlay.png")
    if error_map:
        outputs["errors"] = storage.join(output_dir, stem + "_errors.png")
    return outputs


def plan_photo(path: str, output_dir: str, *, truths: Optional[dict] = None,
               overwrite: bool = False, save_probabilities: bool = False,
               overlay: bool = False, error_map: bool = False) -> Optional[PhotoJob]:
    """The PhotoJob of `path`, or None when its outputs all exist and it has no ground
    truth (skipped unless `overwrite`). truths as in `segment_files`."""
    stem = imaging.image_stem(path)
    entry = truths.get(stem) if truths is not None else None
    truth_path = getattr(entry, "mask_path", entry)
    outputs = output_paths(output_dir, stem, save_probabilities=save_probabilities,
                           overlay=overlay, error_map=error_map and truth_path is not None)
    exists = not overwrite and all(storage.exists(p) for p in outputs.values())
    if exists and truth_path is None:
        return None
    return PhotoJob(path, stem, outputs, truth_path, getattr(entry, "fov_path", None), exists)


def failure_reason(path: str, error: BaseException) -> str:
    """One line: why `path` failed, without a leading repetition of the path."""
    text = str(error).strip()
    reason = text.splitlines()[0] if text else type(error).__name__
    if reason.startswith(f"{path}: "):  # ImageReadError, StorageError name it
        reason = reason[len(path) + 2:]
    return reason


def encode_outputs(job: PhotoJob, image, probabilities, mask, truth=None) -> dict:
    """{path: PNG bytes} of the job's outputs: mask uint8 [H, W] 0/255, probabilities
    float32 [H, W] as 16-bit x 65535 and its 8-bit preview, overlay on the photo
    uint8 [H, W, 3], error map against truth bool [H, W]."""
    encoded = {job.outputs["mask"]: imaging.encode_png(mask)}
    if "probabilities" in job.outputs:
        p16 = np.round(probabilities * 65535.0).astype(np.uint16)
        encoded[job.outputs["probabilities"]] = imaging.encode_png(p16)
        p8 = np.round(probabilities * 255.0).astype(np.uint8)
        encoded[job.outputs["preview"]] = imaging.encode_png(p8)
    if "overlay" in job.outputs:
        encoded[job.outputs["overlay"]] = imaging.encode_png(overlay_image(image, mask))
    if "errors" in job.outputs:
        encoded[job.outputs["errors"]] = imaging.encode_png(
            error_map_lib.error_map(mask, truth))
    return encoded


def finish_photo(job: PhotoJob, image, probabilities, mask, threshold: float):
    """After the model: reads the ground truth, writes the outputs (each atomically)
    unless job.keep_outputs, and returns (written, metrics row or None).

    Raises OutputError when an output cannot be written; ValueError etc. for a bad
    ground-truth file (nothing of the photograph is written then).
    """
    truth = (read_truth(job.truth_path, probabilities.shape)
             if job.truth_path is not None else None)
    if not job.keep_outputs:
        for path, data in encode_outputs(job, image, probabilities, mask, truth).items():
            _write(path, data)
    row = None
    if truth is not None:
        row = image_metrics(image, probabilities, job.truth_path, threshold,
                            job.fov_path, truth=truth)
        row = {"image": job.stem, "fov": job.fov_path or "computed", **row}
    return not job.keep_outputs, row


def write_run_metrics(output_dir: str, rows: list[dict], threshold: float,
                      model: Optional[dict] = None) -> str:
    """metrics.csv and metrics.json of a run's per-image rows (in their order);
    returns the FOV source recorded ("computed", "files" or a mix)."""
    from_files = sum(r["fov"] != "computed" for r in rows)
    fov_source = ("computed" if not from_files else "files" if from_files == len(rows)
                  else f"files for {from_files} of {len(rows)} images, computed otherwise")
    try:
        write_metrics_csv(storage.join(output_dir, "metrics.csv"), rows)
        metrics_json.write_metrics_json(
            storage.join(output_dir, metrics_json.METRICS_JSON), rows,
            metric_columns(), threshold=threshold, fov_source=fov_source, model=model)
    except storage.StorageError as e:
        raise OutputError(e.path, e.reason, e.errno) from None
    return fov_source


PREFETCH = 2  # photographs decoded ahead of the model (memory: 2 decoded photos)


def segment_files(predictor, files: list[str], output_dir: str, *,
                  save_probabilities: bool = False, overlay: bool = False,
                  truths: Optional[dict] = None, overwrite: bool = False,
                  progress: bool = True, error_map: bool = False,
                  model: Optional[dict] = None,
                  max_pixels: int = imaging.MAX_PIXELS,
                  used_in_training: Optional[dict] = None) -> Summary:
    """Segments `files` into output_dir; one bad file never stops the others.

    truths: {output stem: mask path, or a datasets.ImagePair whose fov_path (if any) is
      used for the fov_* metrics instead of the computed FOV}.
    error_map: also write <stem>_errors.png for the images with ground truth.
    model: what metrics.json records as the model used (model dir, tiling options).
    max_pixels: photos with more pixels to segment (after the predictor's enlargement)
      are refused before the predictor runs (memory_estimate_bytes says why).
    used_in_training: {image id: "train" | "valid"} of the photographs the model saw
      (mask_hints.training_splits of model_info.json's data_ids): their metric rows are
      marked, and format_summary says their scores are not test scores.
    A (nearly) empty mask gets a hint in summary.empty (mask_hints.empty_mask_hint).
    An image whose outputs all exist is skipped unless `overwrite`; with `truths` it is
    still segmented for its metrics, but its files are left as they are. With an
    input_scale.AutoScalePredictor, each image's scale decision is one line.

    Three stages overlap: a reader thread decodes up to PREFETCH photographs ahead,
    this thread runs the model, a writer thread encodes and writes the previous
    photograph's outputs and metrics (TensorFlow, OpenCV and zlib release the GIL).

    Raises:
      InputOverwriteError: an output path is an input (photo, ground truth, FOV mask);
        raised before anything is written.
      OutputError: output_dir or an output file cannot be written; files written
        before stay (each is complete: writes are atomic).
    """

    check_outputs_are_not_inputs(files, output_dir, truths,
                                 save_probabilities=save_probabilities, overlay=overlay,
                                 error_map=error_map)
    try:
        storage.makedirs(output_dir)
    except storage.StorageError as e:
        raise OutputError(e.path, e.reason, e.errno) from None
    summary = Summary()
    start = time.time()
    bar = tqdm.tqdm(total=len(files), unit="image", disable=not progress, file=sys.stderr)

    def fail(path: str, reason: str) -> None:
        summary.failed.append((path, reason))
        tqdm.tqdm.write(f"FAILED {imaging.one_line(path)}: {imaging.one_line(reason)}",
                   file=sys.stderr)
        bar.update()

    jobs, seen = [], {}
    for path in files:
        stem = imaging.image_stem(path)
        if stem in seen:
            fail(path, f"same output name {stem}.png as {seen[stem]}")
            continue
        seen[stem] = path
        if truths is not None and getattr(truths.get(stem), "mask_path",
                                          truths.get(stem)) is None:
            summary.no_truth.append(path)
        job = plan_photo(path, output_dir, truths=truths, overwrite=overwrite,
                         save_probabilities=save_probabilities, overlay=overlay,
                         error_map=error_map)
        if job is None:
            summary.skipped.append(stem)
            bar.update()
        else:
            jobs.append(job)

    def collect(job: PhotoJob, future) -> None:
        try:
            written, row = future.result()
        except OutputError:
            raise
        except Exception as e:  # pylint: disable=broad-except  # report, go on
            fail(job.path, failure_reason(job.path, e))
            return
        (summary.written if written else summary.skipped).append(job.stem)
        if row is not None:
            summary.metrics.append(row)
        bar.update()

    with futures.ThreadPoolExecutor(1, "decode") as readers, \
            futures.ThreadPoolExecutor(1, "write") as writers:
        reads = collections.deque(
            (job, readers.submit(read_photo, job.path, predictor, max_pixels))
            for job in jobs[:PREFETCH])
        writes = collections.deque()
        try:
            for index, job in enumerate(jobs):
                bar.set_postfix_str(imaging.one_line(job.stem))
                _, read = reads.popleft()
                if index + PREFETCH < len(jobs):
                    ahead = jobs[index + PREFETCH]
                    reads.append((ahead, readers.submit(read_photo, ahead.path, predictor,
                                                        max_pixels)))
                try:
                    image = read.result()
                    probabilities, mask = predictor(image)
                    probabilities, mask = probabilities.numpy(), mask.numpy()
                except Exception as e:  # pylint: disable=broad-except  # report, go on
                    fail(job.path, failure_reason(job.path, e))
                    continue
                hint = mask_hints.empty_mask_hint(probabilities, mask, predictor.threshold)
                if hint:
                    summary.empty.append((job.stem, hint))
                decision = getattr(predictor, "last_decision", None)
                if decision is not None:
                    summary.scales[job.stem] = decision.input_scale
                    if progress or not decision.fits:
                        tqdm.tqdm.write(f"{imaging.one_line(job.stem)}: {image.shape[1]}x"
                                   f"{image.shape[0]}, input {decision.reason}",
                                   file=sys.stderr)
                while writes:  # at most one photograph's outputs in flight
                    collect(*writes.popleft())
                writes.append((job, writers.submit(finish_photo, job, image, probabilities,
                                                   mask, predictor.threshold)))
            while writes:
                collect(*writes.popleft())
        except BaseException:
            for _, pending in list(reads) + list(writes):
                pending.cancel()
            raise
        finally:
            bar.close()  # ends the bar's line before any error line
    summary.seconds = time.time() - start
    for row in summary.metrics if used_in_training else []:
        split = mask_hints.used_split(row["image"], used_in_training)
        if split:
            row["used_in_training"] = split
    if truths is not None and summary.metrics:
        summary.fov_source = write_run_metrics(output_dir, summary.metrics,
                                               predictor.threshold, model)
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
    for stem, hint in summary.empty:
        lines.append(f"  {stem}: {hint}")
    if summary.metrics:
        stats = metrics.summarize(summary.metrics, metric_columns())
        seen = [r for r in summary.metrics if r.get("used_in_training")]
        seen_note = ("" if not seen else
                     f", {len(seen)} of them seen in training, so NOT test scores ("
                     + ", ".join(f"{r['image']} {r['used_in_training']}" for r in seen)
                     + "; marked used_in_training)")
        lines.append(f"  metrics over {len(summary.metrics)} image(s){seen_note} (mean +- "
                     f"std; FOV {summary.fov_source}), "
                     f"{os.path.join(output_dir, 'metrics.csv')} and metrics.json:")
        for name in metrics.METRIC_NAMES:
            m, s = stats[name]
            fm, fs = stats["fov_" + name]
            lines.append(f"    {name:<12} {m:.4f} +- {s:.4f}   inside FOV {fm:.4f} +- {fs:.4f}")
        pooled = metrics_json.pooled_metrics(summary.metrics)
        if pooled:
            lines.append(f"    pooled F1 over all pixels {pooled['dice']:.4f}, inside FOV "
                         f"{pooled['fov_dice']:.4f}")
        unseen = [r for r in summary.metrics if not r.get("used_in_training")]
        if seen and unseen:
            held = metrics.summarize(unseen, ["dice", "fov_dice"])
            lines.append(f"    the {len(unseen)} image(s) the model never saw: dice "
                         f"{held['dice'][0]:.4f}, inside FOV {held['fov_dice'][0]:.4f}")
    return "\n".join(lines)

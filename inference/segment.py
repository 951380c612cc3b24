"""Batch segmentation of whole photographs: the library half of `vessel-segment`.

    files, unmatched = expand_inputs(["photos/", "more/*.jpg"])
    summary = segment_files(predictor, files, "out/", truths=truth_index("masks/"))
    print(format_summary(summary, "out/"))

Writes out/<stem>.png (0/255 vessel mask) per input, optionally <stem>_probabilities.png
(16-bit, probability x 65535) and <stem>_overlay.png, and with ground truth
out/metrics.csv (whole-image and inside-FOV metrics per image, then mean and std). One
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
OVERLAY_ALPHA = 0.6


@dataclasses.dataclass
class Summary:
    """What a run did: stems written, skipped, failed (with reasons), metric rows."""
    written: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: list = dataclasses.field(default_factory=list)      # (path, reason)
    no_truth: list = dataclasses.field(default_factory=list)
    metrics: list = dataclasses.field(default_factory=list)     # dict rows
    seconds: float = 0.0


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


def image_metrics(image, probabilities, truth_path: str, threshold: float) -> dict:
    """Whole-image and inside-FOV metrics of one image against the mask at truth_path."""
    from tiled_vessel_seg.inference import fov, metrics
    truth = imaging.read_mask(truth_path).astype(bool)
    if truth.shape != probabilities.shape:
        raise ValueError(f"ground truth {truth_path} is {truth.shape[1]}x{truth.shape[0]}, "
                         f"the output is {probabilities.shape[1]}x{probabilities.shape[0]} "
                         "(check --input_scale)")
    row = metrics.segmentation_metrics(probabilities, truth, threshold)
    inside = metrics.segmentation_metrics(probabilities, truth, threshold, fov.fov_mask(image))
    row.update({f"fov_{k}": v for k, v in inside.items()})
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
                  truths: Optional[dict[str, str]] = None, overwrite: bool = False,
                  progress: bool = True) -> Summary:
    """Segments `files` into output_dir; one bad file never stops the others.

    An image whose outputs all exist is skipped unless `overwrite`; with `truths` it is
    still segmented for its metrics, but its files are left as they are.
    """
    import numpy as np
    from tqdm import tqdm

    storage.makedirs(output_dir)
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
        if overlay:
            outputs["overlay"] = storage.join(output_dir, stem + "_overlay.png")
        exists = not overwrite and all(storage.exists(p) for p in outputs.values())
        truth_path = truths.get(stem) if truths is not None else None
        if truths is not None and truth_path is None:
            summary.no_truth.append(path)
        if exists and truth_path is None:
            summary.skipped.append(stem)
            continue
        try:
            image = imaging.read_image(path)
            probabilities, mask = predictor(image)
            probabilities, mask = probabilities.numpy(), mask.numpy()
            if not exists:
                storage.write_bytes_atomic(outputs["mask"], imaging.encode_png(mask))
                if save_probabilities:
                    p16 = np.round(probabilities * 65535.0).astype(np.uint16)
                    storage.write_bytes_atomic(outputs["probabilities"], imaging.encode_png(p16))
                if overlay:
                    storage.write_bytes_atomic(outputs["overlay"], imaging.encode_png(
                        overlay_image(image, mask)))
                summary.written.append(stem)
            else:
                summary.skipped.append(stem)
            if truth_path is not None:
                row = image_metrics(image, probabilities, truth_path, predictor.threshold)
                summary.metrics.append({"image": stem, **row})
        except Exception as e:  # pylint: disable=broad-except  # report, go on
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            summary.failed.append((path, reason))
            tqdm.write(f"FAILED {path}: {reason}", file=sys.stderr)
    summary.seconds = time.time() - start
    if truths is not None and summary.metrics:
        write_metrics_csv(storage.join(output_dir, "metrics.csv"), summary.metrics)
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
        lines.append(f"  metrics over {len(summary.metrics)} image(s) (mean +- std), "
                     f"{os.path.join(output_dir, 'metrics.csv')}:")
        for name in metrics.METRIC_NAMES:
            m, s = stats[name]
            fm, fs = stats["fov_" + name]
            lines.append(f"    {name:<12} {m:.4f} +- {s:.4f}   inside FOV {fm:.4f} +- {fs:.4f}")
    return "\n".join(lines)

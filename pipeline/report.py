"""The run report: W/report.md, W/montage.png, W/report_images/<id>.png, W/training_curves.png.

The metrics table is read from the segment stage's metrics.json (per image, mean, std and
the pooled figures over all pixels), so the report shows exactly the figures that file
holds; a segment folder written before metrics.json existed is read from metrics.csv.
When the held-out images have a second annotator's masks (STARE's labels-vk, DRIVE's
2nd_manual, CHASE_DB1's 2ndHO), a "second observer" row scores them against the first
annotator's, as published tables do.

Pictures: every held-out image is one row of photo | ground truth | probability |
prediction | errors, with the column titles on top and the image id and Dice above each
row. The probability panel (the segment stage's <id>_probabilities.png, black 0 to white
1) shows what the model saw below the threshold: a (nearly) empty prediction with a
non-empty probability map gets a hint in the row title and the report
(inference/mask_hints.py: train longer, or a lower threshold). The montage
shrinks the panels to MONTAGE_PANEL_WIDTH; report_images/<id>.png holds the same row at
the image's full resolution, where one-pixel vessels can be judged.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Optional, Sequence

import cv2
import numpy as np

from tiled_vessel_seg import fov, imaging, storage
from tiled_vessel_seg import model_info as model_info_lib
from tiled_vessel_seg.inference import error_map, mask_hints, metrics, metrics_json
from tiled_vessel_seg.lazy_imports import lazy_imports
from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib

with lazy_imports():  # TensorFlow: only when a report is drawn
    from tiled_vessel_seg.trainer import callbacks

MONTAGE_FILE = "montage.png"
CURVES_FILE = "training_curves.png"
REPORT_FILE = "report.md"
FULL_SIZE_DIR = "report_images"
MONTAGE_PANEL_WIDTH = 480
COLUMN_TITLES = ("photo", "ground truth", "probability", "prediction", "errors")
ERROR_LEGEND = ("errors: white = vessel found (TP), red = false vessel (FP), "
                "blue = missed vessel (FN), black = background (TN)")
TABLE_METRICS = ("dice", "iou", "sensitivity", "specificity", "accuracy", "auc")
SECOND_OBSERVER = "second observer"
GAP = 6
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


# ---------------------------------------------------------------------------- metrics

def read_metrics_csv(path: str) -> dict[str, dict[str, float]]:
    """{row name ('im0001', ..., 'mean', 'std'): {column: value}} of a metrics.csv."""
    text_columns = ("image", "used_in_training")  # metrics_json.USED_IN_TRAINING_KEY
    rows = csv.DictReader(io.StringIO(storage.read_text(path), newline=""))
    return {row["image"]: {k: float(v) for k, v in row.items() if k not in text_columns}
            for row in rows}


def read_segment_metrics(segment_dir: str) -> tuple[dict[str, dict[str, float]], Optional[dict]]:
    """(table rows, metrics.json document or None) of a segment folder.

    Rows: per image, then 'mean', 'std' and (from metrics.json) 'pooled' (pooled has no
    AUC: NaN).
    """
    path = storage.join(segment_dir, metrics_json.METRICS_JSON)
    if not storage.exists(path):
        return read_metrics_csv(storage.join(segment_dir, "metrics.csv")), None
    document = metrics_json.read_metrics_json(path)
    columns = document["columns"]
    rows = {r["image"]: {c: r[c] for c in columns} for r in document["images"]}
    summary = document["summary"]
    rows["mean"] = dict(summary["mean"])
    rows["std"] = dict(summary["std"])
    rows["pooled"] = {c: summary["pooled"].get(c, float("nan")) for c in columns}
    return rows, document


def _cell(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.4f}"


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one line per image then the summary rows; whole image | FOV."""
    head = ["image"] + [f"{m} (whole / FOV)" for m in TABLE_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [f"{_cell(row.get(m))} / {_cell(row.get('fov_' + m))}" for m in TABLE_METRICS]
        label = f"**{name}**" if name in ("mean", "std", "pooled", SECOND_OBSERVER) else name
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def second_observer_row(pair, region: np.ndarray) -> dict:
    """The second annotator's mask of `pair` scored against the first's, whole image and
    inside `region` (bool [H, W]), with the pixel counts of both (metrics_json.COUNTS_KEY,
    FOV_COUNTS_KEY) for pooled figures. AUC is NaN: a binary map has no ROC curve.
    ValueError naming the file when the masks or the FOV differ in size."""
    first = imaging.read_mask(pair.mask_path).astype(bool)
    second = imaging.read_mask(pair.second_mask_path).astype(bool)
    for path, other in ((pair.second_mask_path, second), ("its FOV", region)):
        if other.shape != first.shape:
            raise ValueError(f"{pair.mask_path}: {first.shape[1]}x{first.shape[0]}, "
                             f"{path} is {other.shape[1]}x{other.shape[0]}")
    row = metrics.binary_metrics(second, first)
    row.update({f"fov_{k}": v for k, v in
                metrics.binary_metrics(second[region], first[region]).items()})
    row["auc"] = row["fov_auc"] = float("nan")
    row[metrics_json.COUNTS_KEY] = metrics.confusion_counts(second, first)
    row[metrics_json.FOV_COUNTS_KEY] = metrics.confusion_counts(second[region], first[region])
    return {"image": pair.image_id, **row}


def second_observer_rows(pairs, fov_masks: dict[str, np.ndarray]) -> list[dict]:
    """second_observer_row of each pair with a second annotator (`fov_masks[image_id]`:
    its FOV, bool [H, W])."""
    return [second_observer_row(pair, fov_masks[pair.image_id]) for pair in pairs
            if getattr(pair, "second_mask_path", None)]


def fov_region(pair, photo: np.ndarray) -> np.ndarray:
    """bool [H, W]: the pair's FOV file, else the FOV computed from the photo."""
    path = getattr(pair, "fov_path", None)
    return imaging.read_mask(path).astype(bool) if path else fov.fov_mask(photo)


# ---------------------------------------------------------------------------- pictures

def text_band(text: str, width: int, height: int, scale: float, align: str = "center",
              background=WHITE, colour=BLACK) -> np.ndarray:
    """uint8 RGB [height, width, 3] holding one line of text (OpenCV Hershey font)."""
    band = np.full((height, width, 3), background, np.uint8)
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, max(1, int(round(scale * 1.6)))
    (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
    while w > width - 8 and scale > 0.3:  # shrink what does not fit
        scale *= 0.9
        (w, h), _ = cv2.getTextSize(text, font, scale, thickness)
    x = (width - w) // 2 if align == "center" else 6
    cv2.putText(band, text, (max(0, x), (height + h) // 2), font, scale, colour, thickness,
                cv2.LINE_AA)
    return band


def _rgb(panel: np.ndarray) -> np.ndarray:
    return np.dstack([panel] * 3) if panel.ndim == 2 else panel


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    if image.shape[1] == width:
        return image
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def labelled_montage(rows: Sequence[tuple[str, Sequence[np.ndarray]]],
                     titles: Sequence[str] = COLUMN_TITLES,
                     width: Optional[int] = MONTAGE_PANEL_WIDTH,
                     legend: Optional[str] = ERROR_LEGEND) -> np.ndarray:
    """A grid of panels, one row per image, with titles.

    Args:
      rows: (row title, panels) per image; panels uint8 [H, W, 3] or [H, W], one per
        column title.
      titles: the column titles, drawn once above the grid.
      width: every panel is resized (area averaging) to this width; None keeps the
        first panel's width (full resolution).
      legend: a line of text under the grid, or None.

    Returns:
      uint8 RGB [H', W', 3] on a white background.
    """
    if not rows:
        raise ValueError("labelled_montage needs at least one row")
    width = width or rows[0][1][0].shape[1]
    scale = max(0.7, width / 500)
    band = int(round(34 * scale))
    columns = len(titles)
    total = columns * width + (columns + 1) * GAP
    header = np.full((band, total, 3), 255, np.uint8)
    for i, title in enumerate(titles):
        x = GAP + i * (width + GAP)
        header[:, x:x + width] = text_band(title, width, band, 0.8 * scale)
    parts = [header]
    for label, panels in rows:
        if len(panels) != columns:
            raise ValueError(f"row {label!r} has {len(panels)} panels for {columns} titles")
        fitted = [_fit_width(_rgb(p), width) for p in panels]
        height = max(p.shape[0] for p in fitted)
        parts.append(text_band(label, total, band, 0.75 * scale, align="left",
                               background=(235, 235, 235)))
        strip = np.full((height + GAP, total, 3), 255, np.uint8)
        for i, panel in enumerate(fitted):
            x = GAP + i * (width + GAP)
            strip[:panel.shape[0], x:x + width] = panel
        parts.append(strip)
    if legend:
        parts.append(text_band(legend, total, band, 0.6 * scale))
    return np.concatenate(parts, axis=0)


def plot_training_curves(history: dict, path: str, monitor: str = "val_loss") -> bool:
    """Loss and Dice per epoch, train and validation, side by side, with a marker at the
    best epoch of `monitor` ([train] monitor: the epoch best_model.keras comes from).
    False without history."""
    if not history.get("epoch"):
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in zip(axes, ("loss", "dice_coef"),
                              ("loss (lower is better)", "Dice coefficient (higher is better)")):
        callbacks.draw_curves(ax, history, (key, "val_" + key), monitor, marker=".")
        ax.set_ylabel(label)
        ax.set_title(f"{key}: training and validation")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    storage.write_bytes_atomic(path, png.getvalue())
    return True


def read_probabilities(segment_dir: str, image_id: str) -> Optional[np.ndarray]:
    """float32 [H, W] in [0, 1] from <segment_dir>/<id>_probabilities.png (16-bit,
    probability x 65535), or None when the segment stage did not write it."""
    path = storage.join(segment_dir, image_id + "_probabilities.png")
    if not storage.exists(path):
        return None
    data = cv2.imdecode(np.frombuffer(storage.read_bytes(path), np.uint8),
                        cv2.IMREAD_UNCHANGED)
    if data is None:
        return None
    data = data[..., 0] if data.ndim == 3 else data
    scale = 65535.0 if data.dtype == np.uint16 else 255.0
    return data.astype(np.float32) / scale


def _write_png(path: str, image: np.ndarray) -> None:
    storage.write_bytes_atomic(path, imaging.encode_png(image))


# ---------------------------------------------------------------------------- report

def _fov_masks(held_out, photos: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """{image id: bool FOV} from the pairs' FOV files, else computed; and the source."""
    masks = {pair.image_id: fov_region(pair, photos[pair.image_id]) for pair in held_out}
    from_files = sum(bool(getattr(pair, "fov_path", None)) for pair in held_out)
    source = ("the dataset's FOV masks" if from_files == len(masks)
              else "automatic field-of-view mask" if not from_files
              else f"the dataset's FOV masks for {from_files} image(s), computed otherwise")
    return masks, source


def write_report(workdir: str, stare_dir: str, data_dir: str, model_dir: str,
                 segment_dir: str, held_out) -> str:
    """Writes report.md, montage.png, report_images/<id>.png and training_curves.png into
    `workdir`; returns the report's path.

    held_out: the segmented test images' pairs (image_id, image_path, mask_path and,
      when the dataset has them, fov_path and second_mask_path).
    """

    rows, document = read_segment_metrics(segment_dir)
    info = dataset_info_lib.read_dataset_info(data_dir)
    model = model_info_lib.read_model_info(model_dir)
    history = callbacks.read_history(storage.join(model_dir, callbacks.HISTORY_FILE))
    monitor = model.config.get("train", {}).get("monitor", "val_loss")
    has_curves = plot_training_curves(history, storage.join(workdir, CURVES_FILE), monitor)

    photos = {p.image_id: imaging.read_image(p.image_path) for p in held_out}
    fov_masks, fov_source = _fov_masks(held_out, photos)
    observer = second_observer_rows(held_out, fov_masks)
    if observer:
        columns = [c for c in next(iter(rows.values()))]
        stats = metrics.summarize(observer, columns)
        rows[SECOND_OBSERVER] = {c: stats[c][0] for c in columns}

    threshold = document["threshold"] if document else model.threshold
    picture_rows, full_size, hints = [], [], []
    storage.makedirs(storage.join(workdir, FULL_SIZE_DIR))
    for pair in held_out:
        predicted_path = storage.join(segment_dir, pair.image_id + ".png")
        if not storage.exists(predicted_path):
            continue
        truth = imaging.read_mask(pair.mask_path)
        predicted = imaging.read_mask(predicted_path)
        dice = rows.get(pair.image_id, {}).get("dice", float("nan"))
        fov_dice = rows.get(pair.image_id, {}).get("fov_dice", float("nan"))
        label = f"{pair.image_id}   Dice {_cell(dice)}   (inside FOV {_cell(fov_dice)})"
        probabilities = read_probabilities(segment_dir, pair.image_id)
        if probabilities is None or probabilities.shape != predicted.shape:
            probability_panel = np.full(predicted.shape, 128, np.uint8)  # not written
        else:
            probability_panel = np.round(np.clip(probabilities, 0, 1) * 255).astype(np.uint8)
            hint = mask_hints.empty_mask_hint(probabilities, predicted, threshold,
                                              truth_fraction=float(truth.mean()))
            if hint:
                hints.append(f"- {pair.image_id}: {hint}")
                label += "   mask nearly empty: see the report"
        panels = [photos[pair.image_id], truth * 255, probability_panel, predicted * 255,
                  error_map.error_map(predicted, truth)]
        picture_rows.append((label, panels))
        path = storage.join(workdir, FULL_SIZE_DIR, f"{pair.image_id}.png")
        _write_png(path, labelled_montage([(label, panels)], width=None))
        full_size.append(f"[{pair.image_id}]({FULL_SIZE_DIR}/{pair.image_id}.png)")
    if picture_rows:
        _write_png(storage.join(workdir, MONTAGE_FILE), labelled_montage(picture_rows))

    evaluation = storage.join(model_dir, "evaluation.csv")
    split_lines = "\n".join(
        f"| {name} | {', '.join(s.image_ids)} | {s.tiles} | {s.augmented_tiles} |"
        for name, s in sorted(info.splits.items()))
    epochs = len(history.get("epoch", []))
    best_index = callbacks.best_index(history, monitor)
    best = float("nan") if best_index is None else history[monitor][best_index]
    best_epoch = callbacks.best_epoch_number(history, monitor)
    best_at = f" at epoch {best_epoch} (as the training log numbers it)" if best_epoch else ""
    source = (f"`{storage.join(segment_dir, 'metrics.json')}`" if document
              else f"`{storage.join(segment_dir, 'metrics.csv')}`")
    pooled_note = ("\"pooled\" counts the pixels of all images at once (the global F1 of "
                   "published tables; AUC is not pooled).\n" if document else "")
    observer_note = (f"\"{SECOND_OBSERVER}\": the second annotator's masks of "
                     f"{len(observer)} image(s) scored against the first annotator's (no "
                     "AUC: a binary map has no ROC curve).\n" if observer else "")
    hints_text = ("\n**Nearly empty predictions.** A Dice near 0 here is not a bug in the "
                  "scoring:\n\n" + "\n".join(hints) + "\n") if hints else ""
    where = workdir if storage.is_remote(workdir) else os.path.abspath(workdir)
    text = f"""# Run report: {where}

Source photos: `{stare_dir}`. Model: `{model_dir}` (tile {model.tile_size}, scale
{model.scale}, precision {model.precision}). Trained {epochs} epochs, best {monitor} {best:.4f}{best_at}.

## Split (by image)

| split | images | tiles | augmented tiles |
|---|---|---|---|
{split_lines}

## Held-out full images

Segmented whole, outputs at each photo's own size ([tiledinfer] input_scale, recorded in
metrics.json; auto resamples each photo to the model's FOV diameter), threshold
{threshold}; metrics from {source}; FOV = {fov_source}.
{pooled_note}{observer_note}
{metrics_table(rows)}
{hints_text}
Tile-level test metrics: `{evaluation}`.

## Pictures

{'![training curves](' + CURVES_FILE + ')' if has_curves else '(no training history)'}

Each row: photo | ground truth | probability (black 0, white 1) | prediction | errors
({ERROR_LEGEND.split(': ', 1)[1]}).
Full resolution: {', '.join(full_size) or 'none'}.

![montage]({MONTAGE_FILE})
"""
    path = storage.join(workdir, REPORT_FILE)
    storage.write_text_atomic(path, text)
    return path

"""The run report: W/report.md, W/montage.png and W/training_curves.png.

The metrics table is read from the segment stage's metrics.csv, so the report shows
exactly the figures that file holds.
"""
from __future__ import annotations

import csv
import os
from typing import Sequence

import numpy as np

MONTAGE_FILE = "montage.png"
CURVES_FILE = "training_curves.png"
REPORT_FILE = "report.md"
MONTAGE_PANEL_WIDTH = 350
TABLE_METRICS = ("dice", "iou", "sensitivity", "specificity", "accuracy", "auc")


def read_metrics_csv(path: str) -> dict[str, dict[str, float]]:
    """{row name ('im0001', ..., 'mean', 'std'): {column: value}} of a metrics.csv."""
    with open(path, newline="", encoding="utf-8") as f:
        return {row["image"]: {k: float(v) for k, v in row.items() if k != "image"}
                for row in csv.DictReader(f)}


def metrics_table(rows: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one line per image then mean and std; whole image | inside FOV."""
    head = ["image"] + [f"{m} (whole / FOV)" for m in TABLE_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in rows.items():
        cells = [f"{row[m]:.4f} / {row['fov_' + m]:.4f}" for m in TABLE_METRICS]
        label = f"**{name}**" if name in ("mean", "std") else name
        lines.append("| " + " | ".join([label] + cells) + " |")
    return "\n".join(lines)


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    import cv2
    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def montage(rows: Sequence[Sequence[np.ndarray]], width: int = MONTAGE_PANEL_WIDTH) -> np.ndarray:
    """Grid of RGB uint8 panels (each resized to `width` px wide), one row per image.

    Args:
      rows: per image, its panels as uint8 [H, W, 3] or [H, W].
    Returns:
      uint8 [sum of row heights + gaps, n_panels * (width + gap), 3].
    """
    gap = 4
    strips = []
    for panels in rows:
        fitted = [_fit_width(np.dstack([p] * 3) if p.ndim == 2 else p, width) for p in panels]
        height = max(p.shape[0] for p in fitted)
        strip = np.full((height + gap, len(fitted) * (width + gap), 3), 255, np.uint8)
        for i, panel in enumerate(fitted):
            strip[:panel.shape[0], i * (width + gap):i * (width + gap) + width] = panel
        strips.append(strip)
    return np.concatenate(strips, axis=0)


def plot_training_curves(history: dict, path: str) -> bool:
    """Loss and Dice per epoch, train and validation, side by side. False without history."""
    if not history.get("epoch"):
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key in zip(axes, ("loss", "dice_coef")):
        for name in (key, "val_" + key):
            if name in history:
                ax.plot(history["epoch"], history[name], label=name)
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_report(workdir: str, stare_dir: str, data_dir: str, model_dir: str,
                 segment_dir: str, held_out) -> str:
    """Writes report.md, montage.png and training_curves.png into `workdir`; returns the
    report's path. `held_out`: beam_jobs.inputs.ImagePair of the segmented test images."""
    from tiled_vessel_seg.beam_jobs import image_io
    from tiled_vessel_seg.inference import cli as segment_cli
    from tiled_vessel_seg.tfrecords import dataset_info as dataset_info_lib
    from tiled_vessel_seg.trainer import callbacks
    from tiled_vessel_seg.trainer import model_info as model_info_lib

    import cv2
    metrics_csv = os.path.join(segment_dir, "metrics.csv")
    rows = read_metrics_csv(metrics_csv)
    info = dataset_info_lib.read_dataset_info(data_dir)
    model = model_info_lib.read_model_info(model_dir)
    history = callbacks.read_history(os.path.join(model_dir, callbacks.HISTORY_FILE))
    has_curves = plot_training_curves(history, os.path.join(workdir, CURVES_FILE))

    panels = []
    for pair in held_out:
        photo = image_io.read_image(pair.image_path)
        truth = image_io.read_mask(pair.mask_path) * 255
        predicted = cv2.imread(os.path.join(segment_dir, pair.image_id + ".png"),
                               cv2.IMREAD_GRAYSCALE)
        panels.append([photo, truth, predicted, segment_cli.overlay_image(photo, predicted)])
    if panels:
        picture = montage(panels)
        cv2.imwrite(os.path.join(workdir, MONTAGE_FILE), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))

    evaluation = os.path.join(model_dir, "evaluation.csv")
    split_lines = "\n".join(
        f"| {name} | {', '.join(s.image_ids)} | {s.tiles} | {s.augmented_tiles} |"
        for name, s in sorted(info.splits.items()))
    epochs = len(history.get("epoch", []))
    best = min(history["val_loss"]) if history.get("val_loss") else float("nan")
    text = f"""# Run report: {os.path.abspath(workdir)}

Source photos: `{stare_dir}`. Model: `{model_dir}` (tile {model.tile_size}, scale
{model.scale}, precision {model.precision}). Trained {epochs} epochs, best val_loss {best:.4f}.

## Split (by image)

| split | images | tiles | augmented tiles |
|---|---|---|---|
{split_lines}

## Held-out full images

Segmented at native resolution (`vessel-segment --input_scale native`), threshold
{model.threshold}; metrics from `{metrics_csv}`; FOV = automatic field-of-view mask.

{metrics_table(rows)}

Tile-level test metrics: `{evaluation}`.

## Pictures

{'![training curves](' + CURVES_FILE + ')' if has_curves else '(no training history)'}

Each row: photo | ground truth | prediction | overlay.

![montage]({MONTAGE_FILE})
"""
    path = os.path.join(workdir, REPORT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


"""Which threshold should a fold's model use? Held-out F1 at 0.5 vs chosen on photos (figures).

    .venv/bin/python benchmarks/threshold_choice_bench.py --config configs/chase_small.config \
        --source chase_db1:../shared/data/chase_db1 --workdir runs/chase_small_cv

For every finished fold of a `vessel-cv` work dir, segments the fold's training photos
and its validation photos whole with the fold's model (the config's [tiledinfer] tiling,
TTA and input scale: what vessel-cv's `[train] select_image_threshold` does), takes the
threshold maximising F1 over their FOV pixels (`threshold_photos = "train"` and
`"valid"`), and re-scores the fold's held-out photos from their saved probability maps
(`<stem>_probabilities.png`, 16 bit) at 0.5 and at both chosen thresholds. Prints one row
per held-out photo and the paired mean differences against 0.5 over all photos: the
held-out photos never choose their own threshold. The first column reproduces the
fold's metrics.csv (checked to 1e-3), so the comparison is on the photos and pixels the
CV scored.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the CV's config file")
    parser.add_argument("--source", action="append", required=True,
                        help="the CV's sources, as vessel-cv --source (repeatable)")
    parser.add_argument("--workdir", required=True, help="the vessel-cv work dir")
    parser.add_argument("--output", default=None, help="also write the rows to this CSV")
    args = parser.parse_args()

    import cv2
    import numpy as np
    from tiled_vessel_seg import fov, imaging, sources
    from tiled_vessel_seg.configs import config_file
    from tiled_vessel_seg.inference import metrics
    from tiled_vessel_seg.pipeline import cv
    from tiled_vessel_seg.trainer import metrics as train_metrics

    config = config_file.load_config(args.config)
    pairs, _ = sources.find_pairs([sources.parse_source(s) for s in args.source])
    by_id = {p.image_id: p for p in pairs}
    rows = []
    for fold_path in sorted(pathlib.Path(args.workdir).glob("fold_*/" + cv.FOLD_FILE)):
        fold = json.loads(fold_path.read_text())
        fold_dir = fold_path.parent
        predictor = cv.fold_predictor(config, str(fold_dir / "model"))
        chosen = {}
        for role in ("train", "valid"):
            counts = cv.threshold_counts(predictor, [by_id[i] for i in fold[f"{role}_ids"]])
            chosen[role] = train_metrics.f1_by_threshold(*counts)[0]
        scored = {}
        for metrics_csv in fold_dir.glob("segment/**/metrics.csv"):
            with open(metrics_csv, newline="") as f:
                scored.update({r["image"]: (metrics_csv.parent, float(r["fov_dice"]))
                               for r in csv.DictReader(f) if r["image"] in by_id})
        for image_id in fold["test_ids"]:
            pair = by_id[image_id]
            folder, reported = scored[image_id]
            stem = imaging.image_stem(pair.image_path)
            saved = cv2.imread(str(folder / f"{stem}_probabilities.png"), cv2.IMREAD_UNCHANGED)
            if saved is None or saved.dtype != np.uint16:
                raise SystemExit(f"{folder / f'{stem}_probabilities.png'}: not a 16-bit map")
            probabilities = saved.astype(np.float64) / 65535.0
            truth = imaging.read_mask(pair.mask_path) > 0
            region = fov.fov_mask(imaging.read_image(pair.image_path))
            f1 = {name: metrics.segmentation_metrics(probabilities, truth, t, region)["dice"]
                  for name, t in (("0.5", 0.5), ("train", chosen["train"]),
                                  ("valid", chosen["valid"]))}
            if abs(f1["0.5"] - reported) > 1e-3:
                raise SystemExit(f"{image_id}: F1 {f1['0.5']:.4f} at 0.5 from the saved map, "
                                 f"{reported:.4f} in {folder}/metrics.csv")
            rows.append({"fold": fold["index"], "image": image_id,
                         "t_train": chosen["train"], "t_valid": chosen["valid"],
                         "f1_0.5": f1["0.5"], "f1_train": f1["train"], "f1_valid": f1["valid"]})
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in rows[-1].items()), flush=True)
    if not rows:
        raise SystemExit(f"no finished fold in {args.workdir}")
    base = np.array([r["f1_0.5"] for r in rows])
    print(f"\n{len(rows)} held-out photos of {len({r['fold'] for r in rows})} folds: "
          f"F1 at 0.5 {base.mean():.4f} +- {base.std():.4f}")
    for role in ("train", "valid"):
        values = np.array([r[f"f1_{role}"] for r in rows])
        diff = values - base
        print(f"threshold chosen on the {role} photos: {values.mean():.4f} +- "
              f"{values.std():.4f}; paired difference {diff.mean():+.4f} +- {diff.std():.4f}, "
              f"{int((diff > 0).sum())} of {len(rows)} photos higher")
    if args.output:
        with open(args.output, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()

"""Two vessel-cv runs compared per held-out image: the paired differences that say whether
a change helped (folds differ by about +-0.02, so a difference of run means says little).

Read from each run's fold folders (W/fold_<f>/fold.json and its segment/[<dataset>/]
metrics.json or metrics.csv), so a run whose last folds are still training compares on the
images its finished folds held out. Images are paired by image id; both runs must hold
each image out in the same fold (the same fold assignment: same photos, --folds and
--seed), else the pairing mixes two splits and `pair_runs` says which images differ.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from typing import Sequence

import numpy as np

from tiled_vessel_seg import storage
from tiled_vessel_seg.pipeline import report
from tiled_vessel_seg.pipeline.cv_layout import ALL, FOLD_FILE, SEGMENT_DIR, fold_index
SUMMARY_ROWS = ("mean", "std", "pooled")


class CompareError(ValueError):
    """A run folder that cannot be compared (no finished fold, unreadable metrics)."""


@dataclasses.dataclass(frozen=True)
class HeldOutScore:
    """One held-out image of a run: its dataset ("" when the run has one, unnamed), the
    fold that held it out, and the metric's value (float; NaN when the metric is empty)."""
    dataset: str
    fold: int
    value: float


@dataclasses.dataclass(frozen=True)
class Pairing:
    """image id -> (baseline, candidate) score for the images both runs held out, and the
    images only one run has (a fold not finished yet, other photos)."""
    pairs: dict[str, tuple[HeldOutScore, HeldOutScore]]
    only_baseline: tuple[str, ...]
    only_candidate: tuple[str, ...]

    @property
    def fold_mismatches(self) -> tuple[str, ...]:
        """Images the two runs held out in different folds."""
        return tuple(i for i, (b, c) in self.pairs.items() if b.fold != c.fold)


@dataclasses.dataclass(frozen=True)
class PairedSummary:
    """One group of paired images. means/stds: over the group's images (np.std, ddof 0);
    difference: candidate - baseline per image, its mean and std; higher/lower: images
    where the candidate scores strictly higher/lower."""
    name: str
    images: int
    baseline: tuple[float, float]
    candidate: tuple[float, float]
    difference: tuple[float, float]
    higher: int
    lower: int


def _segment_folders(segment_dir: str) -> dict[str, str]:
    """{dataset: folder holding metrics}: the segment folder itself for a one-dataset run
    (dataset ""), else each sub-folder that holds metrics."""
    def has_metrics(folder):
        return any(storage.exists(storage.join(folder, name))
                   for name in ("metrics.json", "metrics.csv"))
    if has_metrics(segment_dir):
        return {"": segment_dir}
    return {name: storage.join(segment_dir, name) for name in storage.listdir(segment_dir)
            if has_metrics(storage.join(segment_dir, name))}


def read_heldout_scores(workdir: str, metric: str = "fov_dice") -> dict[str, HeldOutScore]:
    """{image id: HeldOutScore} of every image the finished folds of vessel-cv run
    `workdir` held out, for `metric` (a column of metrics.csv: fov_dice, dice, fov_auc...).

    Raises CompareError when the folder has no fold with scores or lacks the metric."""
    if not storage.isdir(workdir):
        raise CompareError(f"{workdir}: not a folder (give a vessel-cv --workdir)")
    scores: dict[str, HeldOutScore] = {}
    for name in storage.listdir(workdir):
        fold_path = storage.join(workdir, name)
        index = fold_index(fold_path)
        segment_dir = storage.join(fold_path, SEGMENT_DIR)
        fold_file = storage.join(fold_path, FOLD_FILE)
        if index is None or not storage.exists(fold_file) or not storage.isdir(segment_dir):
            continue
        test_ids = set(json.loads(storage.read_text(fold_file))["test_ids"])
        for dataset, folder in _segment_folders(segment_dir).items():
            rows, _ = report.read_segment_metrics(folder)
            for stem, row in rows.items():
                if stem in SUMMARY_ROWS:
                    continue
                # sources.py names an image "<dataset>-<stem>" when stems repeat across datasets
                image = stem if stem in test_ids else f"{dataset}-{stem}"
                if image not in test_ids:
                    continue
                if metric not in row:
                    raise CompareError(f"{folder}: no column {metric!r} in its metrics "
                                       f"(columns: {', '.join(sorted(row))})")
                scores[image] = HeldOutScore(dataset, index, float(row[metric]))
    if not scores:
        raise CompareError(f"{workdir}: no finished fold (no fold_<f>/segment metrics of "
                           "held-out images); is it a vessel-cv --workdir?")
    return scores


def pair_runs(baseline: dict[str, HeldOutScore],
              candidate: dict[str, HeldOutScore]) -> Pairing:
    """The images both runs scored, paired by image id (sorted), and the rest."""
    common = sorted(set(baseline) & set(candidate))
    return Pairing(pairs={i: (baseline[i], candidate[i]) for i in common},
                   only_baseline=tuple(sorted(set(baseline) - set(candidate))),
                   only_candidate=tuple(sorted(set(candidate) - set(baseline))))


def _summary(name: str, pairs: Sequence[tuple[HeldOutScore, HeldOutScore]]) -> PairedSummary:
    base = np.array([b.value for b, _ in pairs], np.float64)
    cand = np.array([c.value for _, c in pairs], np.float64)
    keep = np.isfinite(base) & np.isfinite(cand)
    base, cand = base[keep], cand[keep]
    diff = cand - base

    def mean_std(v):
        return (float(v.mean()), float(v.std())) if v.size else (float("nan"),) * 2
    return PairedSummary(name, int(diff.size), mean_std(base), mean_std(cand), mean_std(diff),
                         int((diff > 0).sum()), int((diff < 0).sum()))


def paired_summaries(pairing: Pairing) -> list[PairedSummary]:
    """One summary per dataset (sorted; the candidate's name, else the baseline's), then
    ALL over every paired image when there is more than one dataset."""
    groups: dict[str, list] = {}
    for b, c in pairing.pairs.values():
        groups.setdefault(c.dataset or b.dataset, []).append((b, c))
    out = [_summary(name, group) for name, group in sorted(groups.items())]
    if len(groups) > 1:
        out.append(_summary(ALL, list(pairing.pairs.values())))
    return out


def fold_differences(pairing: Pairing) -> dict[int, tuple[float, int]]:
    """{candidate fold: (mean paired difference, images)} over the paired images."""
    folds: dict[int, list[float]] = {}
    for b, c in pairing.pairs.values():
        if np.isfinite(b.value) and np.isfinite(c.value):
            folds.setdefault(c.fold, []).append(c.value - b.value)
    return {f: (float(np.mean(v)), len(v)) for f, v in sorted(folds.items())}


def pairs_csv(pairing: Pairing) -> str:
    """dataset,image,fold,baseline,candidate,difference per paired image (fold: the
    candidate's)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", "image", "fold", "baseline", "candidate", "difference"])
    for image, (b, c) in pairing.pairs.items():
        writer.writerow([c.dataset or b.dataset, image, c.fold, f"{b.value:.6f}",
                         f"{c.value:.6f}", f"{c.value - b.value:+.6f}"])
    return out.getvalue()

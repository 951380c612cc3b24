"""Stage 5: assign each IMAGE (never a tile) to train / valid / test.

The assignment is a pure function of the sorted image ids and the seed, computed before
any tile exists, so no image contributes tiles to two splits and only training tiles
are augmented.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Optional, Sequence

import numpy as np

from tiled_vessel_seg import datasets
from tiled_vessel_seg.configs.schema import PreprocessConfig, parse_split
from tiled_vessel_seg.names import SPLIT_NAMES


def split_counts(n: int, shares: dict[str, float]) -> dict[str, int]:
    """Images per split: largest remainders, then every non-zero share gets >= 1 image
    (taken from the largest split) when n is at least the number of non-zero shares."""
    exact = {k: n * shares.get(k, 0.0) for k in SPLIT_NAMES}
    counts = {k: math.floor(v) for k, v in exact.items()}
    by_remainder = sorted(SPLIT_NAMES, key=lambda k: (-(exact[k] - counts[k]),
                                                      SPLIT_NAMES.index(k)))
    for k in by_remainder[:n - sum(counts.values())]:
        counts[k] += 1
    wanted = [k for k in SPLIT_NAMES if shares.get(k, 0.0) > 0]
    if n >= len(wanted):
        for k in wanted:
            if counts[k] == 0:
                donor = max(SPLIT_NAMES, key=lambda d: (counts[d], -SPLIT_NAMES.index(d)))
                counts[donor] -= 1
                counts[k] += 1
    return counts


def assign_splits(image_ids: Sequence[str], split: str = "train=0.7,valid=0.15,test=0.15",
                  seed: int = 0, valid_ids: Sequence[str] = (),
                  test_ids: Sequence[str] = (),
                  subjects: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """{image id: split name}.

    With `valid_ids` or `test_ids`, those images go to valid / test and all others to
    train. Otherwise the sorted ids are shuffled with numpy's Generator(seed) and cut in
    the order train, valid, test by `split_counts`. With `subjects` ({image id: subject
    key}, sources.subject_key) the sorted SUBJECTS are shuffled and cut instead, so the
    photos of one subject (both eyes of a CHASE_DB1 child) share a split; where every
    image is its own subject this is the same assignment.

    Raises:
      ValueError: duplicate ids, an id both in valid_ids and test_ids, explicit ids that
        are not among the inputs, or explicit ids that put the photos of one subject (the
        two eyes of a CHASE_DB1 child) in two splits.
    """
    ids = sorted(image_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate image ids: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
    if valid_ids or test_ids:
        both = set(valid_ids) & set(test_ids)
        if both:
            raise ValueError(f"ids in both valid_ids and test_ids: {', '.join(sorted(both))}")
        unknown = (set(valid_ids) | set(test_ids)) - set(ids)
        if unknown:
            raise ValueError(f"valid/test ids not among the inputs: {', '.join(sorted(unknown))}")
        out = {i: "valid" if i in valid_ids else "test" if i in test_ids else "train" for i in ids}
        if subjects:
            _refuse_split_subjects(out, subjects)
        return out
    members: dict[str, list[str]] = {}
    for image_id in ids:
        members.setdefault(subjects.get(image_id, image_id) if subjects else image_id,
                           []).append(image_id)
    units = sorted(members)
    counts = split_counts(len(units), parse_split(split))
    order = np.random.default_rng(seed).permutation(len(units))
    shuffled = [units[i] for i in order]
    out: dict[str, str] = {}
    start = 0
    for name in SPLIT_NAMES:
        for unit in shuffled[start:start + counts[name]]:
            for image_id in members[unit]:
                out[image_id] = name
        start += counts[name]
    return out


def _refuse_split_subjects(assignment: Mapping[str, str], subjects: Mapping[str, str]) -> None:
    """Raises ValueError naming the first subject whose photos `assignment` puts in two
    splits: a model validated or tested on one eye of a child and trained on the other is
    judged on a photo it has half seen."""
    first: dict[str, str] = {}
    for image_id in sorted(assignment):
        key = subjects.get(image_id, image_id)
        other = first.setdefault(key, image_id)
        if assignment[other] != assignment[image_id]:
            raise ValueError(
                f"{other} ({assignment[other]}) and {image_id} ({assignment[image_id]}) are "
                f"photos of one subject, {key}: name all of a subject's photos in valid_ids / "
                "test_ids")


def with_input_splits(config: PreprocessConfig, pairs: Sequence[datasets.ImagePair]
                      ) -> tuple[PreprocessConfig, str]:
    """The [preprocess] config with the splits the inputs assign (a manifest's split
    column, DRIVE's training/ and test/ folders) as valid_ids / test_ids, and one line
    saying so; the config unchanged (and "") when it names valid_ids / test_ids itself or
    no input assigns a split. Validation images are drawn from the unassigned and
    "train" images by the config's valid share of train + valid.
    """
    if config.valid_ids or config.test_ids:
        return config, ""
    shares = parse_split(config.split)
    kept = shares["train"] + shares["valid"]
    ids = datasets.split_ids_from_inputs(pairs, shares["valid"] / kept if kept else 0.0,
                                         config.seed)
    if ids is None:
        return config, ""
    valid_ids, test_ids = ids
    note = (f"splits from the inputs: test {len(test_ids)} image(s), valid {len(valid_ids)} "
            f"({', '.join(valid_ids)}), train the other {len(pairs) - len(valid_ids) - len(test_ids)}")
    return dataclasses.replace(config, valid_ids=tuple(valid_ids), test_ids=tuple(test_ids)), note

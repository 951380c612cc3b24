"""What a vessel-segment or vessel-segment-beam run is asked to do, and the photographs
it names.

`SegmentRequest` is the one typed config both tools build from their flags
(inference/segment_flags.py) and hand to their library call (folder_run.segment_folder,
beam_segment.segment_archive). `find_photos` turns its inputs (files, folders, globs, a
manifest, a ground-truth folder) into the photographs and their ground truth, as both
tools pair them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from tiled_vessel_seg import datasets, imaging
from tiled_vessel_seg.inference import segment


@dataclasses.dataclass(frozen=True)
class SegmentRequest:
    """One segmentation run.

    model_dir: the model's directory (a shipped model resolved to its folder).
    model: the --model value as given (None: the shipped default); the Beam job's workers
      resolve a shipped name in their own installation.
    predictor: keyword arguments of predictor.load_predictor (predictor_flags).
    patterns: photo files, folders or globs (local or gs://); none with a manifest.
    manifest, masks_dir, layout, fov_dir: where the ground truth is (source_flags).
    output_dir and what is written there besides <stem>.png.
    max_pixels: the largest photograph segmented, after any enlargement in the graph.
    """
    model_dir: str
    output_dir: str
    predictor: dict[str, Any]
    patterns: tuple[str, ...] = ()
    model: Optional[str] = None
    manifest: Optional[str] = None
    masks_dir: Optional[str] = None
    layout: Optional[str] = None
    fov_dir: Optional[str] = None
    save_probabilities: bool = False
    overlay: bool = False
    error_map: bool = False
    overwrite: bool = False
    max_pixels: int = imaging.MAX_PIXELS

    @property
    def with_truths(self) -> bool:
        return bool(self.manifest or self.masks_dir)


@dataclasses.dataclass
class FoundPhotos:
    """files: the photographs, in order; truths: {output stem: datasets.ImagePair} (None
    without ground truth); unmatched: patterns that matched no image; problems: rejected
    manifest rows or photographs without ground truth; ignored: files of masks_dir that
    name no photograph (datasets.ignored_note)."""
    files: list[str]
    truths: Optional[dict[str, datasets.ImagePair]]
    unmatched: list[str]
    problems: list[datasets.InputProblem]
    ignored: list


def find_photos(request: SegmentRequest) -> FoundPhotos:
    """The photographs of `request` and their ground truth: from the manifest (its rows,
    unless patterns are given) or paired with masks_dir by layout's names.

    Raises datasets.InputDirError for a manifest or folder that cannot be used at all,
    storage.StorageError for an input that cannot be read.
    """
    truths, problems, ignored = None, [], []
    patterns = list(request.patterns)
    if request.manifest:
        pairs, problems = datasets.read_manifest(request.manifest)
        truths = {imaging.image_stem(p.image_path): p for p in pairs}
        patterns = patterns or [p.image_path for p in pairs]
    files, unmatched = segment.expand_inputs(patterns)
    if request.masks_dir:
        truths, problems = datasets.match_truths(files, request.masks_dir, request.layout,
                                                 request.fov_dir, ignored)
    return FoundPhotos(files, truths, unmatched, problems, ignored)

"""Finds (photograph, vessel mask) pairs for the Beam job.

The layouts live on the ground floor, `tiled_vessel_seg.datasets`, shared with
vessel-segment and vessel-run: a STARE, DRIVE, CHASE_DB1 or HRF tree as distributed
(`discover`), two folders paired by the layout's naming or by stem (`pair_folders`), or
a manifest CSV (`read_manifest`); `find_pairs` takes any of them. Unpaired files,
non-image files, duplicate ids, empty folders and bad manifest rows are returned as
`InputProblem`s (they become lines of errors.jsonl); only a missing top-level folder or
an unusable manifest raises `InputDirError`.
"""
from tiled_vessel_seg.datasets import (  # noqa: F401  (this module's public names)
    ImagePair, InputDirError, InputProblem, Source, discover, discover_stare, find_pairs,
    pair_folders, read_manifest)

"""Automatic field-of-view (FOV) mask of a fundus photograph: `tiled_vessel_seg.fov`,
re-exported for inference's callers (the Beam job imports the ground floor directly)."""
from tiled_vessel_seg.fov import (  # noqa: F401  (this module's public names)
    MIN_THRESHOLD, RELATIVE_THRESHOLD, WORK_SIDE, fov_mask)

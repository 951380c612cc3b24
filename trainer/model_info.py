"""Moved to `tiled_vessel_seg.model_info` (inference and the pipeline read it too); this
name is kept only while open branches still import it."""
from tiled_vessel_seg.model_info import (  # noqa: F401
    INFO_FILE, MODEL_FILE, ModelDirError, ModelInfo, read_model_info, write_model_info)

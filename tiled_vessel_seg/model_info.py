"""`M/model_info.json`: everything inference needs about a trained model, without flags.

Written by the trainer next to `M/best_model.keras`; read by inference, the pipeline
and the report. Local or remote model dirs (gs://) behave the same (storage).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from tiled_vessel_seg import storage
from tiled_vessel_seg.tfrecords import schema

INFO_FILE = "model_info.json"
MODEL_FILE = "best_model.keras"


class ModelDirError(ValueError):
    """A model directory that cannot be used as it is."""


@dataclasses.dataclass
class ModelInfo:
    """tile_size: model input side in px. scale: enlargement the training tiles had
    (inference at `--input_scale native` enlarges by this in the graph). overlap,
    threshold: tiled-inference defaults. input_normalization: "divide_255" means the
    model takes float32 RGB in [0, 1]. data_ids: {split: [image ids]} of the training data.
    """
    tile_size: int
    scale: int
    overlap: int = 64
    threshold: float = 0.5
    input_normalization: str = "divide_255"
    schema_version: int = schema.SCHEMA_VERSION
    model_file: str = MODEL_FILE
    precision: str = "float32"
    data_ids: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)

    def model_path(self, model_dir: str) -> str:
        return storage.join(model_dir, self.model_file)


def info_path(model_dir: str) -> str:
    return storage.join(model_dir, INFO_FILE)


def write_model_info(model_dir: str, info: ModelInfo) -> str:
    """Writes model_dir/model_info.json atomically; returns its path."""
    return storage.write_text_atomic(
        info_path(model_dir), json.dumps(dataclasses.asdict(info), indent=2, sort_keys=True))


def read_model_info(model_dir: str) -> ModelInfo:
    """Reads and checks `model_dir/model_info.json`; errors name the file and problem."""
    path = info_path(model_dir)
    if not storage.exists(path):
        raise ModelDirError(f"{path}: not found; is {model_dir} a model dir written by vessel-train?")
    try:
        info = ModelInfo(**json.loads(storage.read_text(path)))
    except storage.StorageError as e:
        raise ModelDirError(str(e)) from None
    except (ValueError, TypeError) as e:
        raise ModelDirError(f"{path}: not a valid model_info.json: {e}") from None
    if info.schema_version not in schema.READABLE_VERSIONS:
        raise ModelDirError(f"{path}: written for record schema {info.schema_version}, this "
                            f"tool reads {schema.READABLE_VERSIONS}; retrain or use a matching "
                            "version")
    return info

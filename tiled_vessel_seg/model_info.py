"""`M/model_info.json`: everything inference needs about a trained model, without flags.

Written by the trainer next to `M/best_model.keras`; read by inference, the pipeline
and the report. Local or remote model dirs (gs://) behave the same (storage).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tiled_vessel_seg import names, storage

INFO_FILE = names.MODEL_INFO_FILE
MODEL_FILE = names.MODEL_FILE
MODEL_EXTENSION = names.MODEL_EXTENSION


class ModelDirError(ValueError):
    """A model directory that cannot be used as it is."""


@dataclasses.dataclass
class ModelInfo:
    """tile_size: model input side in px. scale: enlargement the training tiles had
    (inference at `--input_scale native` enlarges by this in the graph). overlap,
    threshold: tiled-inference defaults. input_normalization: "divide_255" means the
    model takes float32 RGB in [0, 1]. data_ids: {split: [image ids]} of the training data.
    source_sizes: [[width, height], ...] of the training photographs before enlargement
    (from dataset_info.json), for `--input_scale auto`; empty in older model dirs.
    fov_diameter: px across the field of view of the photos the training tiles were cut
    from, before `scale` (dataset_info.json's: [preprocess] fov_diameter, or one camera's
    median); `--input_scale auto` resamples a photo to it. None in older model dirs and
    for training data of mixed, unharmonised scales.
    """
    tile_size: int
    scale: int
    overlap: int = 64
    threshold: float = 0.5
    input_normalization: str = "divide_255"
    schema_version: int = names.SCHEMA_VERSION
    model_file: str = MODEL_FILE
    precision: str = "float32"
    data_ids: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    source_sizes: list[list[int]] = dataclasses.field(default_factory=list)
    fov_diameter: float | None = None

    def model_path(self, model_dir: str) -> str:
        """model_dir/model_file; raises ModelDirError unless model_file is a `.keras` file
        name inside model_dir (see check_model_file)."""
        check_model_file(self.model_file, info_path(model_dir))
        path = storage.join(model_dir, self.model_file)
        if not storage.is_remote(path) and os.path.islink(path):
            target, root = os.path.realpath(path), os.path.realpath(model_dir)
            if os.path.commonpath([target, root]) != root:
                raise ModelDirError(f"{path}: a symbolic link to {target}, outside the model "
                                    f"dir: refused, as a model_file outside it is")
        return path


def check_model_file(name: object, where: str) -> None:
    """Accepts only a plain `NAME.keras` file name: no directory part, no `..`.

    Keras honours safe_mode only for `.keras` archives (an `.h5` may run code while it
    loads), and a path would let model_info.json point at any file on the machine.
    """
    if (not isinstance(name, str) or not name.endswith(MODEL_EXTENSION)
            or name == MODEL_EXTENSION or "/" in name or "\\" in name or ".." in name
            or ":" in name or name.strip() != name):
        raise ModelDirError(
            f"{where}: model_file {name!r} refused: it must be a {MODEL_EXTENSION} file "
            f"name inside the model dir (no path, no '..'; .h5/.hdf5 and SavedModels are "
            "not loaded, as Keras cannot load them in safe mode)")


# field -> (accepted JSON types, what to say). bool is excluded from the numbers.
_FIELD_TYPES = {
    "tile_size": ((int,), "an integer"),
    "scale": ((int,), "an integer"),
    "overlap": ((int,), "an integer"),
    "threshold": ((int, float), "a number"),
    "input_normalization": ((str,), "a string"),
    "schema_version": ((int,), "an integer"),
    "model_file": ((str,), "a string"),
    "precision": ((str,), "a string"),
    "data_ids": ((dict,), "an object {split: [image ids]}"),
    "config": ((dict,), "an object"),
    "source_sizes": ((list,), "a list of [width, height] pairs"),
    "fov_diameter": ((int, float), "a number of px or null"),
}
_NULLABLE = {"fov_diameter"}


def _check_fields(path: str, raw: object) -> None:
    """Raises ModelDirError naming the first field whose JSON value has the wrong type or
    range, a missing required field, or an unknown one."""
    if not isinstance(raw, dict):
        raise ModelDirError(f"{path}: not a valid model_info.json: expected a JSON object, "
                            f"got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(ModelInfo)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ModelDirError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}")
    for name, field in fields.items():
        if name not in raw:
            if (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING):
                raise ModelDirError(f"{path}: field {name!r} is missing")
            continue
        if name not in _FIELD_TYPES:  # tests require an entry for every field
            continue
        value = raw[name]
        if value is None and name in _NULLABLE:
            continue
        types, wanted = _FIELD_TYPES[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ModelDirError(f"{path}: field {name!r} must be {wanted}, got "
                                f"{json.dumps(value)[:80]}")
    ids = raw.get("data_ids", {})
    if not all(isinstance(v, list) and all(isinstance(i, str) for i in v)
               for v in ids.values()):
        raise ModelDirError(f"{path}: field 'data_ids' must map each split to a list of "
                            "image id strings")
    if not all(isinstance(s, list) and len(s) == 2
               and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in s)
               for s in raw.get("source_sizes", [])):
        raise ModelDirError(f"{path}: field 'source_sizes' must be a list of [width, height] "
                            f"pairs of positive integers, got "
                            f"{json.dumps(raw['source_sizes'])[:80]}")
    for name, low in (("tile_size", 1), ("scale", 1), ("overlap", 0)):
        if name in raw and raw[name] < low:
            raise ModelDirError(f"{path}: field {name!r} must be >= {low}, got {raw[name]}")
    if raw.get("fov_diameter") is not None and not raw["fov_diameter"] > 0:
        raise ModelDirError(f"{path}: field 'fov_diameter' must be > 0 px or null, got "
                            f"{raw['fov_diameter']}")
    if "threshold" in raw and not 0.0 <= raw["threshold"] <= 1.0:
        raise ModelDirError(f"{path}: field 'threshold' must be in [0, 1], got "
                            f"{raw['threshold']}")


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
        raw = json.loads(storage.read_text(path))
    except storage.StorageError as e:
        raise ModelDirError(str(e)) from None
    except ValueError as e:
        raise ModelDirError(f"{path}: not a valid model_info.json: {e}") from None
    _check_fields(path, raw)
    check_model_file(raw.get("model_file", MODEL_FILE), path)
    info = ModelInfo(**raw)
    if info.schema_version not in names.READABLE_SCHEMA_VERSIONS:
        raise ModelDirError(f"{path}: written for record schema {info.schema_version}, this "
                            f"tool reads {names.READABLE_SCHEMA_VERSIONS}; retrain or use a "
                            "matching version")
    return info

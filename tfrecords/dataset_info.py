"""`OUT/dataset_info.json`: what the preprocessing job wrote, read by the trainer.

Layout of a dataset directory (local or gs://):

    OUT/dataset_info.json              written last, atomically
    OUT/{split}/{split}-SSSSS-of-NNNNN.tfrecord[.gz]
    OUT/errors.jsonl                   one line per rejected input (path, stage, reason)
    OUT/statistics.png

JSON fields:
    schema_version: int (tfrecords.schema.SCHEMA_VERSION; version 1 is still read)
    compression: "gzip" | "none"
    encoding: {"image": "jpeg"|"png"|"raw", "mask": "png"|"packed", "jpeg_quality": int}
              (absent in version 1 files: PNG images and masks)
    has_fov: bool, every record carries a field-of-view plane (schema.FOV_KEY), made from
             the dataset's FOV files or computed from the photograph (images.jsonl says
             which per image); absent (false) in older files
    parameters: {key: value}, every job parameter (config [preprocess] + inputs), read
                into DatasetParameters (typed tile_size, scale, split_assignment)
    splits: {split: {"image_ids": [str], "tiles": int, "augmented_tiles": int,
                     "records": int, "shards": [path relative to OUT],
                     "shard_records": [int per shard] (absent in older files),
                     "datasets": {name: {"images": int, "records": int}} per source
                                 dataset (tiled_vessel_seg/sources.py; absent in older
                                 files, whose records carry no dataset name)}}
    dropped_empty: int, tiles dropped by the vessel filter
    errors: int, rejected inputs (lines of errors.jsonl)
    input_checksums: {path: sha256 hex}
    source_sizes: [[width, height], ...], the distinct sizes of the photographs before
                  enlargement (for `--input_scale auto`; absent in older files)
    fov_diameters: {image id: px or null}, each photograph's field-of-view diameter as
                   given (tiled_vessel_seg/fov.py; absent in older files)
    fov_diameter: px or null, the FOV diameter of the photos the tiles were cut from
                  (before `scale`): [preprocess] fov_diameter when the job resampled them
                  to it, else the training photos' median if they agree within 15 %
                  (beam_jobs/fov_scale.py); the trainer copies it into model_info.json
                  for `--input_scale auto` (absent in older files)
    versions: {"tensorflow": str, "apache_beam": str, "python": str}
    created: ISO-8601 UTC time
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Optional

from tiled_vessel_seg import names, storage
from tiled_vessel_seg.tfrecords import encoding as encoding_lib
from tiled_vessel_seg.tfrecords import schema

INFO_FILE = names.DATASET_INFO_FILE
ERRORS_FILE = "errors.jsonl"
STATISTICS_FILE = "statistics.png"


class DatasetError(ValueError):
    """A dataset directory that cannot be read as it is."""


@dataclasses.dataclass
class SplitInfo:
    image_ids: list[str]
    tiles: int
    augmented_tiles: int
    records: int
    shards: list[str]
    # records in each shard, in `shards` order ([] in files written before it was recorded)
    shard_records: list[int] = dataclasses.field(default_factory=list)
    # {dataset name: {"images": n, "records": n}}; {} in files written before it
    datasets: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DatasetParameters:
    """The job parameters recorded in dataset_info.json.

    tile_size: tile side in px (of the enlarged image); None if not recorded.
    scale: enlargement factor of the tiles. split_assignment: {image id: split}.
    values: every recorded key as written ([preprocess] values, input folders ...); the
    JSON keeps this one flat mapping, so files written before the typed fields read.
    """
    tile_size: Optional[int] = None
    scale: int = 1
    split_assignment: dict[str, str] = dataclasses.field(default_factory=dict)
    values: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "DatasetParameters":
        if not isinstance(raw, Mapping):
            raise TypeError(f"parameters must be an object, got {type(raw).__name__}")
        tile_size = raw.get("tile_size")
        return cls(tile_size=None if tile_size is None else int(tile_size),
                   scale=int(raw.get("scale", 1)),
                   split_assignment=dict(raw.get("split_assignment") or {}),
                   values=dict(raw))

    def to_json(self) -> dict[str, Any]:
        typed = {"scale": self.scale, "split_assignment": self.split_assignment}
        if self.tile_size is not None:
            typed["tile_size"] = self.tile_size
        return {**self.values, **typed}


@dataclasses.dataclass
class DatasetInfo:
    """dataset_info.json as an object; `parameters` may be given as a plain mapping."""
    schema_version: int
    compression: str
    parameters: DatasetParameters
    splits: dict[str, SplitInfo]
    dropped_empty: int = 0
    errors: int = 0
    input_checksums: dict[str, str] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    created: str = ""
    # dataclasses.asdict(TileEncoding); None only in version-1 files (PNG image and mask).
    encoding: Optional[dict[str, Any]] = None
    source_sizes: list[list[int]] = dataclasses.field(default_factory=list)
    has_fov: bool = False
    # FOV scale (beam_jobs/fov_scale.py): {image id: FOV diameter in px measured in the
    # photograph as given, None when none was found}, and the diameter of the photos the
    # tiles were cut from, before enlargement: [preprocess] fov_diameter when harmonised,
    # else the training photos' median when they agree within 15 %, else None.
    fov_diameters: dict[str, Optional[float]] = dataclasses.field(default_factory=dict)
    fov_diameter: Optional[float] = None

    def __post_init__(self):
        if not isinstance(self.parameters, DatasetParameters):
            self.parameters = DatasetParameters.from_json(self.parameters)

    @property
    def record_format(self) -> schema.RecordFormat:
        """Schema version and pixel encodings of every record of this dataset."""
        if self.encoding is None:
            if self.schema_version != 1:
                raise ValueError(f"schema version {self.schema_version} needs an encoding")
            if self.has_fov:
                raise ValueError("schema version 1 has no FOV plane")
            return schema.VERSION_1
        return schema.RecordFormat(self.schema_version, encoding_lib.TileEncoding(**self.encoding),
                                   has_fov=bool(self.has_fov))

    @property
    def tfrecord_compression(self) -> str:
        """The `compression_type` argument of tf.data.TFRecordDataset."""
        return "GZIP" if self.compression == "gzip" else ""

    def shard_paths(self, data_dir: str, split: str) -> list[str]:
        """Absolute shard paths of `split` under `data_dir`."""
        if split not in self.splits:
            raise DatasetError(f"{join(data_dir, INFO_FILE)}: no split {split!r}; "
                               f"it has {', '.join(sorted(self.splits)) or 'none'}")
        return [join(data_dir, s) for s in self.splits[split].shards]

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        fields["parameters"] = self.parameters.to_json()
        return json.dumps(fields, indent=2, sort_keys=True)


join = storage.join
shard_name = storage.shard_name  # the one shard-name template (storage.py)


def read_dataset_info(data_dir: str) -> DatasetInfo:
    """Reads `data_dir/dataset_info.json`; errors name the file and the problem."""
    path = join(data_dir, INFO_FILE)
    if not storage.exists(path):
        raise DatasetError(f"{path}: not found; is {data_dir} a dataset written by "
                           f"vessel-preprocess (it writes this file last)?")
    try:
        raw = json.loads(storage.read_text(path))
        splits = {name: SplitInfo(**value) for name, value in raw.pop("splits").items()}
        info = DatasetInfo(splits=splits, **raw)
    except storage.StorageError as e:
        raise DatasetError(str(e)) from None
    except (ValueError, TypeError, KeyError) as e:
        raise DatasetError(f"{path}: not a valid dataset_info.json: {e}") from None
    if info.schema_version not in schema.READABLE_VERSIONS:
        raise DatasetError(f"{path}: schema version {info.schema_version}, this tool reads "
                           f"versions {', '.join(map(str, schema.READABLE_VERSIONS))}; re-run "
                           f"vessel-preprocess or use a matching version of the tool")
    try:
        info.record_format  # pylint: disable=pointless-statement  (validates the encoding)
    except (ValueError, TypeError) as e:
        raise DatasetError(f"{path}: bad encoding {info.encoding}: {e}") from None
    for name, split in info.splits.items():
        for shard in split.shards:
            if not is_inside_dataset(shard):
                raise DatasetError(f"{path}: shard {str(shard)[:200]!r} of split {name!r} is "
                                   f"outside the dataset folder; shards are paths relative "
                                   f"to it, without '..'")
    return info


def is_inside_dataset(shard: object) -> bool:
    """Whether a shard path of dataset_info.json names a file inside the dataset folder:
    relative, no URL, no drive, no '..' part (an absolute path read any file)."""
    if not isinstance(shard, str) or not shard or storage.is_remote(shard):
        return False
    parts = shard.replace("\\", "/").split("/")
    return not (shard.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts)


def require_fov(data_dir: str, info: DatasetInfo, needed_by: str) -> None:
    """Raises DatasetError naming the dataset when its records carry no FOV plane."""
    if not info.has_fov:
        raise DatasetError(
            f"{join(data_dir, INFO_FILE)}: the records carry no FOV masks, which {needed_by} "
            f"needs; re-run vessel-preprocess with [preprocess] fov_masks = True "
            f"(vessel-run: --overwrite)")


def write_dataset_info(data_dir: str, info: DatasetInfo) -> str:
    """Writes the JSON atomically (temp file + rename); returns its path."""
    return storage.write_text_atomic(join(data_dir, INFO_FILE), info.to_json())

"""The Beam job: image pairs -> enlarged, tiled, filtered, augmented, split TFRecord shards.

Graph: one element per IMAGE, then one per kept TILE (the per-tile work is spread over
all workers, whatever the number of images):

    Create(pairs with their split) -> Reshuffle -> PlanImageFn --tasks--> Reshuffle
        -> TileRecordsFn --train/valid/test--> WriteToTFRecord per split
    PlanImageFn --errors--> errors.jsonl (dead letters, with the discovery problems)
                --stats---> images.jsonl (one line per image written)

`PlanImageFn` reads, decodes and checks one pair, enlarges its mask and chooses the
tiles; any failure there makes the image one dead letter, and it happens before the
first tile task is emitted, so a bad image is never half present in the shards. Each
task carries the tile's small source window, not the enlarged tile (see tile_tasks.py).
`TileRecordsFn` rebuilds the tile, augments training tiles and encodes the records
(tfrecords/encoding.py). With [preprocess] fov_masks every record also carries the
tile's field-of-view plane: the pair's FOV file, else computed from the photograph
(tiled_vessel_seg/fov.py), moved with the vessel mask as one array (tile_tasks.py).
After the pipeline finishes, `finalize_dataset` writes statistics.png and, last and
atomically, dataset_info.json from images.jsonl, errors.jsonl and the shard files
actually written.
"""
from __future__ import annotations

import dataclasses
import datetime
import errno
import io
import json
import platform
import re
import uuid
from typing import Callable, Iterable, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.direct.direct_runner import DirectRunner

from tiled_vessel_seg import console, datasets, imaging, run_lock, sources, storage
from tiled_vessel_seg.beam_jobs import fov_scale as fov_scale_lib
from tiled_vessel_seg.beam_jobs import split, tile_tasks
from tiled_vessel_seg.configs.schema import PreprocessConfig
from tiled_vessel_seg.lazy_imports import lazy_imports
from tiled_vessel_seg.tfrecords import dataset_info as info_lib
from tiled_vessel_seg.tfrecords import record_counts
from tiled_vessel_seg.tfrecords import schema
from tiled_vessel_seg.tfrecords.encoding import TileEncoding

with lazy_imports():  # OpenCV: loaded by the Beam workers that compute a FOV
    from tiled_vessel_seg import fov as fov_lib

IMAGES_FILE = "images.jsonl"  # one line per processed image: split, counts, checksums
METRICS_NAMESPACE = "vessel_preprocess"
ERRORS_TAG = "errors"
STATS_TAG = "stats"
TASKS_TAG = "tasks"


@dataclasses.dataclass(frozen=True)
class WorkItem:
    """One image to process: a pair and the split it was assigned to; fov_path: the
    dataset's FOV mask (None: computed from the photograph when FOV planes are written)."""
    image_id: str
    image_path: str
    mask_path: str
    split: str
    fov_path: str | None = None
    dataset: str = ""  # the dataset's name, written into every record of the image


def error_line(path: str, stage: str, reason: str, image_id: str | None = None) -> str:
    """One errors.jsonl line: {"path", "stage", "reason"[, "image_id"]}."""
    entry = {"path": path, "stage": stage, "reason": reason}
    if image_id:
        entry["image_id"] = image_id
    return json.dumps(entry, sort_keys=True)


def load_pair(item: WorkItem) -> tuple[object, object, dict]:
    """Reads and decodes one pair; returns (image uint8 [H, W, 3], mask uint8 [H, W] {0,1},
    checksums {path: sha256}). Raises ImageReadError naming the file and the reason."""
    image_bytes = imaging.read_image_bytes(item.image_path)
    mask_bytes = imaging.read_image_bytes(item.mask_path)
    checksums = {item.image_path: imaging.sha256_hex(image_bytes),
                 item.mask_path: imaging.sha256_hex(mask_bytes)}
    image = imaging.decode_image_bytes(item.image_path, image_bytes)
    mask = imaging.decode_mask_bytes(item.mask_path, mask_bytes)
    if image.shape[:2] != mask.shape[:2]:
        raise imaging.ImageReadError(
            item.mask_path, f"size mismatch: mask is {mask.shape[1]}x{mask.shape[0]}, "
                            f"image {item.image_path} is {image.shape[1]}x{image.shape[0]} (WxH)")
    return image, mask, checksums


FOV_FROM_FILE = "file"
FOV_COMPUTED = "computed"


def load_fov(item: WorkItem, image) -> tuple[object, dict, str]:
    """The field of view of one pair: (uint8 [H, W] {0, 1}, checksums {path: sha256},
    source FOV_FROM_FILE or FOV_COMPUTED). From item.fov_path when the pair has one,
    else computed from the photograph. Raises ImageReadError naming the FOV file."""
    if item.fov_path is None:
        return fov_lib.fov_mask(image).astype("uint8"), {}, FOV_COMPUTED
    data = imaging.read_image_bytes(item.fov_path)
    fov = imaging.decode_mask_bytes(item.fov_path, data)
    if fov.shape[:2] != image.shape[:2]:
        raise imaging.ImageReadError(
            item.fov_path, f"size mismatch: FOV mask is {fov.shape[1]}x{fov.shape[0]}, "
                           f"image {item.image_path} is {image.shape[1]}x{image.shape[0]} (WxH)")
    return fov, {item.fov_path: imaging.sha256_hex(data)}, FOV_FROM_FILE


def tile_encoding(config: PreprocessConfig) -> TileEncoding:
    """The record encodings the [preprocess] config asks for."""
    return TileEncoding(config.image_encoding, config.mask_encoding, config.jpeg_quality)


class PlanImageFn(beam.DoFn):
    """WorkItem -> its TileTasks (main output), then one stats line; or one dead letter.

    Everything that can fail for an image (read, decode, size check, enlargement, tile
    choice) runs before the first task is emitted, so a bad image has no tile in any shard.
    """

    def __init__(self, config: PreprocessConfig):
        self._config = config  # a frozen dataclass of plain values: safe to pickle
        self._images = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "images")
        self._errors = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "errors")
        self._kept = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "tiles_kept")
        self._dropped = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "tiles_dropped")

    def setup(self):
        _single_threaded_opencv()

    def process(self, item: WorkItem):
        fov, fov_source = None, None
        try:
            image, mask, checksums = load_pair(item)
            if self._config.fov_masks:
                fov, fov_checksums, fov_source = load_fov(item, image)
                checksums.update(fov_checksums)
        except imaging.ImageReadError as e:
            self._errors.inc()
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, error_line(e.path, "read", e.reason,
                                                                  item.image_id))
            return
        try:
            image, mask, fov, fov_scale = fov_scale_lib.harmonise(
                image, mask, fov, self._config.fov_diameter)
            plan = tile_tasks.plan_image(item.image_id, item.image_path, item.split, image,
                                         mask, self._config, fov, dataset=item.dataset)
        except fov_scale_lib.NoFovError as e:
            self._errors.inc()
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, error_line(
                item.image_path, "fov", str(e), item.image_id))
            return
        except Exception as e:  # noqa: BLE001 - one bad image must not stop the job
            self._errors.inc()
            yield beam.pvalue.TaggedOutput(ERRORS_TAG, error_line(
                item.image_path, "process", f"{type(e).__name__}: {e}", item.image_id))
            return
        self._images.inc()
        self._kept.inc(plan.tiles_kept)
        self._dropped.inc(plan.tiles_dropped)
        yield from plan.tasks
        fov_stats = {"fov_source": fov_source, "fov_path": item.fov_path} if fov_source else {}
        yield beam.pvalue.TaggedOutput(STATS_TAG, json.dumps({
            **fov_stats,
            "image_id": item.image_id, "split": item.split, "image_path": item.image_path,
            "dataset": item.dataset,
            "mask_path": item.mask_path, "tiles_total": plan.tiles_total,
            "tiles_kept": plan.tiles_kept, "tiles_dropped": plan.tiles_dropped,
            "whole_image": plan.whole_image, "augmented": plan.augmented,
            "records": plan.records, "checksums": checksums,
            "fov_diameter": fov_scale.diameter, "fov_factor": fov_scale.factor,
            "source_size": [int(image.shape[1]), int(image.shape[0])]}, sort_keys=True))


class TileRecordsFn(beam.DoFn):
    """TileTask -> its serialized records (the tile and its augmented copies), tagged by split.

    Nothing here depends on the input file any more (PlanImageFn checked it): an
    exception is a bug and fails the job rather than leaving an image half written.
    """

    def __init__(self, config: PreprocessConfig):
        self._config = config
        self._encoding = tile_encoding(config)
        self._augmented = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "tiles_augmented")

    def setup(self):
        _single_threaded_opencv()

    def process(self, task: tile_tasks.TileTask):
        count = 0
        for record in tile_tasks.task_records(task, self._config, self._encoding):
            count += 1
            yield beam.pvalue.TaggedOutput(task.split, record)
        self._augmented.inc(count - 1)


def _single_threaded_opencv() -> None:
    # Parallelism comes from Beam workers; OpenCV's own thread pool only contends with
    # them (cv2.remap of a 512 tile: 6.7 ms CPU single-threaded, 11 ms with 2 threads).
    import cv2  # pylint: disable=import-outside-toplevel  (once per worker, not at pickling)
    cv2.setNumThreads(1)


def build_pipeline(pipeline: beam.Pipeline, items: Sequence[WorkItem],
                   discovery_errors: Sequence[str], config: PreprocessConfig,
                   output_dir: str) -> None:
    """Adds the job's transforms to `pipeline` (does not run it)."""
    used_splits = [s for s in split.SPLIT_NAMES if any(i.split == s for i in items)]
    planned = (pipeline
               | "Images" >> beam.Create(list(items))
               | "SpreadImages" >> beam.Reshuffle()
               | "PlanImage" >> beam.ParDo(PlanImageFn(config)).with_outputs(
                   ERRORS_TAG, STATS_TAG, main=TASKS_TAG))
    outputs = (planned[TASKS_TAG]
               | "SpreadTiles" >> beam.Reshuffle()
               | "TileRecords" >> beam.ParDo(TileRecordsFn(config)).with_outputs(
                   *split.SPLIT_NAMES))
    compression = (CompressionTypes.GZIP if config.compression == "gzip"
                   else CompressionTypes.UNCOMPRESSED)
    for name in used_splits:
        _ = outputs[name] | f"Write{name.title()}" >> beam.io.WriteToTFRecord(
            storage.shard_prefix(output_dir, name),
            file_name_suffix=storage.shard_suffix(config.compression),
            num_shards=config.shards, shard_name_template=storage.BEAM_SHARD_TEMPLATE,
            compression_type=compression)
    errors = ((pipeline | "DiscoveryErrors" >> beam.Create(list(discovery_errors)),
               planned[ERRORS_TAG]) | "AllErrors" >> beam.Flatten())
    _ = errors | "WriteErrors" >> beam.io.WriteToText(
        info_lib.join(output_dir, info_lib.ERRORS_FILE), shard_name_template="", num_shards=1)
    _ = planned[STATS_TAG] | "WriteImageStats" >> beam.io.WriteToText(
        info_lib.join(output_dir, IMAGES_FILE), shard_name_template="", num_shards=1)


def read_lines(path: str) -> list[str]:
    """Non-empty lines of a text file ([] when it does not exist)."""
    if not storage.exists(path):
        return []
    return [line for line in storage.read_text(path).splitlines() if line.strip()]


def write_error_lines(output_dir: str, problems: Iterable[datasets.InputProblem]) -> str | None:
    """Writes OUT/errors.jsonl from discovery problems alone (when nothing can be processed);
    None, writing nothing, when OUT holds a dataset (its errors.jsonl belongs to it)."""
    if holds_dataset(output_dir):
        return None
    path = info_lib.join(output_dir, info_lib.ERRORS_FILE)
    text = "".join(error_line(p.path, p.stage, p.reason) + "\n" for p in problems)
    storage.write_text_atomic(path, text)
    return path


def written_shards(output_dir: str, split_name: str, config: PreprocessConfig) -> list[str]:
    """Shard files of `split_name` this run wrote, relative to output_dir, sorted."""
    return storage.list_shards(output_dir, split_name, config.shards or None, config.compression)


def plot_statistics(splits: dict[str, info_lib.SplitInfo]) -> bytes:
    """PNG bytes of a bar chart: original and augmented tiles per split (matplotlib Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    names = list(splits)
    tiles = [splits[n].tiles for n in names]
    augmented = [splits[n].augmented_tiles for n in names]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.bar(names, tiles, label="tiles")
    ax.bar(names, augmented, bottom=tiles, label="augmented tiles")
    for i, n in enumerate(names):
        ax.text(i, tiles[i] + augmented[i], f"{splits[n].records}\n{len(splits[n].image_ids)} img",
                ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("records")
    ax.set_title("Records per split")
    ax.legend()
    ax.margins(y=0.2)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@dataclasses.dataclass
class JobSummary:
    """What the job did; `print_summary` shows it, the CLI derives the exit code."""
    info: info_lib.DatasetInfo | None
    images_found: int
    images_written: int
    tiles_kept: int
    tiles_dropped: int
    augmented: int
    errors: list[dict]
    output_dir: str
    # One line per split the config asks for that holds no record (every image assigned
    # to it rejected, or too few images to give it one).
    warnings: list[str] = dataclasses.field(default_factory=list)
    # errors.jsonl of this run, None when it was not kept (an old dataset stayed in place).
    errors_file: str | None = None
    # Images whose FOV plane came from the dataset's FOV file (the others' was computed).
    fov_files: int = 0


def requested_splits(config: PreprocessConfig) -> list[str]:
    """The splits the config asks for: train, plus valid/test when ids name images for
    them, else every split with a share > 0."""
    if config.valid_ids or config.test_ids:
        return ["train"] + (["valid"] if config.valid_ids else []) + (
            ["test"] if config.test_ids else [])
    shares = split.parse_split(config.split)
    return [name for name in split.SPLIT_NAMES if shares[name] > 0]


def empty_split_warnings(config: PreprocessConfig, assignment: dict[str, str],
                         splits: dict[str, info_lib.SplitInfo]) -> list[str]:
    """A warning for each requested split without records, naming why."""
    out = []
    for name in requested_splits(config):
        if name in splits and splits[name].records:
            continue
        assigned = sorted(i for i, s in assignment.items() if s == name)
        why = (f"its {len(assigned)} image(s) ({', '.join(assigned)}) were all rejected"
               if assigned else f"no image was assigned to it ({len(assignment)} image(s) "
                                f"for split {config.split!r})")
        out.append(f"split {name!r} was asked for but holds no tile: {why}"
                   + ("; training needs a 'valid' split" if name == "valid" else ""))
    return out


def dataset_counts(rows: list[dict]) -> dict[str, dict[str, int]]:
    """{dataset name: {"images", "records"}} of one split's images.jsonl lines."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = out.setdefault(row.get("dataset", ""), {"images": 0, "records": 0})
        counts["images"] += 1
        counts["records"] += row["records"]
    return dict(sorted(out.items()))


def finalize_dataset(output_dir: str, config: PreprocessConfig, parameters: dict,
                     assignment: dict[str, str]) -> JobSummary:
    """After the pipeline: statistics.png, then dataset_info.json (last, atomically)."""
    stats = [json.loads(line) for line in read_lines(info_lib.join(output_dir, IMAGES_FILE))]
    errors = [json.loads(line) for line in read_lines(info_lib.join(output_dir, info_lib.ERRORS_FILE))]
    splits: dict[str, info_lib.SplitInfo] = {}
    for name in split.SPLIT_NAMES:
        rows = [s for s in stats if s["split"] == name]
        if not rows:
            continue
        shards = written_shards(output_dir, name, config)
        splits[name] = info_lib.SplitInfo(
            image_ids=sorted(s["image_id"] for s in rows),
            tiles=sum(s["tiles_kept"] + s["whole_image"] for s in rows),
            augmented_tiles=sum(s["augmented"] for s in rows),
            records=sum(s["records"] for s in rows),
            shards=shards,
            datasets=dataset_counts(rows),
            # what the trainer checks the shards against (tfrecords/record_counts.py)
            shard_records=[record_counts.count_records(info_lib.join(output_dir, shard),
                                                       config.compression)
                           for shard in shards])
    checksums = {}
    for s in stats:
        checksums.update(s["checksums"])
    info = None
    if splits:
        import tensorflow as tf
        info = info_lib.DatasetInfo(
            schema_version=schema.SCHEMA_VERSION, compression=config.compression,
            encoding=dataclasses.asdict(tile_encoding(config)),
            parameters=parameters, splits=splits,
            dropped_empty=sum(s["tiles_dropped"] for s in stats), errors=len(errors),
            input_checksums=dict(sorted(checksums.items())),
            source_sizes=[list(t) for t in sorted({tuple(s["source_size"]) for s in stats
                                                  if "source_size" in s})],
            has_fov=config.fov_masks,
            fov_diameters={s["image_id"]: s.get("fov_diameter") for s in sorted(
                stats, key=lambda s: s["image_id"])},
            fov_diameter=fov_scale_lib.dataset_fov_diameter(
                [s.get("fov_diameter") for s in stats if s["split"] == "train"],
                config.fov_diameter),
            versions={"tensorflow": tf.__version__, "apache_beam": beam.__version__,
                      "python": platform.python_version()},
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        storage.write_bytes_atomic(info_lib.join(output_dir, info_lib.STATISTICS_FILE),
                                   plot_statistics(splits))
        info_lib.write_dataset_info(output_dir, info)
    return JobSummary(
        info=info, images_found=len(assignment), images_written=len(stats),
        tiles_kept=sum(s["tiles_kept"] for s in stats),
        tiles_dropped=sum(s["tiles_dropped"] for s in stats),
        augmented=sum(s["augmented"] for s in stats), errors=errors, output_dir=output_dir,
        warnings=empty_split_warnings(config, assignment, splits),
        errors_file=info_lib.join(output_dir, info_lib.ERRORS_FILE),
        fov_files=sum(s.get("fov_source") == FOV_FROM_FILE for s in stats))


def format_summary(summary: JobSummary) -> str:
    lines = [f"vessel-preprocess: {summary.images_written} of {summary.images_found} paired "
             f"images written to {summary.output_dir}",
             f"  tiles kept {summary.tiles_kept}, dropped (vessel-free) {summary.tiles_dropped}, "
             f"augmented copies {summary.augmented}"]
    if summary.info is not None and summary.info.has_fov:
        lines.append(f"  FOV planes in every record: {summary.fov_files} image(s) from FOV "
                     f"files, {summary.images_written - summary.fov_files} computed from the photo")
    if summary.info is not None:
        lines.append(f"  {fov_scale_lib.summary_line(summary.info)}")
        for name, s in summary.info.splits.items():
            lines.append(f"  {name:5s}: {len(s.image_ids)} images, {s.tiles} tiles + "
                         f"{s.augmented_tiles} augmented = {s.records} records in "
                         f"{len(s.shards)} shards ({', '.join(s.image_ids)})")
            if len(s.datasets) > 1:
                lines.append("         by dataset: " + ", ".join(
                    f"{n} {c['images']} images/{c['records']} records"
                    for n, c in s.datasets.items()))
    lines.append(f"  errors: {len(summary.errors)}"
                 + (f" (see {summary.errors_file})" if summary.errors and summary.errors_file
                    else ""))
    for e in summary.errors[:10]:
        lines.append(f"    [{e.get('stage')}] {imaging.one_line(e.get('path'))}: "
                     f"{imaging.one_line(e.get('reason'))}")
    if len(summary.errors) > 10:
        lines.append(f"    ... and {len(summary.errors) - 10} more")
    lines.extend(f"  WARNING: {w}" for w in summary.warnings)
    return "\n".join(lines)


# OS errors that mean "this output location cannot take the dataset" (not a bad input:
# inputs fail inside PlanImageFn and become dead letters).
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES,
                           errno.EPERM, errno.EFBIG})


def output_os_error(error: BaseException) -> OSError | None:
    """The OSError with an OUTPUT_ERRNOS errno behind a failed job, else None.

    In memory, the DirectRunner chains the worker's OSError to its RuntimeError; worker
    processes (multi_processing, Dataflow) only send its text, "[Errno 28] No space ...".
    """
    seen = set()
    chain = error
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.errno in OUTPUT_ERRNOS:
            return chain
        chain = chain.__cause__ or chain.__context__
    for number, reason in re.findall(r"\[Errno (\d+)\] ([^\n\[\]':\"]+)", str(error)):
        if int(number) in OUTPUT_ERRNOS:
            return OSError(int(number), reason.strip())
    return None


def remove_beam_temp_dirs(output_dir: str) -> list[str]:
    """Deletes the beam-temp-* folders a failed job leaves in output_dir and its split
    folders (WriteToTFRecord/WriteToText stage their files there); returns them.
    Best effort: a failure to delete is not allowed to hide the job's own error."""
    patterns = [storage.join(output_dir, "beam-temp-*")] + [
        storage.join(output_dir, name, "beam-temp-*") for name in split.SPLIT_NAMES]
    removed = []
    for pattern in patterns:
        try:
            for path in storage.glob(pattern):
                storage.remove_tree(path)
                removed.append(path)
        except Exception:  # noqa: BLE001 - already failing; keep the original error
            continue
    return removed


class OutputExistsError(ValueError):
    """The output folder already holds a dataset and --overwrite was not given."""


STAGING_PREFIX = ".staging-"


def holds_dataset(output_dir: str) -> bool:
    return storage.exists(info_lib.join(output_dir, info_lib.INFO_FILE))


def prepare_output_dir(output_dir: str, overwrite: bool) -> bool:
    """Checks the output folder (creating it) and says whether a dataset there is to be
    replaced. Deletes nothing: a replacement is written beside the old dataset and swapped
    in only when complete (`swap_in`).

    Raises:
      OutputExistsError: the folder holds dataset_info.json and overwrite is False.
    """
    if holds_dataset(output_dir):
        if not overwrite:
            raise OutputExistsError(f"{output_dir} already holds a dataset ({info_lib.INFO_FILE}); "
                                    f"pass --overwrite to replace it")
        return True
    storage.makedirs(output_dir)
    return False


def dataset_files(data_dir: str) -> list[str]:
    """This job's files in data_dir, relative to it: shards of every split, then
    errors.jsonl, images.jsonl, statistics.png, dataset_info.json (last)."""
    names = [shard for name in split.SPLIT_NAMES for shard in storage.list_shards(data_dir, name)]
    for name in (info_lib.ERRORS_FILE, IMAGES_FILE, info_lib.STATISTICS_FILE, info_lib.INFO_FILE):
        if storage.exists(info_lib.join(data_dir, name)):
            names.append(name)
    return names


def swap_in(staging_dir: str, output_dir: str) -> None:
    """Replaces the dataset in output_dir by the complete one in staging_dir.

    The old dataset_info.json goes first (from then on no tool reads the old dataset as
    valid), then the old files; the new files move in with dataset_info.json last, so at
    no moment does a dataset_info.json describe shards that are not all there.
    """
    old = dataset_files(output_dir)
    for name in [info_lib.INFO_FILE] + old:
        storage.remove(info_lib.join(output_dir, name), missing_ok=True)
    for name in dataset_files(staging_dir):  # names are "train/train-...", "errors.jsonl"
        if "/" in name:
            storage.makedirs(storage.join(output_dir, name.rsplit("/", 1)[0]))
        storage.rename(info_lib.join(staging_dir, name), info_lib.join(output_dir, name))
    storage.remove_tree(staging_dir)


def local_runner(options) -> beam.runners.PipelineRunner | None:
    """The DirectRunner without its Prism attempt, or None (Beam's runner of `options`).

    Since Beam 2.68 the DirectRunner first tries Prism, a Go binary it downloads from
    GitHub at run time; offline it logs the failure and falls back to its Python
    FnApiRunner, which is what this job is measured and tested on. Marking the runner
    interactive is the DirectRunner's one switch that skips Prism (it changes nothing
    else), so a laptop runs the same engine online and offline, without a download.
    """
    if options.view_as(StandardOptions).runner not in (None, "DirectRunner", "direct"):
        return None
    runner = DirectRunner()
    runner.is_interactive()
    return runner


def run_job(config: PreprocessConfig, pairs: Iterable[datasets.ImagePair],
            problems: Iterable[datasets.InputProblem], output_dir: str,
            pipeline_options=None, parameters: dict | None = None,
            overwrite: bool = False) -> JobSummary:
    """Splits the pairs by image, runs the pipeline to completion and finalizes the dataset.

    Args:
      config: the [preprocess] section (flags already applied).
      pairs, problems: from `datasets.discover_stare` / `datasets.pair_folders`.
      output_dir: local or gs:// folder.
      pipeline_options: beam PipelineOptions (runner etc.); None = DirectRunner in memory.
      parameters: extra job parameters recorded in dataset_info.json (input folders ...).
      overwrite: replace a dataset already in output_dir.

    Raises:
      run_lock.FolderLockedError: another run is writing output_dir (local folders).
      OutputExistsError: output_dir holds a dataset and overwrite is False.
    """
    pairs = sorted(pairs, key=lambda p: p.image_id)
    problems = list(problems)
    assignment = split.assign_splits([p.image_id for p in pairs], config.split, config.seed,
                                     config.valid_ids, config.test_ids,
                                     subjects={p.image_id: sources.subject_key(p) for p in pairs})
    items = [WorkItem(p.image_id, p.image_path, p.mask_path, assignment[p.image_id],
                      p.fov_path, p.dataset or "") for p in pairs]
    # One run owns the folder from the check for an old dataset to the swap: two runs into
    # one folder made one dataset of both runs' shards, and both exited 0.
    with run_lock.owned(output_dir, "vessel-preprocess"):
        remove_leftovers(output_dir)
        return _write_owned(config, items, problems, output_dir, pipeline_options,
                            parameters, overwrite, assignment)


def preprocess(config: PreprocessConfig, inputs: Sequence[datasets.Source], output_dir: str,
               pipeline_options: PipelineOptions | None = None, *,
               parameters: dict | None = None, overwrite: bool = False,
               say: Callable[[str], None] = lambda text: None) -> JobSummary:
    """vessel-preprocess's library call: the image pairs of `inputs` -> the dataset in
    `output_dir` (local or gs://), split and sharded as the [preprocess] `config` says.

    parameters: what dataset_info.json records about the inputs (default:
      `sources.parameters(inputs)`); say: receives one-line notes (files ignored, splits
      the inputs fix, the number of pairs).
    With no pair at all, OUT/errors.jsonl lists the problems (unless OUT holds a dataset)
    and the summary has no info and `errors_file` None when nothing was written.

    Raises:
      datasets.InputDirError: a missing input folder or unusable manifest.
      OutputExistsError: output_dir holds a dataset and overwrite is False.
      run_lock.FolderLockedError: another run is writing output_dir.
      storage.StorageError: output_dir cannot be written.
      ValueError: inputs that contradict the config (e.g. split ids naming no image).
    """
    ignored: list = []
    pairs, problems = sources.find_pairs(inputs, ignored)
    if ignored:
        say(datasets.ignored_note(ignored))
    config, note = split.with_input_splits(config, pairs)
    if note:
        say(note)
    if not pairs:
        with run_lock.owned(output_dir, "vessel-preprocess"):
            prepare_output_dir(output_dir, overwrite)
            written = write_error_lines(output_dir, problems)
        return JobSummary(info=None, images_found=0, images_written=0, tiles_kept=0,
                          tiles_dropped=0, augmented=0, output_dir=output_dir,
                          errors=[json.loads(error_line(p.path, p.stage, p.reason))
                                  for p in problems], errors_file=written)
    options = pipeline_options or PipelineOptions([])
    say(f"{len(pairs)} image pairs, {len(problems)} rejected input(s); runner "
        f"{options.view_as(StandardOptions).runner or 'DirectRunner'}")
    return run_job(config, pairs, problems, output_dir, options,
                   sources.parameters(inputs) if parameters is None else parameters,
                   overwrite=overwrite)


def remove_leftovers(output_dir: str) -> list[str]:
    """What killed runs left in output_dir, removed by the run that now owns it: staging
    folders of --overwrite runs, Beam's temp folders, and, when the folder holds no
    dataset_info.json, this job's files of a run killed before it wrote one (its shards
    would otherwise be listed with the new run's). Returns the paths removed."""
    removed = []
    for path in storage.glob(storage.join(output_dir, STAGING_PREFIX + "*")):
        storage.remove_tree(path)
        removed.append(path)
    removed += remove_beam_temp_dirs(output_dir)
    if not holds_dataset(output_dir):
        for name in dataset_files(output_dir):
            storage.remove(info_lib.join(output_dir, name), missing_ok=True)
            removed.append(info_lib.join(output_dir, name))
    return removed


def _write_owned(config: PreprocessConfig, items: list[WorkItem],
                 problems: list[datasets.InputProblem], output_dir: str, pipeline_options,
                 parameters: dict | None, overwrite: bool,
                 assignment: dict[str, str]) -> JobSummary:
    """run_job's work once the run owns output_dir."""
    replacing = prepare_output_dir(output_dir, overwrite)
    # A dataset already there stays whole until the new one is complete beside it.
    job_dir = (storage.join(output_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")
               if replacing else output_dir)
    params = dict(dataclasses.asdict(config), **(parameters or {}), output_dir=output_dir)
    params["split_assignment"] = assignment
    try:
        storage.makedirs(job_dir)
        options = pipeline_options or PipelineOptions([])
        # quiet_subprocesses: the DirectRunner's worker processes print start-up chatter
        with console.quiet_subprocesses(), \
                beam.Pipeline(runner=local_runner(options), options=options) as pipeline:
            build_pipeline(pipeline, items,
                           [error_line(p.path, p.stage, p.reason) for p in problems],
                           config, job_dir)
        summary = finalize_dataset(job_dir, config, params, assignment)
    except BaseException as e:
        remove_beam_temp_dirs(job_dir)
        if replacing:
            storage.remove_tree(job_dir)
        cause = output_os_error(e)
        if cause is not None:
            raise storage.StorageError(output_dir, f"cannot write: {cause.strerror}",
                                       cause.errno) from e
        raise
    if not replacing:
        return summary
    if summary.info is None:  # nothing to replace the old dataset with: keep it
        storage.remove_tree(job_dir)
        return dataclasses.replace(summary, output_dir=output_dir, errors_file=None, warnings=[
            *summary.warnings, f"no tile was written; the dataset already in {output_dir} "
                               f"was kept"])
    swap_in(job_dir, output_dir)
    return dataclasses.replace(summary, output_dir=output_dir,
                               errors_file=info_lib.join(output_dir, info_lib.ERRORS_FILE))

"""The Beam job of `vessel-segment-beam`: whole archives of photographs segmented by
Beam's RunInference, on one machine (DirectRunner) or many (Dataflow).

    ReadFromText(photo list) -> Reshuffle -> DecodeFn --photos--> RunInference(PhotoModelHandler)
        -> WriteFn --metrics--> metrics.csv / metrics.json (with ground truth)
    DecodeFn, RunInference, WriteFn --errors--> errors.jsonl (dead letters)

Per photograph the outputs are vessel-segment's, with the same names and pixels: the
steps are the functions of inference/segment.py (plan_photo, decode_photo,
check_photo_size, finish_photo, write_run_metrics), and the model is the one-graph
TiledPredictor of inference/predictor.py, loaded once per worker process by
`PhotoModelHandler.load_model` (predictor.load_predictor: the .keras file with
safe_mode). A photograph whose outputs exist is skipped (without ground truth) unless
`overwrite`; every file is written atomically, so after a kill -9 a
rerun finds only complete files under final names and redoes the rest. A photograph
that cannot be read, decoded, is too large or fails in the model is one line of
errors.jsonl {"path", "stage", "reason"}; the others are written.

Parallelism comes from the runner: each worker decodes, predicts and writes its own
photographs, so with 2 workers one decodes or encodes while the other runs the model.
One photograph per model call (tiles of one photograph share the batches; tiles of
several photographs do not: at 12 tiles of 256 px per STARE photo and batch 8 the
only padding is the last chunk's, and mixing photos would hold several decoded
photographs per worker).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import uuid
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from tiled_vessel_seg import cli_app, datasets, imaging, model_info, models, storage
from tiled_vessel_seg.inference import mask_hints, segment
from tiled_vessel_seg.inference.segment_request import SegmentRequest, find_photos
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # TensorFlow and the preprocessing job: only where they are used
    from tiled_vessel_seg.beam_jobs import pipeline as beam_jobs_pipeline
    from tiled_vessel_seg.inference import predictor as predictor_lib

ERRORS_FILE = "errors.jsonl"
INPUTS_PREFIX = ".vessel-segment-beam-inputs-"  # the run's photo list, removed after it
NAMESPACE = "vessel_segment_beam"
ERRORS_TAG, PHOTOS_TAG, METRICS_TAG = "errors", "photos", "metrics"


@dataclasses.dataclass(frozen=True)
class PhotoItem:
    """One photograph to segment, with its ground truth (truth_path, fov_path) if any."""
    path: str
    truth_path: Optional[str] = None
    fov_path: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """What to write and the model. model: a --model value (a shipped name, resolved on
    each worker against its installed package, or a model directory every worker can
    read, e.g. gs://); predictor: keyword arguments of predictor.load_predictor;
    threshold: the one the predictor will use (recorded in metrics.json)."""
    output_dir: str
    model: str
    predictor: dict
    threshold: float
    save_probabilities: bool = False
    overlay: bool = False
    error_map: bool = False
    overwrite: bool = False
    with_truths: bool = False
    max_pixels: int = imaging.MAX_PIXELS
    model_record: Optional[dict] = None
    used_in_training: Optional[dict] = None   # {image id: "train" | "valid"}, as vessel-segment


@dataclasses.dataclass
class Decoded:
    """A decoded photograph on its way to the model: its PhotoJob and uint8 [H, W, 3]."""
    job: segment.PhotoJob
    image: Any


@dataclasses.dataclass
class Failed:
    """What the model step returns for a photograph it could not segment."""
    reason: str


def error_line(path: str, stage: str, reason: str) -> str:
    """One errors.jsonl line: {"path", "reason", "stage"}."""
    return json.dumps({"path": path, "stage": stage, "reason": reason}, sort_keys=True)


class _Entry:
    """The ground truth of one photograph, as plan_photo reads it from `truths`."""

    def __init__(self, mask_path, fov_path):
        self.mask_path, self.fov_path = mask_path, fov_path


class DecodeFn(beam.DoFn):
    """PhotoItem -> Decoded (photos), or nothing when its outputs exist, or a dead letter."""

    def __init__(self, options: JobOptions):
        self.options = options
        self.skipped = beam.metrics.Metrics.counter(NAMESPACE, "skipped")
        self.failed = beam.metrics.Metrics.counter(NAMESPACE, "failed")

    def process(self, item: PhotoItem):
        o = self.options
        stem = imaging.image_stem(item.path)
        truths = ({stem: _Entry(item.truth_path, item.fov_path)}
                  if item.truth_path is not None else {} if o.with_truths else None)
        try:
            job = segment.plan_photo(item.path, o.output_dir, truths=truths,
                                     overwrite=o.overwrite,
                                     save_probabilities=o.save_probabilities,
                                     overlay=o.overlay, error_map=o.error_map)
            if job is None:
                self.skipped.inc()
                return
            image = segment.decode_photo(item.path, o.max_pixels)
        except Exception as e:  # pylint: disable=broad-except  # a dead letter
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS_TAG, error_line(item.path, "decode", segment.failure_reason(item.path, e)))
            return
        yield Decoded(job, image)


class PhotoModelHandler(ModelHandler):
    """RunInference's handler: Decoded -> PredictionResult(Decoded, (probabilities
    float32 [H, W], mask uint8 [H, W] 0/255) or Failed).

    load_model builds the TiledPredictor in the worker that calls it (once per worker
    process: RunInference shares it between the threads of a process), from the model
    directory `models.resolve_model(options.model)` names there.
    """

    def __init__(self, options: JobOptions):
        # One photograph per call: its tiles are batched inside the graph.
        super().__init__(min_batch_size=1, max_batch_size=1)
        self.options = options

    def load_model(self):
        return predictor_lib.load_predictor(models.resolve_model(self.options.model),
                                            **self.options.predictor)

    def run_inference(self, batch: Sequence[Decoded], model,
                      inference_args: Optional[dict] = None) -> Iterable[PredictionResult]:
        for decoded in batch:
            try:
                segment.check_photo_size(decoded.job.path, decoded.image, model,
                                         self.options.max_pixels)
                probabilities, mask = model(decoded.image, self.options.threshold)
                result = (probabilities.numpy(), mask.numpy())
            except Exception as e:  # pylint: disable=broad-except  # a dead letter
                result = Failed(segment.failure_reason(decoded.job.path, e))
            yield PredictionResult(decoded, result)

    def get_num_bytes(self, batch: Sequence[Decoded]) -> int:
        return sum(int(d.image.nbytes) for d in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE


class WriteFn(beam.DoFn):
    """PredictionResult -> the photograph's files; its metrics row (metrics) when it has
    ground truth; a dead letter when the model failed on it or its ground truth is bad.
    An output that cannot be written (read-only, full) fails the job, as in vessel-segment."""

    def __init__(self, options: JobOptions):
        self.options = options
        self.written = beam.metrics.Metrics.counter(NAMESPACE, "written")
        self.skipped = beam.metrics.Metrics.counter(NAMESPACE, "skipped")
        self.failed = beam.metrics.Metrics.counter(NAMESPACE, "failed")

    def process(self, result: PredictionResult):
        decoded, inference = result.example, result.inference
        job = decoded.job
        if isinstance(inference, Failed):
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(ERRORS_TAG,
                                           error_line(job.path, "model", inference.reason))
            return
        probabilities, mask = inference
        try:
            written, row = segment.finish_photo(job, decoded.image, probabilities, mask,
                                                self.options.threshold)
        except segment.OutputError:
            raise
        except Exception as e:  # pylint: disable=broad-except  # a dead letter
            self.failed.inc()
            yield beam.pvalue.TaggedOutput(
                ERRORS_TAG, error_line(job.path, "write", segment.failure_reason(job.path, e)))
            return
        (self.written if written else self.skipped).inc()
        if row is not None:
            yield beam.pvalue.TaggedOutput(METRICS_TAG, row)


def write_errors(lines: list[str], output_dir: str) -> None:
    storage.write_text_atomic(storage.join(output_dir, ERRORS_FILE),
                              "".join(line + "\n" for line in sorted(lines)))


def write_metrics(rows: list[dict], options: JobOptions) -> None:
    """metrics.csv / metrics.json of the run, rows sorted by image; the photographs the
    model was trained or validated on are marked as vessel-segment marks them."""
    if not rows:
        return
    rows = sorted(rows, key=lambda r: r["image"])
    for row in rows if options.used_in_training else []:
        split = mask_hints.used_split(row["image"], options.used_in_training)
        if split:
            row["used_in_training"] = split
    segment.write_run_metrics(options.output_dir, rows, options.threshold,
                              options.model_record)


def item_line(item: PhotoItem) -> str:
    return json.dumps(dataclasses.asdict(item), sort_keys=True)


def parse_item(line: str) -> PhotoItem:
    return PhotoItem(**json.loads(line))


def build_pipeline(pipeline: beam.Pipeline, items_file: str,
                   problems: Sequence[str], options: JobOptions) -> None:
    """Adds the job to `pipeline`. items_file: one PhotoItem per line (item_line), read
    by the workers (a list of 100,000 photos inside the job graph would pass Dataflow's
    10 MB graph limit). problems: errors.jsonl lines found before the job (inputs that
    matched nothing, bad manifest rows, duplicate output names)."""
    decoded = (pipeline
               | "Photos" >> beam.io.ReadFromText(items_file)
               | "Parse" >> beam.Map(parse_item)
               | "Spread" >> beam.Reshuffle()
               | "Decode" >> beam.ParDo(DecodeFn(options)).with_outputs(ERRORS_TAG,
                                                                         main=PHOTOS_TAG))
    written = (decoded[PHOTOS_TAG]
               | "Segment" >> RunInference(PhotoModelHandler(options))
               | "Write" >> beam.ParDo(WriteFn(options)).with_outputs(ERRORS_TAG, METRICS_TAG,
                                                                       main="done"))
    found = pipeline | "Problems" >> beam.Create(list(problems))
    _ = ((found, decoded[ERRORS_TAG], written[ERRORS_TAG])
         | "AllErrors" >> beam.Flatten()
         | "ErrorList" >> beam.combiners.ToList()
         | "WriteErrors" >> beam.Map(write_errors, options.output_dir))
    if options.with_truths:
        _ = (written[METRICS_TAG]
             | "MetricList" >> beam.combiners.ToList()
             | "WriteMetrics" >> beam.Map(write_metrics, options))


@dataclasses.dataclass
class JobSummary:
    written: int
    skipped: int
    errors: list          # errors.jsonl entries (dicts)
    seconds: float


def unique_items(items: Sequence[PhotoItem]) -> tuple[list[PhotoItem], list[str]]:
    """The items with distinct output names, and an error line for each later duplicate."""
    seen, kept, problems = {}, [], []
    for item in items:
        stem = imaging.image_stem(item.path)
        if stem in seen:
            problems.append(error_line(item.path, "inputs",
                                       f"same output name {stem}.png as {seen[stem]}"))
            continue
        seen[stem] = item.path
        kept.append(item)
    return kept, problems


def run_job(items: Sequence[PhotoItem], options: JobOptions, pipeline_options=None,
            problems: Sequence[str] = ()) -> JobSummary:
    """Runs the job to completion. pipeline_options: Beam PipelineOptions (runner ...);
    None = the DirectRunner. The DirectRunner runs without its Prism download
    (beam_jobs.pipeline.local_runner)."""
    start = time.time()
    items, duplicates = unique_items(items)
    storage.makedirs(options.output_dir)
    items_file = storage.join(options.output_dir, f"{INPUTS_PREFIX}{uuid.uuid4().hex[:12]}.jsonl")
    storage.write_text_atomic(items_file, "".join(item_line(i) + "\n" for i in items))
    try:
        beam_options = pipeline_options or PipelineOptions([])
        pipeline = beam.Pipeline(runner=beam_jobs_pipeline.local_runner(beam_options), options=beam_options)
        build_pipeline(pipeline, items_file, [*problems, *duplicates], options)
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        storage.remove(items_file, missing_ok=True)
    counts = {}
    for name in ("written", "skipped"):
        query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE)
                                       .with_name(name))
        counts[name] = sum(c.committed or 0 for c in query["counters"])
    text = storage.read_text(storage.join(options.output_dir, ERRORS_FILE))
    errors = [json.loads(line) for line in text.splitlines() if line.strip()]
    return JobSummary(counts["written"], counts["skipped"], errors, time.time() - start)


def format_summary(summary: JobSummary, output_dir: str) -> str:
    lines = [f"{summary.written} written, {summary.skipped} skipped (exist; --overwrite to "
             f"redo), {len(summary.errors)} rejected, in {summary.seconds:.1f} s -> "
             f"{output_dir}"]
    lines += [f"  rejected [{e['stage']}] {e['path']}: {e['reason']}" for e in summary.errors]
    if summary.errors:
        lines.append(f"  (one line each in {storage.join(output_dir, ERRORS_FILE)})")
    return "\n".join(lines)


def photo_items(request: SegmentRequest) -> tuple[list[PhotoItem], list[str]]:
    """The request's photographs as PhotoItems, paired with their ground truth as
    vessel-segment pairs them, and an errors.jsonl line for each input rejected before
    the job (a pattern that matched nothing, a bad manifest row, a photo without truth).

    Raises cli_app.ToolError for a manifest or folder that cannot be used at all.
    """
    try:
        found = find_photos(request)
    except datasets.InputDirError as e:
        raise cli_app.ToolError(str(e)) from None
    lines = [error_line(p, "inputs", "no image matches") for p in found.unmatched]
    lines += [error_line(p.path, "inputs", p.reason) for p in found.problems]
    items = []
    for path in found.files:
        entry = (found.truths.get(imaging.image_stem(path)) if found.truths is not None
                 else None)
        items.append(PhotoItem(path, getattr(entry, "mask_path", None),
                               getattr(entry, "fov_path", None)))
    return items, lines


def job_options(request: SegmentRequest, info: model_info.ModelInfo) -> JobOptions:
    """The job's options for `request`, with what the model's model_info.json `info`
    decides when the request leaves it open (threshold, overlap)."""
    options = request.predictor
    threshold = info.threshold if options["threshold"] is None else options["threshold"]
    overlap = next(v for v in (options["min_overlap"], options["overlap"], info.overlap)
                   if v is not None)
    record = {"model_dir": request.model_dir, "tile_size": info.tile_size, "overlap": overlap,
              "blend": options["blend"], "tta": options["tta"],
              "input_scale": options["input_scale"]}
    return JobOptions(
        # a shipped name stays a name: each worker resolves it in its own installation
        output_dir=request.output_dir, model=request.model or models.DEFAULT_MODEL,
        predictor=options, threshold=float(threshold),
        save_probabilities=request.save_probabilities, overlay=request.overlay,
        error_map=request.error_map, overwrite=request.overwrite,
        with_truths=request.with_truths, max_pixels=request.max_pixels,
        model_record=record, used_in_training=mask_hints.training_splits(info.data_ids))


def runner_line(count: int, pipeline_options: PipelineOptions) -> str:
    runner = pipeline_options.view_as(StandardOptions).runner
    line = f"vessel-segment-beam: {count} photograph(s), runner {runner}"
    if runner in ("DirectRunner", "direct"):
        direct = pipeline_options.view_as(DirectOptions)
        line += f" ({direct.direct_num_workers} worker(s), {direct.direct_running_mode})"
    return line


def segment_archive(request: SegmentRequest, pipeline_options: PipelineOptions) -> int:
    """Runs `request` as a Beam job with `pipeline_options` (runner, workers ...);
    returns the exit status: 0, or 1 when a photograph was rejected (errors.jsonl).

    Raises cli_app.ToolError for an unusable model, manifest or ground-truth folder, an
    output path that is an input, or an output that cannot be written (outputs already
    written are complete and kept).
    """
    try:
        info = model_info.read_model_info(request.model_dir)
    except (model_info.ModelDirError, FileNotFoundError, ValueError) as e:
        raise cli_app.ToolError(str(e)) from None
    items, problems = photo_items(request)
    ground_truth = {f"{k}{kind}": path for k, item in enumerate(items)
                    for kind, path in (("m", item.truth_path), ("f", item.fov_path)) if path}
    try:  # inputs are never written: refused before the job starts, as vessel-segment does
        segment.check_outputs_are_not_inputs(
            [i.path for i in items], request.output_dir, ground_truth,
            save_probabilities=request.save_probabilities, overlay=request.overlay,
            error_map=request.error_map)
    except segment.InputOverwriteError as e:
        raise cli_app.ToolError(str(e)) from None
    if not items:
        print("nothing to segment", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    job = job_options(request, info)
    print(runner_line(len(items), pipeline_options), file=sys.stderr)
    try:
        summary = run_job(items, job, pipeline_options, problems)
    except Exception as e:  # noqa: BLE001 - a worker's OutputError arrives wrapped by Beam
        line = next((l for l in str(e).splitlines() if "OutputError: " in l
                     or "StorageError: " in l), None) if not isinstance(
                         e, storage.StorageError) else f"StorageError: {e}"
        if line is None:
            raise
        raise cli_app.ToolError(f"{line.split('Error: ', 1)[1]} (outputs already written "
                                "are complete and kept)") from None
    print(format_summary(summary, request.output_dir))
    return 1 if summary.errors else 0

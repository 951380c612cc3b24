"""The Beam runner flags, defined once for the Beam tools (vessel-preprocess,
vessel-segment-beam), and the PipelineOptions they make.

  --runner NAME                 DirectRunner (default) or DataflowRunner
  --direct_num_workers N        DirectRunner worker processes
  --direct_running_mode MODE    in_memory | multi_threading | multi_processing

Flags a tool does not know go to Beam as they are (`pipeline_options(beam_args)`).
"""
from __future__ import annotations

from typing import Sequence

from absl import flags

from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # Apache Beam: not for --help
    from apache_beam.options import pipeline_options as beam_options

FLAGS = flags.FLAGS
DIRECT_RUNNERS = ("DirectRunner", "direct")


def define_flags(direct_num_workers: int = 1, workers_note: str = "") -> None:
    """Defines the runner flags; `workers_note` adds a tool's own sentence to
    --direct_num_workers' help."""
    flags.DEFINE_string("runner", "DirectRunner", "Beam runner, e.g. DirectRunner or "
                        "DataflowRunner.")
    flags.DEFINE_integer("direct_num_workers", direct_num_workers,
                         " ".join(("DirectRunner worker processes.", workers_note)).strip(),
                         lower_bound=1)
    flags.DEFINE_enum("direct_running_mode", "multi_processing",
                      ["in_memory", "multi_threading", "multi_processing"], "DirectRunner mode.")


def pipeline_options(beam_args: Sequence[str]) -> "beam_options.PipelineOptions":
    """Beam PipelineOptions of --runner, the DirectRunner flags and `beam_args` (the flags
    the tool does not know)."""
    options = [f"--runner={FLAGS.runner}", *beam_args]
    if FLAGS.runner in DIRECT_RUNNERS:
        options += [f"--direct_num_workers={FLAGS.direct_num_workers}",
                    f"--direct_running_mode={FLAGS.direct_running_mode}"]
    return beam_options.PipelineOptions(options)

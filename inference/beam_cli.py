"""`vessel-segment-beam`: vessel-segment for whole archives, as a Beam RunInference job.

  vessel-segment-beam --input photos/ --output_dir O          (the shipped fundus_small)
  vessel-segment-beam --input 'gs://b/photos/*.jpg' --model gs://b/model --output_dir gs://b/out
  vessel-segment-beam --manifest pairs.csv --error_map --output_dir O --direct_num_workers 2
  vessel-segment-beam --input photos/ --output_dir gs://b/out --model gs://b/model \\
      --runner DataflowRunner --project P --region R --temp_location gs://b/tmp \\
      --setup_file ./setup.py        (documented in docs/beam_inference.md, not run here)

Writes what vessel-segment writes, with the same names and pixels: O/<stem>.png per
photograph, optionally its probabilities, overlay and error map, and with ground truth
(--masks_dir or --manifest) O/metrics.csv and O/metrics.json for the whole run; plus
O/errors.jsonl, one line per rejected photograph (file, stage, reason). Photographs
whose outputs exist are skipped (--overwrite redoes them). Flags this tool does not
know go to Beam's PipelineOptions.
Exit status: 0 ok; 1 some photograph was rejected (see O/errors.jsonl); 2 bad flags,
model or output folder.
"""
from __future__ import annotations

import logging
import sys
from typing import Sequence

from absl import flags
from absl import logging as absl_logging

from tiled_vessel_seg import cli_app, runner_flags
from tiled_vessel_seg.inference import segment_flags
from tiled_vessel_seg.lazy_imports import lazy_imports

with lazy_imports():  # Apache Beam and TensorFlow: not for --help
    from tiled_vessel_seg.inference import beam_segment

FLAGS = flags.FLAGS
PROGRAM = "vessel-segment-beam"


def define_flags() -> None:
    segment_flags.define_flags(paths_after_flags=False)
    runner_flags.define_flags(direct_num_workers=1,
                              workers_note="Each loads the model once.")


def main(argv: list[str]) -> int:
    request = segment_flags.request_from_flags(PROGRAM)
    if not FLAGS.verbose:  # the workers' INFO lines, relayed by the runner, drown the output
        logging.getLogger().setLevel(logging.WARNING)
        absl_logging.set_verbosity(absl_logging.WARNING)
    return beam_segment.segment_archive(request, runner_flags.pipeline_options(argv[1:]))


def run_in_process(argv: Sequence[str] | None = None) -> int:
    """Runs the tool in this process (tests, notebooks); argv without the program name."""
    args = [PROGRAM, *(sys.argv[1:] if argv is None else argv)]
    return cli_app.invoke(__name__, __doc__, define_flags, main, args,
                          pass_unknown_flags=True)


def run() -> None:
    """Console entry point `vessel-segment-beam`."""
    cli_app.run(__name__, __doc__, define_flags, main, pass_unknown_flags=True)


if __name__ == "__main__":
    run()

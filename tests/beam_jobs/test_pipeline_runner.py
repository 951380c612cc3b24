"""The local runner: Beam's DirectRunner without its Prism download attempt."""
import logging

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from tiled_vessel_seg.beam_jobs import pipeline as pipeline_lib


def test_direct_runner_skips_prism_and_still_runs(caplog):
    options = PipelineOptions(["--runner=DirectRunner", "--direct_running_mode=in_memory"])
    runner = pipeline_lib.local_runner(options)
    assert runner is not None
    with caplog.at_level(logging.INFO, logger="apache_beam"):
        with beam.Pipeline(runner=runner, options=options) as p:
            squares = p | beam.Create([1, 2, 3]) | beam.Map(lambda x: x * x)
            assert_that(squares, equal_to([1, 4, 9]))
    assert "Prism" not in caplog.text
    # the default options (no --runner) are the DirectRunner too
    assert pipeline_lib.local_runner(PipelineOptions([])) is not None


def test_other_runners_are_left_to_beam():
    assert pipeline_lib.local_runner(PipelineOptions(["--runner=DataflowRunner"])) is None

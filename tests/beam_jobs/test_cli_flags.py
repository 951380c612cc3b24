"""The tools' command lines: config + --set + flags precedence, Beam flags passing through
vessel-preprocess to PipelineOptions, argparse-era spellings still accepted."""
from __future__ import annotations

import pytest

beam = pytest.importorskip("apache_beam")


@pytest.fixture
def captured_job(monkeypatch):
    """Replaces the Beam job by a recorder of what vessel-preprocess would run."""
    from tiled_vessel_seg.beam_jobs import pipeline
    seen = {}

    def fake_run_job(config, pairs, problems, output_dir, options, parameters, overwrite):
        seen.update(config=config, options=options.get_all_options(), output_dir=output_dir,
                    parameters=parameters, pairs=len(pairs))
        raise ValueError("stopped by the test")

    monkeypatch.setattr(pipeline, "run_job", fake_run_job)
    return seen


def test_unknown_flags_go_to_beam_pipeline_options(synthetic_stare_dir, tmp_path, captured_job,
                                                   capsys):
    from tiled_vessel_seg.beam_jobs import cli
    config = tmp_path / "c.config"
    config.write_text("[preprocess]\nscale = 3\nshards = 5\nseed = 7\n")
    code = cli.main(["--stare_dir", str(synthetic_stare_dir), "--output_dir", str(tmp_path / "o"),
                     "--project", "my-project", "--region=europe-west4", "--temp_location",
                     "gs://bucket/tmp", "--save_main_session", "--config", str(config),
                     "--set", "preprocess.shards=2", "--set", "preprocess.scale=2",
                     "--set", "preprocess.whole_image=False",
                     "--set", "preprocess.augmentations=('hflip',)", "--augment", "none"])
    assert code == 2 and "stopped by the test" in capsys.readouterr().err
    options = captured_job["options"]
    assert options["project"] == "my-project" and options["region"] == "europe-west4"
    assert options["temp_location"] == "gs://bucket/tmp" and options["save_main_session"]
    assert options["runner"] == "DirectRunner"
    config = captured_job["config"]
    # --augment > --set > --config > built-in default
    assert (config.scale, config.shards, config.seed, config.tile_size) == (2, 2, 7, 512)
    assert config.augmentations == ()
    assert config.whole_image is False and captured_job["pairs"] == 4


def test_preprocess_flag_errors_are_one_line(tmp_path, capsys):
    from tiled_vessel_seg.beam_jobs import cli
    assert cli.main(["--stare_dir", str(tmp_path), "--output_dir", "o", "--set", "nope.x=1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: override 'nope.x=1': unknown section [nope]; known: ")

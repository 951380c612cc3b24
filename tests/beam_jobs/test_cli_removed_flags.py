"""vessel-preprocess's job settings are config keys (issue 20 item 4): the flags that copied
[preprocess] keys are gone, and one given anyway is refused with its --set spelling
instead of reaching Beam's PipelineOptions as an unknown option (which ignored it)."""
import re

import pytest

from tiled_vessel_seg.beam_jobs import cli


@pytest.mark.parametrize("flag, replacement", [
    (["--tile_size", "64"], "--set preprocess.tile_size=64"),
    (["--scale=1"], "--set preprocess.scale=1"),
    (["--shards", "2"], "--set preprocess.shards=2"),
    (["--whole_image"], "--set preprocess.whole_image=True"),
    (["--nofov_masks"], "--set preprocess.fov_masks=False"),
    (["--no-whole_image"], "--set preprocess.whole_image=False"),
])
def test_a_removed_flag_is_refused_with_its_set_spelling(tmp_path, capsys, flag, replacement):
    out = tmp_path / "out"
    code = cli.main(["--stare_dir", str(tmp_path), "--output_dir", str(out), *flag])
    err = capsys.readouterr().err
    assert code == 2
    assert replacement in err, err
    assert not out.exists()


def test_help_lists_the_kept_flags_and_none_of_the_removed(capsys):
    assert cli.main(["--help"]) == 0
    listed = set(re.findall(r"^  --(?:\[no\])?(\w+)", capsys.readouterr().out, re.M))
    assert {"output_dir", "stare_dir", "source", "augment", "valid_ids", "test_ids",
            "runner", "direct_num_workers", "overwrite", "allow_errors", "config",
            "set"} <= listed
    assert not listed & set(cli.REMOVED_FLAGS)
    assert len(cli.REMOVED_FLAGS) == 13

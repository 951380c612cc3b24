"""A run owns its output folder (issue 18.2): a second vessel-preprocess into the same folder
exits 2 in one line and writes nothing; a killed run's lock and leftovers do not block or
mix into the next run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tiled_vessel_seg import run_lock, storage
from tiled_vessel_seg.beam_jobs import cli, pipeline
from tiled_vessel_seg.tfrecords import dataset_info as info_lib

RUN = ["--set", "preprocess.scale=1", "--set", "preprocess.tile_size=64", "--augment", "none",
       "--set", "preprocess.shards=2",
       "--direct_running_mode", "in_memory", "--direct_num_workers", "1"]

HOLDER = """
import sys, time
from tiled_vessel_seg import run_lock
with run_lock.owned(sys.argv[1], "holder"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_second_owner_is_refused_naming_the_first(tmp_path):
    folder = str(tmp_path / "out")
    with run_lock.owned(folder, "first-tool"):
        lock = json.load(open(run_lock.lock_path(folder)))
        assert lock["pid"] == os.getpid() and lock["tool"] == "first-tool"
        with pytest.raises(run_lock.FolderLockedError) as error:
            with run_lock.owned(folder, "second-tool"):
                pytest.fail("entered a folder another run holds")
        assert f"pid {os.getpid()}" in str(error.value) and "first-tool" in str(error.value)
        assert "\n" not in str(error.value)
    assert not os.path.exists(run_lock.lock_path(folder))  # released and removed
    with run_lock.owned(folder, "third-tool"):
        pass


def _holder(folder):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, folder], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    folder = str(tmp_path / "out")
    process = _holder(folder)
    try:
        with pytest.raises(run_lock.FolderLockedError, match=f"pid {process.pid}"):
            with run_lock.owned(folder, "me"):
                pass
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert os.path.exists(run_lock.lock_path(folder))  # kill -9 left the file behind ...
    with run_lock.owned(folder, "me"):  # ... but no lock: the next run goes on
        assert json.load(open(run_lock.lock_path(folder)))["pid"] == os.getpid()


def test_vessel_preprocess_into_a_folder_another_run_holds_exits_2(synthetic_stare_dir,
                                                                   tmp_path, capsys):
    out = str(tmp_path / "dataset")
    with run_lock.owned(out, "vessel-preprocess"):
        code = cli.main(["--stare_dir", str(synthetic_stare_dir), "--output_dir", out, *RUN])
        assert code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and "another run is writing" in err[0] and out in err[0], err
        assert sorted(os.listdir(out)) == [run_lock.LOCK_FILE]  # nothing written
    assert cli.main(["--stare_dir", str(synthetic_stare_dir), "--output_dir", out, *RUN]) == 0
    assert not os.path.exists(run_lock.lock_path(out))


@pytest.mark.slow  # a whole vessel-preprocess run (the Beam job)
def test_leftovers_of_killed_runs_are_removed_and_not_listed(synthetic_stare_dir, tmp_path):
    out = tmp_path / "dataset"
    (out / "train").mkdir(parents=True)
    # a shard of a run killed before it wrote dataset_info.json (another shard count)
    stale = out / "train" / "train-00000-of-00007.tfrecord.gz"
    stale.write_bytes(b"half a shard")
    (out / f"{pipeline.STAGING_PREFIX}0123456789ab" / "train").mkdir(parents=True)
    unrelated = out / "notes.txt"  # not ours: kept
    unrelated.write_text("mine")
    assert cli.main(["--stare_dir", str(synthetic_stare_dir), "--output_dir", str(out),
                     "--set", "preprocess.shards=0", *RUN]) == 0
    info = info_lib.read_dataset_info(str(out))
    assert not stale.exists()
    assert all("00007" not in shard for s in info.splits.values() for shard in s.shards)
    assert storage.list_shards(str(out), "train") == info.splits["train"].shards
    assert not [n for n in os.listdir(out) if n.startswith(pipeline.STAGING_PREFIX)]
    assert unrelated.read_text() == "mine"

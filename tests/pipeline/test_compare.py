"""vessel-cv-compare: two vessel-cv work dirs paired per held-out image, against sums worked
by hand on small fold folders written here (fold.json and segment metrics, as vessel-cv
writes them)."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from tiled_vessel_seg.pipeline import compare, compare_cli, cv_layout

COLUMNS = ["image", "dice", "fov_dice", "fov_auc"]


def write_fold(workdir, index, test_ids, scores, dataset=None, extra_rows=True):
    """fold_<index>/fold.json and segment/[<dataset>/]metrics.csv with fov_dice = scores
    (dice = fov_dice - 0.1, fov_auc 0.9), plus vessel-cv's mean and std rows."""
    fold = workdir / f"fold_{index}"
    fold.mkdir(parents=True, exist_ok=True)
    (fold / "fold.json").write_text(json.dumps({"index": index, "test_ids": test_ids,
                                                "valid_ids": [], "train_ids": []}))
    segment = fold / "segment" / dataset if dataset else fold / "segment"
    segment.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(COLUMNS)
    for stem, value in scores.items():
        writer.writerow([stem, value - 0.1, value, 0.9])
    if extra_rows:
        writer.writerow(["mean", 0.5, 0.5, 0.5])
        writer.writerow(["std", 0.1, 0.1, 0.1])
    (segment / "metrics.csv").write_text(buf.getvalue())


@pytest.fixture
def two_runs(tmp_path):
    """Baseline and candidate on the same two folds of one dataset."""
    base, cand = tmp_path / "base", tmp_path / "cand"
    write_fold(base, 0, ["a", "b"], {"a": 0.70, "b": 0.80})
    write_fold(base, 1, ["c", "d"], {"c": 0.60, "d": 0.75})
    write_fold(cand, 0, ["a", "b"], {"a": 0.72, "b": 0.79})
    write_fold(cand, 1, ["c", "d"], {"c": 0.66, "d": 0.77})
    return base, cand


def test_paired_summary_matches_a_hand_worked_example(two_runs):
    base, cand = two_runs
    pairing = compare.pair_runs(compare.read_heldout_scores(str(base)),
                                compare.read_heldout_scores(str(cand)))
    (summary,) = compare.paired_summaries(pairing)
    # differences +0.02, -0.01, +0.06, +0.02: mean 0.0225, population std
    # sqrt(((-0.0025)^2 + (-0.0325)^2 + 0.0375^2 + (-0.0025)^2) / 4)
    assert summary.images == 4 and summary.higher == 3 and summary.lower == 1
    assert summary.difference[0] == pytest.approx(0.0225)
    assert summary.difference[1] == pytest.approx(np.sqrt((0.0025**2 * 2 + 0.0325**2
                                                           + 0.0375**2) / 4))
    assert summary.baseline[0] == pytest.approx((0.70 + 0.80 + 0.60 + 0.75) / 4)
    assert summary.candidate[0] == pytest.approx((0.72 + 0.79 + 0.66 + 0.77) / 4)
    assert compare.fold_differences(pairing) == {0: (pytest.approx(0.005), 2),
                                                 1: (pytest.approx(0.04), 2)}


def test_other_metrics_are_read_from_their_column(two_runs):
    base, _ = two_runs
    scores = compare.read_heldout_scores(str(base), "dice")
    assert scores["c"].value == pytest.approx(0.50)
    with pytest.raises(compare.CompareError, match="no column 'fov_iou'"):
        compare.read_heldout_scores(str(base), "fov_iou")


def test_an_unfinished_fold_leaves_its_images_unpaired(tmp_path, two_runs):
    base, cand = two_runs
    partial = tmp_path / "partial"
    write_fold(partial, 0, ["a", "b"], {"a": 0.9, "b": 0.9})
    (partial / "fold_1").mkdir()  # still training: no segment folder yet
    (partial / "fold_1" / "fold.json").write_text(json.dumps({"test_ids": ["c", "d"]}))
    pairing = compare.pair_runs(compare.read_heldout_scores(str(base)),
                                compare.read_heldout_scores(str(partial)))
    assert list(pairing.pairs) == ["a", "b"]
    assert pairing.only_baseline == ("c", "d") and pairing.only_candidate == ()


def test_several_datasets_and_repeated_stems(tmp_path):
    """A two-dataset run segments into segment/<dataset>/; a stem both datasets have is
    the image id '<dataset>-<stem>' (sources.py), and only held-out ids count."""
    runs = []
    for name, shift in (("base", 0.0), ("cand", 0.05)):
        run = tmp_path / name
        write_fold(run, 0, ["im1", "chase-x", "stare-x"],
                   {"im1": 0.7 + shift, "x": 0.6 + shift, "not_held_out": 0.1}, "stare")
        write_fold(run, 0, ["im1", "chase-x", "stare-x"], {"x": 0.8 - shift}, "chase")
        runs.append(compare.read_heldout_scores(str(run)))
    assert sorted(runs[0]) == ["chase-x", "im1", "stare-x"]
    assert runs[0]["chase-x"] == compare.HeldOutScore("chase", 0, pytest.approx(0.8))
    summaries = {s.name: s for s in compare.paired_summaries(compare.pair_runs(*runs))}
    assert sorted(summaries) == ["all", "chase", "stare"]
    assert summaries["stare"].difference[0] == pytest.approx(0.05)
    assert summaries["chase"].difference[0] == pytest.approx(-0.05)
    assert summaries["all"].images == 3 and summaries["all"].higher == 2


def test_the_cli_prints_the_table_and_writes_the_pairs(two_runs, tmp_path, capsys):
    base, cand = two_runs
    out = tmp_path / "pairs.csv"
    assert compare_cli.main([str(base), str(cand), "--output", str(out), "--per_image"]) == 0
    printed = capsys.readouterr().out
    b, c = np.array([0.70, 0.80, 0.60, 0.75]), np.array([0.72, 0.79, 0.66, 0.77])
    d = c - b
    assert (f"| (one dataset) | 4 | {b.mean():.3f} +- {b.std():.3f} | {c.mean():.3f} +- "
            f"{c.std():.3f} | {d.mean():+.3f} +- {d.std():.3f} | 3 | 1 |") in printed
    assert "per fold: 0 +0.005 (2), 1 +0.040 (2)" in printed
    rows = list(csv.DictReader(out.open()))
    assert [(r["image"], r["fold"]) for r in rows] == [("a", "0"), ("b", "0"), ("c", "1"),
                                                      ("d", "1")]
    assert [float(r["difference"]) for r in rows] == pytest.approx([0.02, -0.01, 0.06, 0.02])


def test_different_folds_stop_the_cli_unless_allowed(two_runs, tmp_path, capsys):
    base, _ = two_runs
    other = tmp_path / "other_seed"
    write_fold(other, 0, ["a", "c"], {"a": 0.7, "c": 0.7})
    write_fold(other, 1, ["b", "d"], {"b": 0.7, "d": 0.7})
    assert compare_cli.main([str(base), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 image(s) held out in different folds") and "b c" in err
    assert compare_cli.main([str(base), str(other), "--allow_different_folds"]) == 0


@pytest.mark.parametrize("case", ["missing", "empty", "one_argument"])
def test_unusable_inputs_are_one_line_errors(two_runs, tmp_path, capsys, case):
    base, _ = two_runs
    (tmp_path / "empty").mkdir()
    args = {"missing": [str(base), str(tmp_path / "nope")],
            "empty": [str(base), str(tmp_path / "empty")],
            "one_argument": [str(base)]}[case]
    assert compare_cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    if case != "one_argument":
        assert args[1] in err.splitlines()[0]


def test_pairs_csv_quotes_an_image_id_with_a_comma(tmp_path):
    base, cand = tmp_path / "base", tmp_path / "cand"
    write_fold(base, 0, ["eye 1, left"], {"eye 1, left": 0.70})
    write_fold(cand, 0, ["eye 1, left"], {"eye 1, left": 0.75})
    pairing = compare.pair_runs(compare.read_heldout_scores(str(base)),
                                compare.read_heldout_scores(str(cand)))
    (row,) = list(csv.DictReader(io.StringIO(compare.pairs_csv(pairing))))
    assert row["image"] == "eye 1, left" and row["fold"] == "0"
    assert float(row["difference"]) == pytest.approx(0.05)


def test_cv_layout_names_fold_folders_both_ways():
    assert cv_layout.fold_index(cv_layout.fold_dir("gs://b/run", 12)) == 12
    assert cv_layout.fold_index("/runs/fold_3/") == 3
    assert cv_layout.fold_index("/runs/final") is None

"""Several datasets in one run (issue 17 section 2): --source NAME:DIR, dataset names and
subjects on every pair, ids unique across datasets, the default split and the CV folds
grouped by subject (both eyes of a CHASE_DB1 child together)."""
import itertools
import json
import os

import numpy as np
import pytest

from tiled_vessel_seg import datasets, sources
from tiled_vessel_seg.beam_jobs import split
from tiled_vessel_seg.pipeline import cv
from tiled_vessel_seg.synthetic import chase_layout, stare_layout

CHASE_IDS = [chase_layout.chase_id(c, e) for c in range(1, 11) for e in "LR"]
STARE_IDS = [f"im{n:04d}" for n in (1, 2, 3, 4, 5, 44, 77)]


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("trees")
    stare = root / "stare"
    stare_layout.write_synthetic_stare(str(stare), 3, width=48, height=40, seed=2)
    chase = root / "chase_db1"
    chase_layout.write_synthetic_chase(str(chase), 3, width=48, height=40, seed=3)
    (chase / "README.md").write_text("CHASE_DB1")  # shipped beside the photos
    return stare, chase


def test_parse_source():
    source = sources.parse_source("chase_db1:gs://bucket/CHASE DB1")
    assert source == datasets.Source(root="gs://bucket/CHASE DB1", layout="chase_db1")
    assert sources.source_spec(source) == "chase_db1:gs://bucket/CHASE DB1"
    for bad, words in (("stare", "NAME:DIR"), ("stare:", "NAME:DIR"),
                       ("drivex:/d", "unknown dataset 'drivex'")):
        with pytest.raises(ValueError, match=words):
            sources.parse_source(bad)


def test_pairs_of_two_sources_carry_dataset_and_subject(trees):
    stare, chase = trees
    listed = [sources.parse_source(f"stare:{stare}"), sources.parse_source(f"chase_db1:{chase}")]
    ignored: list = []
    pairs, problems = sources.find_pairs(listed, ignored)
    assert problems == [] and [os.path.basename(i.path) for i in ignored] == ["README.md"]
    assert [p.image_id for p in pairs] == [
        "Image_01L", "Image_01R", "Image_02L", "Image_02R", "Image_03L", "Image_03R",
        "im0001", "im0002", "im0003"]
    by_id = {p.image_id: p for p in pairs}
    assert by_id["Image_02R"].dataset == "chase_db1" and by_id["Image_02R"].subject == "02"
    assert by_id["im0002"].dataset == "stare" and by_id["im0002"].subject == "im0002"
    assert sources.subject_key(by_id["Image_02L"]) == sources.subject_key(by_id["Image_02R"])
    assert by_id["Image_02L"].second_mask_path.endswith("Image_02L_2ndHO.png")
    assert sources.parameters(listed) == {"sources": [f"stare:{stare}", f"chase_db1:{chase}"]}
    assert sources.from_parameters(sources.parameters(listed)) == listed


def test_manifest_dataset_column_and_ids_shared_by_two_datasets(trees, tmp_path):
    stare, _ = trees
    mine = tmp_path / "mine"
    stare_layout.write_synthetic_stare(str(mine), 2, width=48, height=40, seed=9)
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("image,mask,dataset,subject\n"
                        f"{mine}/stare-images/im0001.ppm.gz,{mine}/labels-ah/im0001.ah.ppm.gz,mine,p1\n"
                        f"{mine}/stare-images/im0002.ppm.gz,{mine}/labels-ah/im0002.ah.ppm.gz,,\n")
    pairs, problems = sources.find_pairs([datasets.Source(root=str(stare), layout="stare"),
                                          datasets.Source(manifest=str(manifest))])
    assert problems == []
    ids = {p.image_id: p for p in pairs}
    # im0001 and im0002 are in two datasets each: prefixed; im0003 only in stare: kept.
    assert sorted(ids) == sorted(["manifest-im0002", "mine-im0001", "stare-im0001",
                                  "stare-im0002", "im0003"])
    assert ids["mine-im0001"].subject == "p1" and ids["mine-im0001"].dataset == "mine"
    assert ids["manifest-im0002"].dataset == sources.MANIFEST_DATASET
    assert ids["stare-im0001"].image_path.startswith(str(stare))


def test_two_sources_of_one_dataset_report_a_duplicate_id(trees):
    stare, _ = trees
    pairs, problems = sources.find_pairs([datasets.Source(root=str(stare), layout="stare")] * 2)
    assert [p.image_id for p in pairs] == ["im0001", "im0002", "im0003"]
    assert len(problems) == 3 and all("duplicate image id" in p.reason for p in problems)


def test_manifest_subject_from_the_dataset_rule(tmp_path):
    chase = tmp_path / "c"
    chase_layout.write_synthetic_chase(str(chase), 1, width=40, height=36)
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,mask,dataset\n"
                        f"{chase}/Image_01R.jpg,{chase}/Image_01R_1stHO.png,chase_db1\n"
                        f"{chase}/Image_01L.jpg,{chase}/Image_01L_1stHO.png,bad name!\n")
    pairs, problems = datasets.read_manifest(str(manifest))
    assert [(p.image_id, p.dataset, p.subject) for p in pairs] == [
        ("Image_01R", "chase_db1", "01")]
    assert len(problems) == 1 and "row 3: dataset 'bad name!'" in problems[0].reason


def _chase_pairs():
    return [datasets.ImagePair(i, f"{i}.jpg", f"{i}_1stHO.png", dataset="chase_db1",
                               subject=datasets.subject_of("chase_db1", i)) for i in CHASE_IDS]


def test_default_split_keeps_both_eyes_of_a_child_together():
    pairs = _chase_pairs()
    subjects = {p.image_id: sources.subject_key(p) for p in pairs}
    ungrouped = split.assign_splits(CHASE_IDS, seed=0)
    # The bug this fixes: the image-level split put one child's eyes in train and test.
    assert ungrouped["Image_01L"] == "train" and ungrouped["Image_01R"] == "test"
    for seed in range(5):
        grouped = split.assign_splits(CHASE_IDS, seed=seed, subjects=subjects)
        for child in range(1, 11):
            left, right = (chase_layout.chase_id(child, e) for e in "LR")
            assert grouped[left] == grouped[right], (seed, child)
        counts = {s: sum(v == s for v in grouped.values()) for s in split.SPLIT_NAMES}
        # 10 children at 0.7/0.15/0.15: 7, 1.5, 1.5 -> 7 / 2 / 1 (ties go to valid first)
        assert counts == {"train": 14, "valid": 4, "test": 2}
    # One image per subject: exactly the image-level split.
    assert split.assign_splits(STARE_IDS, seed=4, subjects={i: "stare/" + i for i in STARE_IDS}) \
        == split.assign_splits(STARE_IDS, seed=4)


def test_explicit_split_ids_must_not_part_a_subject():
    subjects = {p.image_id: sources.subject_key(p) for p in _chase_pairs()}
    with pytest.raises(ValueError, match=r"Image_03L \(valid\) and Image_03R \(train\) are "
                                         r"photos of one subject, chase_db1/03"):
        split.assign_splits(CHASE_IDS, valid_ids=["Image_03L"], subjects=subjects)
    with pytest.raises(ValueError, match=r"Image_05L \(train\) and Image_05R \(test\)"):
        split.assign_splits(CHASE_IDS, valid_ids=["Image_03L", "Image_03R"],
                            test_ids=["Image_05R"], subjects=subjects)
    both = split.assign_splits(CHASE_IDS, valid_ids=["Image_03L", "Image_03R"],
                               test_ids=["Image_05L", "Image_05R"], subjects=subjects)
    assert [i for i in CHASE_IDS if both[i] != "train"] == [
        "Image_03L", "Image_03R", "Image_05L", "Image_05R"]
    assert both["Image_03R"] == "valid" and both["Image_05L"] == "test"
    # Without subjects (one photo each) any explicit split stands, as before.
    assert split.assign_splits(CHASE_IDS, valid_ids=["Image_03L"])["Image_03R"] == "train"


def test_the_final_model_validates_on_whole_subjects():
    stare = [datasets.ImagePair(i, i, i, dataset="stare", subject=i) for i in STARE_IDS]
    pairs = _chase_pairs()[::-1] + stare
    assert cv.final_valid_ids(pairs) == ("Image_01L", "Image_01R", "im0001")
    assert cv.final_valid_ids(pairs, ["im0005", "Image_03L", "Image_03R", "absent"]) == (
        "Image_03L", "Image_03R", "im0005")


def _old_assign_folds(ids, folds, seed):
    """vessel-cv's assignment before subjects (commit 112b70f), for comparison."""
    ids = sorted(ids)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    chunks = [tuple(c) for c in np.array_split(np.array(order, object), folds)]
    return [(tuple(chunk), chunks[(f + 1) % folds][0]) for f, chunk in enumerate(chunks)]


@pytest.mark.parametrize("folds, seed", [(5, 0), (3, 1), (7, 2)])
def test_one_dataset_of_single_photo_subjects_keeps_the_old_folds(folds, seed):
    new = cv.assign_folds(STARE_IDS, folds, seed,
                          subjects={i: "stare/" + i for i in STARE_IDS},
                          datasets={i: "stare" for i in STARE_IDS})
    assert [(f.test_ids, f.valid_id) for f in new] == _old_assign_folds(STARE_IDS, folds, seed)


@pytest.mark.parametrize("folds, seed", [(5, 0), (5, 3), (2, 1), (10, 0)])
def test_folds_group_by_subject_and_spread_each_dataset(folds, seed):
    pairs = _chase_pairs() + [datasets.ImagePair(i, i, i, dataset="stare", subject=i)
                              for i in STARE_IDS]
    ids = [p.image_id for p in pairs]
    subjects = {p.image_id: sources.subject_key(p) for p in pairs}
    names = {p.image_id: p.dataset for p in pairs}
    result = cv.assign_folds(ids, folds, seed, subjects=subjects, datasets=names)
    assert sorted(i for f in result for i in f.test_ids) == sorted(ids)  # each held out once
    for fold in result:
        roles = [set(fold.test_ids), set(fold.valid_ids), set(fold.train_ids)]
        for a, b in itertools.combinations(roles, 2):
            assert not a & b
        assert set().union(*roles) == set(ids)
        role_subjects = [{subjects[i] for i in role} for role in roles]
        # No subject is in two roles: not held out and trained, nor validated and trained
        # (the other eye of a validation photo once trained).
        for a, b in itertools.combinations(role_subjects, 2):
            assert not a & b, fold
        # One validation subject per dataset, with all its photos.
        valid_subjects = sorted(role_subjects[1])
        assert [s.split("/")[0] for s in valid_subjects] == ["chase_db1", "stare"]
        assert sorted(fold.valid_ids) == sorted(i for i in ids if subjects[i] in valid_subjects)
    per_fold = {name: [sum(names[i] == name for i in f.test_ids) for f in result]
                for name in ("chase_db1", "stare")}
    assert max(per_fold["chase_db1"]) - min(per_fold["chase_db1"]) <= 2  # whole children
    assert max(per_fold["stare"]) - min(per_fold["stare"]) <= 1
    assert cv.assign_folds(ids[::-1], folds, seed, subjects, names) == result


def test_folds_refuse_fewer_subjects_than_folds():
    ids = ["Image_01L", "Image_01R", "Image_02L", "Image_02R"]
    subjects = {i: datasets.subject_of("chase_db1", i) for i in ids}
    with pytest.raises(ValueError, match="4 images of 2 subjects cannot make 3 folds"):
        cv.assign_folds(ids, 3, subjects=subjects)


def _tiny_preprocess_flags():
    return ["--set", "preprocess.scale=1", "--set", "preprocess.tile_size=32",
            "--set", "preprocess.tile_stride=32", "--augment", "none",
            "--set", "preprocess.shards=1", "--set", "preprocess.image_encoding=png",
            "--config", os.devnull, "--direct_running_mode", "in_memory",
            "--direct_num_workers", "1"]


@pytest.mark.slow  # the Beam job over two dataset trees
def test_vessel_preprocess_two_sources_split_by_child_and_records_name_datasets(
        tmp_path_factory):
    from tiled_vessel_seg.beam_jobs import cli
    from tiled_vessel_seg.tfrecords import dataset_info, schema
    import tensorflow as tf
    root = tmp_path_factory.mktemp("two")
    chase = root / "chase"
    chase_layout.write_synthetic_chase(str(chase), 5, width=40, height=36, seed=1)
    stare = root / "stare"
    stare_layout.write_synthetic_stare(str(stare), 3, width=40, height=36, seed=1)
    out = root / "out"
    assert cli.main(["--source", f"chase_db1:{chase}", "--source", f"stare:{stare}",
                     "--output_dir", str(out)] + _tiny_preprocess_flags()) == 0
    info = dataset_info.read_dataset_info(str(out))
    assignment = info.parameters.split_assignment
    for child in range(1, 6):
        assert assignment[f"Image_{child:02d}L"] == assignment[f"Image_{child:02d}R"]
    assert info.parameters.values["sources"] == [f"chase_db1:{chase}", f"stare:{stare}"]
    images = [json.loads(line) for line in open(out / "images.jsonl")]
    for name, split_info in info.splits.items():
        # Counted independently: the dataset field of every record in the shards.
        names = [schema.decode_example_numpy(bytes(r.numpy()))[2]["dataset"]
                 for r in tf.data.TFRecordDataset(info.shard_paths(str(out), name))]
        expected = {d: {"images": sum(1 for i in images if i["split"] == name
                                      and i["dataset"] == d),
                        "records": names.count(d)} for d in sorted(set(names))}
        assert split_info.datasets == expected
        assert sum(c["images"] for c in expected.values()) == len(split_info.image_ids)
        for image_id in split_info.image_ids:
            assert ("chase_db1" if image_id.startswith("Image_") else "stare") in expected


@pytest.mark.parametrize("argv, words", [
    (["--source", "stare:X", "--stare_dir", "Y"], "drop --stare_dir"),
    (["--source", "kaggle:X"], "unknown dataset 'kaggle'"),
    (["--stare_dir", "X", "--layout", "drive"], "--stare_dir is a STARE folder"),
    ([], "give the inputs")])
def test_source_flag_usage_errors_exit_2(argv, words, tmp_path, capsys):
    from tiled_vessel_seg.beam_jobs import cli
    assert cli.main(argv + ["--output_dir", str(tmp_path / "o")]) == 2
    assert words in capsys.readouterr().err


def test_vessel_cv_takes_every_input_flag(tmp_path, capsys):
    """vessel-cv reads --manifest / --dataset_dir --layout / --source like vessel-preprocess
    (issue 18 item 15): each is found and refused here for its own reason, before training."""
    work = str(tmp_path / "w")
    base = ["--config", os.devnull, "--workdir", work, "--folds", "2"]
    cases = [(["--manifest", str(tmp_path / "none.csv")], "none.csv does not exist"),
             (["--dataset_dir", str(tmp_path / "DRIVE"), "--layout", "drive"],
              "DRIVE: not a folder"),
             (["--source", f"chase_db1:{tmp_path / 'c'}"], "c: not a folder"),
             ([], "give the photos")]
    for argv, words in cases:
        assert cv.main(base + argv) == 2
        assert words in capsys.readouterr().err, argv
    chase = tmp_path / "c"
    chase_layout.write_synthetic_chase(str(chase), 1, width=40, height=36)
    assert cv.main(base + ["--source", f"chase_db1:{chase}"]) == 2  # 1 child, 2 folds
    assert "2 images of 1 subjects cannot make 2 folds" in capsys.readouterr().err


def test_vessel_run_preprocesses_two_sources(trees, tmp_path):
    from tiled_vessel_seg.pipeline import run
    from tiled_vessel_seg.tfrecords import dataset_info
    stare, chase = trees
    work = tmp_path / "run"
    assert run.main(["--config", os.devnull, "--workdir", str(work), "--stages", "preprocess",
                     "--source", f"stare:{stare}", "--source", f"chase_db1:{chase}", "--quiet",
                     "--set", "preprocess.scale=1", "--set", "preprocess.tile_size=32",
                     "--set", "preprocess.augmentations=()", "--set", "preprocess.shards=1"]) == 0
    info = dataset_info.read_dataset_info(str(work / "data"))
    assert info.parameters.values["sources"] == [f"stare:{stare}", f"chase_db1:{chase}"]
    ids = sorted(i for s in info.splits.values() for i in s.image_ids)
    assert ids == sorted(["Image_01L", "Image_01R", "Image_02L", "Image_02R", "Image_03L",
                          "Image_03R", "im0001", "im0002", "im0003"])
    assignment = info.parameters.split_assignment
    assert all(assignment[f"Image_0{c}L"] == assignment[f"Image_0{c}R"] for c in (1, 2, 3))

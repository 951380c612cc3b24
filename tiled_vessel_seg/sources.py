"""Several datasets in one run: which photographs come from which dataset and subject.

One design serves vessel-preprocess, vessel-run and vessel-cv (source_flags.py defines
their flags once):

  --source NAME:DIR   repeatable; NAME is a layout of tiled_vessel_seg/datasets.py
                      (stare, drive, chase_db1, hrf) and also the dataset's name, DIR its
                      folder as distributed (local or gs://), e.g.
                      --source stare:../shared/data/stare --source chase_db1:../shared/data/chase_db1
  --manifest CSV      one CSV whose optional `dataset` column names each row's dataset
                      (and optional `subject` column its person)

The single-source flags (--stare_dir, --dataset_dir with --layout, --images_dir with
--masks_dir, --manifest) still work; their dataset is named after the layout ("stare",
"folders" for plain folder pairs, "manifest" for rows without a dataset cell).

Every pair that `find_pairs` returns carries its dataset name and its subject
(`datasets.subject_of`: CHASE_DB1's child number, else the photo itself). Image ids stay
the photographs' file stems, which is what segmentation outputs are named; ids that two
datasets share are prefixed with the dataset name ("stare-im0001") so that ids stay
unique across the run. Two sources of one dataset name are one dataset (an id in both is
a duplicate, reported as a problem).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional, Sequence, Union

from tiled_vessel_seg import datasets

MANIFEST_DATASET = "manifest"  # the dataset of manifest rows without a dataset cell
FOLDERS_DATASET = "folders"  # --images_dir/--masks_dir paired by stem, without --layout

Sources = Union[datasets.Source, Sequence[datasets.Source]]


def parse_source(text: str) -> datasets.Source:
    """'chase_db1:../data/chase_db1' -> Source(root='../data/chase_db1', layout='chase_db1').

    Raises ValueError (a usage error) for a missing ':', an unknown layout or no folder.
    """
    name, sep, folder = text.partition(":")
    name = name.strip().lower()
    if not sep or not folder.strip():
        raise ValueError(f"--source {text!r}: expected NAME:DIR with NAME one of "
                         f"{', '.join(datasets.LAYOUT_NAMES)}")
    if name not in datasets.LAYOUT_NAMES:
        raise ValueError(f"--source {text!r}: unknown dataset {name!r}; names (layouts): "
                         f"{', '.join(datasets.LAYOUT_NAMES)} (--manifest with a dataset "
                         "column describes any other dataset)")
    return datasets.Source(root=folder.strip(), layout=name)


def as_list(sources: Sources) -> list[datasets.Source]:
    return [sources] if isinstance(sources, datasets.Source) else list(sources)


def source_name(source: datasets.Source) -> Optional[str]:
    """The dataset name of a source: its layout (stare by default for a dataset folder,
    "folders" for plain folder pairs); None for a manifest (each row says)."""
    if source.manifest:
        return None
    if source.root:
        return source.layout or "stare"
    return source.layout or FOLDERS_DATASET


def source_spec(source: datasets.Source) -> str:
    """How a source is written on the command line and in dataset_info.json:
    'stare:DIR', 'manifest:CSV', 'folders:IMAGES,MASKS'."""
    if source.manifest:
        return f"manifest:{source.manifest}"
    if source.root:
        return f"{source.layout or 'stare'}:{source.root}"
    return f"{source.layout or FOLDERS_DATASET}:{source.images_dir},{source.masks_dir}"


def describe(sources: Sources) -> str:
    """'../data/stare (stare layout)', 'manifest pairs.csv', or the sources joined by ' + '."""
    parts = []
    for source in as_list(sources):
        fov = f", FOV masks {source.fov_dir}" if source.fov_dir else ""
        if source.manifest:
            parts.append(f"manifest {source.manifest}")
        elif source.root:
            parts.append(f"{source.root} ({source.layout or 'stare'} layout{fov})")
        else:
            parts.append(f"{source.images_dir} with masks {source.masks_dir}{fov}")
    return " + ".join(parts)


def parameters(sources: Sources) -> dict:
    """What dataset_info.json records about the inputs: one source's fields as before
    (root, layout, ...), several as {"sources": ["stare:DIR", "chase_db1:DIR"]}."""
    listed = as_list(sources)
    if len(listed) == 1:
        return listed[0].parameters()
    return {"sources": [source_spec(s) for s in listed]}


def from_parameters(values: dict) -> Optional[list[datasets.Source]]:
    """The sources recorded by `parameters` with several sources; None otherwise."""
    specs = values.get("sources")
    if not specs:
        return None
    out = []
    for spec in specs:
        name, _, rest = str(spec).partition(":")
        if name == "manifest":
            out.append(datasets.Source(manifest=rest))
        elif name in datasets.LAYOUT_NAMES:
            out.append(datasets.Source(root=rest, layout=name))
        else:
            return None
    return out


def check(sources: Sources) -> None:
    """Raises ValueError (a usage error) for a bad source or combination."""
    listed = as_list(sources)
    if not listed:
        raise ValueError("no input: give --source NAME:DIR (repeatable), a dataset folder "
                         "(--stare_dir, --dataset_dir with --layout), --images_dir with "
                         "--masks_dir, or --manifest")
    for source in listed:
        source.check()


def find_pairs(sources: Sources, ignored: Optional[list] = None
               ) -> tuple[list[datasets.ImagePair], list[datasets.InputProblem]]:
    """The pairs of every source, each with its dataset name and subject, ids unique
    across datasets; and the problems of all sources.

    Raises ValueError for a bad combination and datasets.InputDirError for a missing
    folder or unusable manifest (of any source).
    """
    pairs: list[datasets.ImagePair] = []
    problems: list[datasets.InputProblem] = []
    for source in as_list(sources):
        found, found_problems = (datasets.find_pairs(source) if ignored is None
                                 else datasets.find_pairs(source, ignored))
        name = source_name(source)
        for pair in found:
            dataset = pair.dataset or name or MANIFEST_DATASET
            pairs.append(dataclasses.replace(
                pair, dataset=dataset,
                subject=pair.subject or datasets.subject_of(dataset, pair.image_id)))
        problems.extend(found_problems)
    return unique_ids(pairs, problems)


def unique_ids(pairs: Iterable[datasets.ImagePair], problems: list[datasets.InputProblem]
               ) -> tuple[list[datasets.ImagePair], list[datasets.InputProblem]]:
    """Ids shared by two datasets get the dataset's name in front ("stare-im0001"); an id
    twice in one dataset is a duplicate (the later one a problem). Sorted by id."""
    pairs = list(pairs)
    owners: dict[str, set] = {}
    for pair in pairs:
        owners.setdefault(pair.image_id, set()).add(pair.dataset)
    kept: dict[str, datasets.ImagePair] = {}
    for pair in pairs:
        image_id = (f"{pair.dataset}-{pair.image_id}" if len(owners[pair.image_id]) > 1
                    else pair.image_id)
        if image_id in kept:
            problems.append(datasets.InputProblem(
                pair.image_path, "discover", f"duplicate image id {image_id!r} in dataset "
                                             f"{pair.dataset} (also {kept[image_id].image_path})"))
            continue
        kept[image_id] = dataclasses.replace(pair, image_id=image_id)
    return sorted(kept.values(), key=lambda p: p.image_id), problems


def subject_key(pair: datasets.ImagePair) -> str:
    """The run-wide key of the pair's subject: 'chase_db1/01', 'stare/im0001'. Photos with
    one key must share a split and a fold."""
    subject = pair.subject or datasets.subject_of(pair.dataset, pair.image_id)
    return f"{pair.dataset or ''}/{subject}"


def dataset_names(pairs: Iterable[datasets.ImagePair]) -> list[str]:
    """The sorted dataset names of the pairs ("" for unnamed pairs)."""
    return sorted({pair.dataset or "" for pair in pairs})

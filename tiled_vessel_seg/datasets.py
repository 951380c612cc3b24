"""Where a dataset's photographs, vessel masks and FOV masks are, and which go together.

Public retinal datasets do not pair their files by stem. Each layout below is the folder
tree and the file names of the dataset's own distribution, unpacked unchanged:

  stare      stare-images/im0001.ppm.gz      labels-ah/im0001.ah.ppm.gz
             (second observer: labels-vk/im0001.vk.ppm.gz; no FOV masks)
  drive      training/images/21_training.tif training/1st_manual/21_manual1.gif
             training/mask/21_training_mask.gif, and the same under test/ with
             01_test.tif, 01_manual1.gif, 01_test_mask.gif (second observer:
             test/2nd_manual/01_manual2.gif); images under training/ get the split hint
             "train", under test/ "test"
  chase_db1  one folder: Image_01L.jpg  Image_01L_1stHO.png
             (second observer: Image_01L_2ndHO.png; no FOV masks)
  hrf        images/01_dr.JPG  manual1/01_dr.tif  mask/01_dr_mask.tif
             (also 01_g.jpg, 01_h.jpg; no second observer)

Anything else is described by a manifest CSV (`read_manifest`): columns
image,mask[,fov][,split][,dataset][,subject], paths relative to the CSV.

Every file name is matched on its stem (the name up to the first dot, case kept) and must
have an image extension; the image id is the photograph's stem ("21_training",
"Image_01L", "01_dr", "im0001"), which is also the name segmentation outputs get.
Unpaired files, files that should have been images but are not, duplicate ids, empty
folders and bad manifest rows come back as `InputProblem`s (lines of errors.jsonl; one
line each on the console), never as exceptions: one bad input never stops the others.

A dataset as distributed also holds files that are no input problem: documentation and
checksums (README.md, SHA256SUMS, *.txt: `is_plainly_not_a_photo`), and files the layout
explains but a step does not use (CHASE_DB1's photographs and second observer in the
folder given as --masks_dir). They are left out without an error; callers that pass an
`ignored` list get them as `Ignored` entries, for one summary line (`ignored_note`). Only an input that cannot be used at
all (a missing root folder, a manifest without its required columns) raises
`InputDirError`.

This module is the ground floor: it imports no stage package, so preprocessing,
segmentation and vessel-run all use it. Listing works on local paths and on gs:// (through
the storage module).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import posixpath
import re
from typing import Iterable, Optional, Sequence

import numpy as np

from tiled_vessel_seg import imaging, storage
from tiled_vessel_seg.names import SPLIT_NAMES

MANIFEST_COLUMNS = ("image", "mask", "fov", "split", "dataset", "subject")
REQUIRED_MANIFEST_COLUMNS = ("image", "mask")

# FOV source names, as recorded in metrics.json.
FOV_COMPUTED = "computed"
FOV_FILES = "files"


class InputDirError(ValueError):
    """An input that cannot be used at all (missing root folder, unusable manifest)."""


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """One photograph with its vessel mask.

    fov_path: the dataset's field-of-view mask (None: computed from the photograph).
    second_mask_path: a second annotator's vessel mask, when the dataset ships one.
    split: the split the input itself assigns ("train", "valid", "test"), or None.
    dataset: the dataset's name ("stare", "chase_db1", a manifest's dataset cell), set by
      `tiled_vessel_seg.sources` when several datasets go into one run; None: unnamed.
    subject: the person the photo is of, where the dataset says (CHASE_DB1's child:
      "01" for Image_01L and Image_01R; `subject_of`); None: the image is its own subject.
    """
    image_id: str
    image_path: str
    mask_path: str
    fov_path: Optional[str] = None
    second_mask_path: Optional[str] = None
    split: Optional[str] = None
    dataset: Optional[str] = None
    subject: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class InputProblem:
    """One rejected input: becomes a line {path, stage, reason} of errors.jsonl."""
    path: str
    stage: str
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------- file system

join = storage.join
exists = storage.exists
is_dir = storage.isdir
image_extension = imaging.image_extension


def list_files(directory: str) -> list[str]:
    """Sorted paths of the non-hidden files directly inside `directory` (local or gs://)."""
    paths = [storage.join(directory, n) for n in storage.listdir(directory)
             if not n.startswith(".")]
    return [p for p in paths if not storage.isdir(p)]


def basename(path: str) -> str:
    return posixpath.basename(str(path).replace("\\", "/").rstrip("/"))


def stem_of(path: str) -> str:
    """'x/labels-ah/im0001.ah.ppm.gz' -> 'im0001' (the file name up to its first dot)."""
    return basename(path).split(".", 1)[0]


# ----------------------------------------------------------------------------- layouts

@dataclasses.dataclass(frozen=True)
class Roles:
    """How one dataset names its files: a regex per role, matched against the whole file
    stem (case-insensitively), whose group `key` is what the files of one image share."""
    image: str
    mask: str
    fov: Optional[str] = None
    second_mask: Optional[str] = None
    examples: tuple[tuple[str, str], ...] = ()  # (role, a real file name), for messages

    def example(self, role: str) -> str:
        return dict(self.examples).get(role, getattr(self, role))

    def key(self, role: str, stem: str) -> Optional[str]:
        pattern = getattr(self, role)
        if pattern is None:
            return None
        match = re.fullmatch(pattern, stem, re.IGNORECASE)
        return match.group("key").lower() if match else None


@dataclasses.dataclass(frozen=True)
class Group:
    """One folder set of a layout, relative to the dataset root ("" = the root itself)."""
    images: str
    masks: str
    fov: Optional[str] = None
    second_masks: Optional[str] = None
    split: Optional[str] = None
    optional: bool = False  # may be absent (e.g. DRIVE without its test/ folder)


@dataclasses.dataclass(frozen=True)
class Layout:
    name: str
    roles: Roles
    groups: tuple[Group, ...]


ANY_STEM = r"(?P<key>.+)"
FOLDERS = Layout("folders", Roles(image=ANY_STEM, mask=ANY_STEM,
                                  fov=r"(?P<key>.+?)(?:_mask|_fov)?"), ())

LAYOUTS: dict[str, Layout] = {
    "stare": Layout("stare", Roles(image=ANY_STEM, mask=ANY_STEM, second_mask=ANY_STEM),
                    (Group("stare-images", "labels-ah", second_masks="labels-vk"),)),
    "drive": Layout(
        "drive",
        Roles(image=r"(?P<key>\d+)_(?:training|test)", mask=r"(?P<key>\d+)_manual1",
              fov=r"(?P<key>\d+)_(?:training|test)_mask", second_mask=r"(?P<key>\d+)_manual2",
              examples=(("image", "21_training.tif"), ("mask", "21_manual1.gif"),
                        ("fov", "21_training_mask.gif"), ("second_mask", "01_manual2.gif"))),
        (Group("training/images", "training/1st_manual", "training/mask",
               "training/2nd_manual", split="train", optional=True),
         Group("test/images", "test/1st_manual", "test/mask", "test/2nd_manual",
               split="test", optional=True))),
    "chase_db1": Layout(
        "chase_db1",
        Roles(image=r"(?P<key>Image_\d+[LR])", mask=r"(?P<key>Image_\d+[LR])_1stHO",
              second_mask=r"(?P<key>Image_\d+[LR])_2ndHO",
              examples=(("image", "Image_01L.jpg"), ("mask", "Image_01L_1stHO.png"),
                        ("second_mask", "Image_01L_2ndHO.png"))),
        (Group("", "", second_masks=""),)),
    "hrf": Layout(
        "hrf",
        Roles(image=r"(?P<key>\d+_[a-z]+)", mask=r"(?P<key>\d+_[a-z]+)",
              fov=r"(?P<key>\d+_[a-z]+)_mask",
              examples=(("image", "01_dr.JPG"), ("mask", "01_dr.tif"), ("fov", "01_dr_mask.tif"))),
        (Group("images", "manual1", "mask"),)),
}
LAYOUT_NAMES = tuple(LAYOUTS)


def get_layout(name: Optional[str]) -> Layout:
    """The layout called `name`; None gives the plain two-folder pairing by stem."""
    if name is None:
        return FOLDERS
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; layouts: {', '.join(LAYOUT_NAMES)}") from None


# Files a dataset ships beside its images that are plainly not photographs: left out
# without an error (see is_plainly_not_a_photo).
NOT_PHOTO_EXTENSIONS = frozenset((
    ".md", ".txt", ".rst", ".csv", ".tsv", ".json", ".yaml", ".yml", ".xml", ".html",
    ".htm", ".pdf", ".doc", ".docx", ".odt", ".rtf", ".log", ".ini", ".cfg", ".sha256",
    ".sha1", ".md5", ".sig", ".asc", ".db"))
NOT_PHOTO_NAMES = re.compile(
    r"(readme|licen[cs]e|copying|notice|authors|changelog|citation|manifest|"
    r"[a-z0-9]*sums?)(\.[a-z0-9]+)?|desktop\.ini|thumbs\.db", re.IGNORECASE)

# Why a file was left out (Ignored.why), with a plural for the summary note.
NOT_A_PHOTO = "not a photograph"
ROLE_WORDS = {"image": ("photograph", "photographs"), "mask": ("vessel mask", "vessel masks"),
              "fov": ("FOV mask", "FOV masks"),
              "second_mask": ("second-observer mask", "second-observer masks")}


@dataclasses.dataclass(frozen=True)
class Ignored:
    """A file left out on purpose: `why` is NOT_A_PHOTO, or the layout role it has
    ("image", "mask", "fov", "second_mask") in a folder a step reads for another role."""
    path: str
    why: str


def is_plainly_not_a_photo(path: str) -> bool:
    """True for documentation, checksum and text files (README.md, SHA256SUMS, notes.txt,
    LICENSE, Thumbs.db): names no one would give a photograph or mask. A name with an
    unknown extension (scan.raw, im0001.dat) is not plainly anything: it stays a problem."""
    name = basename(path)
    if name.startswith("."):
        return True
    if NOT_PHOTO_NAMES.fullmatch(name):
        return True
    ext = posixpath.splitext(name.lower()[:-3] if name.lower().endswith(".gz") else name.lower())[1]
    return ext in NOT_PHOTO_EXTENSIONS


def ignored_note(ignored: Sequence[Ignored], what: str = "", shown: int = 4) -> str:
    """One line summing up the files left out, e.g. 'left out 42 files of
    data/chase_db1: 20 photographs, 20 second-observer masks, 2 not photographs
    (README.md, SHA256SUMS)'; "" when nothing was left out. `what` names the folder(s)."""
    if not ignored:
        return ""
    groups: dict[str, list[str]] = {}
    for item in ignored:
        groups.setdefault(item.why, []).append(basename(item.path))
    parts = []
    for why, names in groups.items():
        count = len(names)
        if why == NOT_A_PHOTO:
            listed = ", ".join(sorted(names)[:shown]) + (", ..." if count > shown else "")
            parts.append(f"{count} not {'a photograph' if count == 1 else 'photographs'} "
                         f"({listed})")
        else:
            one, many = ROLE_WORDS.get(why, (why, why))
            parts.append(f"{count} {one if count == 1 else many}")
    where = f" of {what}" if what else ""
    total = len(ignored)
    return f"left out {total} file{'s' if total != 1 else ''}{where}: {', '.join(parts)}"


def _index(directory: str, layout: Layout, role: str, what: str,
           problems: list[InputProblem], shared: bool = False,
           ignored: Optional[list[Ignored]] = None, explained: Sequence[str] = ()
           ) -> dict[str, str]:
    """{key: path} of the files of `role` in `directory`.

    Files that are not images, or (in a folder of one role) do not follow the layout's
    naming, become problems; in a folder shared by several roles (`shared`), a file that
    does not match this role is left for the others. Files plainly not photographs, and
    files matching one of the `explained` roles of the layout, are left out: appended to
    `ignored` (when given), never problems.
    """
    files = list_files(directory)
    if not files:
        problems.append(InputProblem(directory, "discover", f"empty {what} folder: no files"))
        return {}
    found: dict[str, str] = {}
    for path in files:
        if image_extension(path) is None:
            if is_plainly_not_a_photo(path):
                if ignored is not None and (not shared or role == "image"):
                    ignored.append(Ignored(path, NOT_A_PHOTO))
            elif not shared or role == "image":
                problems.append(InputProblem(path, "discover", f"not an image file ({what} folder)"))
            continue
        key = layout.roles.key(role, stem_of(path))
        if key is None:
            other = next((r for r in explained if layout.roles.key(r, stem_of(path))), None)
            if other is not None:
                if ignored is not None:
                    ignored.append(Ignored(path, other))
            elif not shared:
                problems.append(InputProblem(
                    path, "discover", f"not a {layout.name} {what} name "
                                      f"(expected e.g. {layout.roles.example(role)})"))
            continue
        if key in found:
            problems.append(InputProblem(path, "discover",
                                         f"duplicate {what} for {key!r} (also {found[key]})"))
            continue
        found[key] = path
    return found


def _unclaimed(directory: str, layout: Layout, problems: list[InputProblem]) -> None:
    """In a folder shared by all roles, reports the image files that no role claims."""
    for path in list_files(directory):
        if image_extension(path) is None:
            continue
        stem = stem_of(path)
        if not any(layout.roles.key(r, stem) for r in ("image", "mask", "fov", "second_mask")):
            problems.append(InputProblem(path, "discover", f"not a {layout.name} file name"))


def pair_folders(images_dir: str, masks_dir: str, layout: Optional[str] = None,
                 fov_dir: Optional[str] = None, second_masks_dir: Optional[str] = None,
                 split: Optional[str] = None, ignored: Optional[list[Ignored]] = None
                 ) -> tuple[list[ImagePair], list[InputProblem]]:
    """Pairs the photographs in `images_dir` with the masks in `masks_dir`.

    Args:
      images_dir, masks_dir: folders (local or gs://); they may be the same folder.
      layout: a name of LAYOUTS (its file naming rules), or None to pair by stem
        ('im0001.png' with 'im0001.ah.png').
      fov_dir: FOV masks (None: computed later from each photograph). Without a layout a
        FOV file is named like its image, optionally with '_mask' or '_fov' after the stem.
      second_masks_dir: a second annotator's masks, named like `masks_dir`'s.
      split: the split hint recorded on every pair.
      ignored: when given, the files left out on purpose are appended (`Ignored`).

    Returns:
      pairs sorted by image id, and the problems (unpaired image or mask, non-image file,
      duplicate id, empty or missing folder, a photograph without its FOV mask).

    Raises:
      InputDirError: `images_dir` does not exist.
    """
    spec = get_layout(layout)
    if not is_dir(images_dir):
        raise InputDirError(f"input folder {images_dir} does not exist")
    return _pair_group(spec, images_dir, masks_dir, fov_dir, second_masks_dir, split, ignored)


def _pair_group(layout: Layout, images_dir: str, masks_dir: str, fov_dir: Optional[str],
                second_dir: Optional[str], split: Optional[str],
                ignored: Optional[list[Ignored]] = None):
    problems: list[InputProblem] = []
    folders = {images_dir, masks_dir} | ({fov_dir} if fov_dir else set()) | (
        {second_dir} if second_dir else set())
    shared = len(folders) < 1 + bool(masks_dir) + bool(fov_dir) + bool(second_dir)
    images = _index(images_dir, layout, "image", "image", problems, shared, ignored)
    masks: dict[str, str] = {}
    if is_dir(masks_dir):
        masks = _index(masks_dir, layout, "mask", "mask", problems, shared, ignored)
    else:
        problems.append(InputProblem(masks_dir, "discover", "mask folder does not exist"))
    fovs: dict[str, str] = {}
    if fov_dir:
        if is_dir(fov_dir):
            fov_layout = layout if layout.roles.fov else FOLDERS
            fovs = _index(fov_dir, fov_layout, "fov", "FOV mask", problems, shared, ignored)
        else:
            problems.append(InputProblem(fov_dir, "discover", "FOV folder does not exist"))
    seconds: dict[str, str] = {}
    if second_dir and is_dir(second_dir):
        seconds = _index(second_dir, layout, "second_mask", "second-observer mask", [], shared)
    if shared:
        _unclaimed(images_dir, layout, problems)
    pairs = []
    for key, image_path in sorted(images.items(), key=lambda kv: stem_of(kv[1])):
        if key not in masks:
            problems.append(InputProblem(image_path, "discover",
                                         f"unpaired image: no mask for {key!r} in {masks_dir}"))
            continue
        if fov_dir and key not in fovs:
            problems.append(InputProblem(image_path, "discover",
                                         f"no FOV mask for {key!r} in {fov_dir}"))
            continue
        pairs.append(ImagePair(stem_of(image_path), image_path, masks[key], fovs.get(key),
                               seconds.get(key), split))
    for key in sorted(set(masks) - set(images)):
        problems.append(InputProblem(masks[key], "discover",
                                     f"unpaired mask: no image for {key!r} in {images_dir}"))
    return pairs, problems


def discover(root: str, layout: str, fov_dir: Optional[str] = None,
             ignored: Optional[list[Ignored]] = None
             ) -> tuple[list[ImagePair], list[InputProblem]]:
    """Pairs every photograph of a dataset tree in `layout` under `root`.

    fov_dir: FOV masks for a layout that ships none (stare, chase_db1), named like the
      image with an optional _mask/_fov suffix.
    ignored: when given, the files left out on purpose (README.md, SHA256SUMS, ...) are
      appended (`Ignored`).

    Returns:
      pairs sorted by image id, each with dataset = the layout's name and its subject
      (`subject_of`), and the problems (see `pair_folders`; also an image id found in two
      groups, e.g. DRIVE's training/ and test/).

    Raises:
      InputDirError: `root` does not exist or holds none of the layout's folders.
    """
    spec = get_layout(layout)
    if not is_dir(root):
        raise InputDirError(f"input folder {root} does not exist")
    pairs: list[ImagePair] = []
    problems: list[InputProblem] = []
    present = [g for g in spec.groups if is_dir(join(root, g.images))]
    missing = [g for g in spec.groups if g not in present and not g.optional]
    if missing or not present:
        expected = ", ".join(g.images + "/" for g in (missing or spec.groups))
        raise InputDirError(f"{root} is not a {spec.name} folder: it has no {expected} "
                            f"(see --layout; --manifest describes any other tree)")
    for group in present:
        fov = join(root, group.fov) if group.fov is not None else fov_dir
        if group.fov is not None and not is_dir(fov):
            fov = None  # a distribution without FOV masks: they are computed instead
        second = join(root, group.second_masks) if group.second_masks is not None else None
        group_pairs, group_problems = _pair_group(
            spec, join(root, group.images), join(root, group.masks), fov, second, group.split,
            ignored)
        pairs.extend(group_pairs)
        problems.extend(group_problems)
    pairs = [dataclasses.replace(p, dataset=spec.name, subject=subject_of(spec.name, p.image_id))
             for p in pairs]  # a tree as distributed is one dataset, named by its layout
    return _drop_duplicate_ids(pairs, problems)


def _drop_duplicate_ids(pairs: list[ImagePair], problems: list[InputProblem]):
    seen: dict[str, ImagePair] = {}
    kept = []
    for pair in pairs:
        if pair.image_id in seen:
            problems.append(InputProblem(pair.image_path, "discover",
                                         f"duplicate image id {pair.image_id!r} "
                                         f"(also {seen[pair.image_id].image_path})"))
            continue
        seen[pair.image_id] = pair
        kept.append(pair)
    return sorted(kept, key=lambda p: p.image_id), problems


def discover_stare(stare_dir: str) -> tuple[list[ImagePair], list[InputProblem]]:
    """`discover(stare_dir, "stare")`."""
    return discover(stare_dir, "stare")


# ---------------------------------------------------------------------------- subjects

# Datasets with several photos of one person: the image id's group `subject` names the
# person. CHASE_DB1 photographs both eyes of each child (Image_01L, Image_01R: child 01);
# in STARE, DRIVE and HRF every photo is its own subject.
SUBJECT_PATTERNS = {"chase_db1": r"Image_(?P<subject>\d+)[LR]"}
DATASET_NAME = r"[A-Za-z0-9_]+"  # a dataset name: a layout name or a manifest's label


def subject_of(dataset: Optional[str], image_id: str) -> str:
    """The subject of one photo: 'chase_db1', 'Image_01R' -> '01'; the image id itself
    where the dataset has no subjects (or the id does not follow its naming)."""
    pattern = SUBJECT_PATTERNS.get(dataset or "")
    match = re.fullmatch(pattern, image_id, re.IGNORECASE) if pattern else None
    return match.group("subject") if match else image_id


# ---------------------------------------------------------------------------- manifest

def read_manifest(path: str) -> tuple[list[ImagePair], list[InputProblem]]:
    """Pairs listed in a CSV file: a header row naming the columns image, mask and
    optionally fov, split, dataset (a name: several datasets in one manifest, e.g. stare
    and chase_db1) and subject (the person photographed: photos of one subject stay in
    one split and one fold; default `subject_of` the dataset and id); paths relative to
    the CSV's folder (absolute paths and URLs are kept).

    A bad row (empty required cell, a file that does not exist or is not an image, an
    unknown split, an image id seen before) is left out and reported as a problem whose
    reason starts with "row N:", N being the row's line number in the file (the header is
    row 1).

    Raises:
      InputDirError: the file does not exist, or its header lacks image or mask, or names
        an unknown column.
    """
    if not exists(path):
        raise InputDirError(f"manifest {path} does not exist")
    text = storage.read_text(path).lstrip("\ufeff")  # a spreadsheet's byte-order mark
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in REQUIRED_MANIFEST_COLUMNS if c not in header]
    unknown = [c for c in header if c not in MANIFEST_COLUMNS]
    if missing or unknown:
        problem = (f"no {' or '.join(missing)} column" if missing
                   else f"unknown column(s) {', '.join(map(repr, unknown))}")
        raise InputDirError(f"manifest {path}: {problem}; the header must name the columns "
                            f"image,mask[,fov][,split][,dataset][,subject]")
    base = posixpath.dirname(path) if storage.is_remote(path) else os.path.dirname(os.path.abspath(path))
    pairs: list[ImagePair] = []
    problems: list[InputProblem] = []
    ids: dict[str, int] = {}
    for row_number, cells in enumerate(reader, start=2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            problems.append(InputProblem(path, "discover", f"row {row_number}: {len(cells)} "
                                         f"cells, the header has {len(header)}"))
            continue
        row = {k: c.strip() for k, c in zip(header, cells)}
        pair, reason = _manifest_pair(row, base)
        if pair is not None and pair.image_id in ids:
            reason = (f"duplicate image id {pair.image_id!r} (also row {ids[pair.image_id]})")
        if reason:
            problems.append(InputProblem(path, "discover", f"row {row_number}: {reason}"))
            continue
        ids[pair.image_id] = row_number
        pairs.append(pair)
    return sorted(pairs, key=lambda p: p.image_id), problems


def _manifest_pair(row: dict[str, str], base: str) -> tuple[Optional[ImagePair], str]:
    """(pair, "") of one manifest row, or (None, why it is rejected)."""
    paths = {}
    for column in ("image", "mask", "fov"):
        value = row.get(column, "")
        if not value:
            if column in REQUIRED_MANIFEST_COLUMNS:
                return None, f"empty {column} cell"
            continue
        full = value if (storage.is_remote(value) or os.path.isabs(value)) else join(base, value)
        if image_extension(full) is None:
            return None, f"{column} {value}: not an image file name"
        if not exists(full):
            return None, f"{column} file {full} not found"
        paths[column] = full
    split = row.get("split", "").lower() or None
    if split is not None and split not in SPLIT_NAMES:
        return None, f"unknown split {row['split']!r} (splits: {', '.join(SPLIT_NAMES)})"
    dataset = row.get("dataset") or None
    if dataset is not None and not re.fullmatch(DATASET_NAME, dataset):
        return None, f"dataset {dataset!r}: letters, digits and _ only"
    image_id = stem_of(paths["image"])
    subject = row.get("subject") or (subject_of(dataset, image_id) if dataset else None)
    return ImagePair(image_id, paths["image"], paths["mask"], paths.get("fov"),
                     split=split, dataset=dataset, subject=subject), ""


# ------------------------------------------------------------------------- one entry

@dataclasses.dataclass(frozen=True)
class Source:
    """Where a tool's labelled photographs come from: exactly one of
    root (a dataset tree in `layout`, default stare), images_dir + masks_dir (paired by
    `layout`'s naming, or by stem without one), or manifest (a CSV). fov_dir adds FOV
    masks to the folder pair, or to a dataset tree whose layout ships none."""
    root: Optional[str] = None
    layout: Optional[str] = None
    images_dir: Optional[str] = None
    masks_dir: Optional[str] = None
    manifest: Optional[str] = None
    fov_dir: Optional[str] = None

    def check(self) -> None:
        """Raises ValueError (a usage error) for a combination that does not say where
        the inputs are."""
        forms = [bool(self.root), bool(self.images_dir or self.masks_dir), bool(self.manifest)]
        if sum(forms) != 1:
            raise ValueError("give one of: a dataset folder (with --layout), --images_dir "
                             "with --masks_dir, or --manifest")
        if bool(self.images_dir) != bool(self.masks_dir):
            raise ValueError("--images_dir and --masks_dir go together")
        if self.manifest and (self.layout or self.fov_dir):
            raise ValueError("--manifest names every file itself: drop --layout/--fov_dir "
                             "(FOV masks go in its fov column)")
        layout = get_layout(self.layout or "stare") if self.root else get_layout(self.layout)
        if self.root and self.fov_dir and (len(layout.groups) != 1 or layout.groups[0].fov):
            raise ValueError(f"--fov_dir: the {layout.name} layout says where its FOV "
                             "masks are (--fov_dir adds FOV masks to layouts without them: "
                             "stare, chase_db1)")

    def parameters(self) -> dict[str, str]:
        """The non-empty fields, as recorded in dataset_info.json."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v}


def find_pairs(source: Source, ignored: Optional[list[Ignored]] = None
               ) -> tuple[list[ImagePair], list[InputProblem]]:
    """The pairs and problems of `source` (see Source); raises ValueError for a bad
    combination and InputDirError for a missing folder or unusable manifest. Files left
    out on purpose are appended to `ignored` (when given; see `ignored_note`)."""
    source.check()
    if source.manifest:
        return read_manifest(source.manifest)
    if source.root:
        return discover(source.root, source.layout or "stare", source.fov_dir, ignored)
    return pair_folders(source.images_dir, source.masks_dir, source.layout, source.fov_dir,
                        ignored=ignored)


# ------------------------------------------------------------------------- segmentation

def match_truths(image_paths: Sequence[str], masks_dir: str, layout: Optional[str] = None,
                 fov_dir: Optional[str] = None, ignored: Optional[list[Ignored]] = None
                 ) -> tuple[dict[str, ImagePair], list[InputProblem]]:
    """Ground truth for photographs being segmented: {output stem: ImagePair} of those
    whose mask (and FOV mask, with `fov_dir`) is found, named by `layout`'s rules (the
    output stem is `imaging.image_stem`, the name vessel-segment writes).

    Photographs without a mask are not problems here (they are segmented without
    metrics); the problems are the unusable files of masks_dir / fov_dir. Files there
    that the layout explains (CHASE_DB1 keeps its photographs and second observer beside
    the masks) or that are plainly not photographs are appended to `ignored` instead.

    Raises:
      InputDirError: masks_dir (or fov_dir) is not a folder.
    """
    spec = get_layout(layout)
    for folder, flag in ((masks_dir, "--masks_dir"), (fov_dir, "--fov_dir")):
        if folder and not is_dir(folder):
            raise InputDirError(f"{flag} {folder}: not a folder")
    problems: list[InputProblem] = []
    shared = masks_dir == fov_dir
    others = ("image", "second_mask", "fov")
    masks = _index(masks_dir, spec, "mask", "mask", problems, shared=shared, ignored=ignored,
                   explained=others)
    fovs = {}
    if fov_dir:
        fov_layout = spec if spec.roles.fov else FOLDERS
        fovs = _index(fov_dir, fov_layout, "fov", "FOV mask", problems, shared=shared,
                      ignored=None if shared else ignored, explained=("image", "mask", "second_mask"))
    out = {}
    for path in image_paths:
        key = spec.roles.key("image", stem_of(path))
        if key is None or key not in masks:
            continue
        stem = imaging.image_stem(path)  # the name segmentation outputs get
        out[stem] = ImagePair(stem, path, masks[key], fovs.get(key))
    return out, problems


# ---------------------------------------------------------------------------- splits

def given_splits(pairs: Iterable[ImagePair]) -> dict[str, list[str]]:
    """{split: sorted image ids} of the pairs whose input assigns a split."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        if pair.split:
            out.setdefault(pair.split, []).append(pair.image_id)
    return {k: sorted(v) for k, v in sorted(out.items())}


def split_ids_from_inputs(pairs: Sequence[ImagePair], valid_fraction: float, seed: int
                          ) -> Optional[tuple[list[str], list[str]]]:
    """(valid ids, test ids) honouring the splits the inputs assign (a manifest's split
    column, DRIVE's training/ and test/ folders), or None when no input assigns one.

    Images assigned "test" or "valid" keep it. When no image is assigned "valid", a
    `valid_fraction` share (at least one) of the other images is drawn for validation,
    sorted ids shuffled with numpy's Generator(seed), as the image-level split does; all
    remaining images train.
    """
    given = given_splits(pairs)
    if not given:
        return None
    test_ids = given.get("test", [])
    valid_ids = given.get("valid", [])
    if not valid_ids:
        pool = sorted(p.image_id for p in pairs if p.split not in ("test", "valid"))
        count = min(len(pool) - 1, max(1, round(valid_fraction * len(pool))))
        if count > 0:
            order = np.random.default_rng(seed).permutation(len(pool))
            valid_ids = sorted(pool[i] for i in order[:count])
    return list(valid_ids), list(test_ids)

"""Finds (photograph, vessel mask) pairs in a STARE folder or in two folders paired by stem.

Layouts:
  * STARE: `DIR/stare-images/imNNNN.ppm.gz` with `DIR/labels-ah/imNNNN.ah.ppm.gz`;
  * two folders: `--images_dir` and `--masks_dir`, paired by file stem (the name up to the
    first dot), e.g. `enlarged/images/im0001.jpg` with `enlarged/masks/im0001.jpg`.

Listing goes through Beam's FileSystems, so gs:// folders work. Unpaired files, non-image
files, duplicate ids and empty folders are returned as `InputProblem`s (they become lines
of errors.jsonl); only a missing top-level folder raises.
"""
from __future__ import annotations

import dataclasses
import posixpath

from tiled_vessel_seg import imaging

STARE_IMAGES = "stare-images"
STARE_LABELS = "labels-ah"


class InputDirError(ValueError):
    """A top-level input folder that does not exist (reported as a one-line error)."""


@dataclasses.dataclass(frozen=True)
class ImagePair:
    image_id: str
    image_path: str
    mask_path: str


@dataclasses.dataclass(frozen=True)
class InputProblem:
    """One rejected input: becomes a line {path, stage, reason} of errors.jsonl."""
    path: str
    stage: str
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def image_id_of(path: str) -> str:
    """'x/labels-ah/im0001.ah.ppm.gz' -> 'im0001' (the file name up to its first dot)."""
    return posixpath.basename(path.rstrip("/")).split(".", 1)[0]


def _is_remote(path: str) -> bool:
    return "://" in path


def _join(base: str, name: str) -> str:
    if _is_remote(base):
        return posixpath.join(base, name)
    import os
    return os.path.join(base, name)


def dir_exists(path: str) -> bool:
    """True for an existing local folder; remote prefixes (gs://) always count as existing."""
    if _is_remote(path):
        return True
    import os
    return os.path.isdir(path)


def list_files(directory: str) -> list[str]:
    """Sorted paths of the files directly inside `directory` (local or gs://)."""
    from apache_beam.io.filesystems import FileSystems
    pattern = _join(directory, "*")
    results = FileSystems.match([pattern])[0].metadata_list
    paths = sorted(m.path for m in results)
    if _is_remote(directory):
        prefix = directory.rstrip("/") + "/"
        return [p for p in paths if "/" not in p[len(prefix):] and not p.endswith("/")]
    import os
    return [p for p in paths if os.path.isfile(p)]


def _index(directory: str, role: str, problems: list[InputProblem]) -> dict[str, str]:
    """{image id: path} of the image files in `directory`; other files become problems."""
    files = [p for p in list_files(directory)
             if not posixpath.basename(p).startswith(".")]  # hidden files: .DS_Store etc.
    if not files:
        problems.append(InputProblem(directory, "discover", f"empty {role} folder: no files"))
        return {}
    found: dict[str, str] = {}
    for path in files:
        if imaging.image_extension(path) is None:
            problems.append(InputProblem(path, "discover", f"not an image file ({role} folder)"))
            continue
        key = image_id_of(path)
        if key in found:
            problems.append(InputProblem(path, "discover",
                                         f"duplicate {role} for id {key!r} (also {found[key]})"))
            continue
        found[key] = path
    return found


def pair_folders(images_dir: str, masks_dir: str) -> tuple[list[ImagePair], list[InputProblem]]:
    """Pairs photographs and masks by id.

    Returns:
      pairs sorted by image id, and the problems (unpaired image or mask, non-image file,
      duplicate id, empty or missing folder).

    Raises:
      InputDirError: `images_dir` does not exist (nothing could be processed at all).
    """
    if not dir_exists(images_dir):
        raise InputDirError(f"input folder {images_dir} does not exist")
    problems: list[InputProblem] = []
    images = _index(images_dir, "image", problems)
    if dir_exists(masks_dir):
        masks = _index(masks_dir, "mask", problems)
    else:
        problems.append(InputProblem(masks_dir, "discover", "mask folder does not exist"))
        masks = {}
    pairs = []
    for key in sorted(images):
        if key in masks:
            pairs.append(ImagePair(key, images[key], masks[key]))
        else:
            problems.append(InputProblem(images[key], "discover",
                                         f"unpaired image: no mask for id {key!r} in {masks_dir}"))
    for key in sorted(set(masks) - set(images)):
        problems.append(InputProblem(masks[key], "discover",
                                     f"unpaired mask: no image for id {key!r} in {images_dir}"))
    return pairs, problems


def discover_stare(stare_dir: str) -> tuple[list[ImagePair], list[InputProblem]]:
    """Pairs `stare-images/` with `labels-ah/` under `stare_dir` (see `pair_folders`)."""
    if not dir_exists(stare_dir):
        raise InputDirError(f"input folder {stare_dir} does not exist")
    images_dir = _join(stare_dir, STARE_IMAGES)
    if not dir_exists(images_dir):
        raise InputDirError(f"{stare_dir} is not a STARE folder: it has no {STARE_IMAGES}/ "
                            f"(use --images_dir and --masks_dir for other layouts)")
    return pair_folders(images_dir, _join(stare_dir, STARE_LABELS))

"""The input-source flags, defined once for vessel-preprocess, vessel-run, vessel-cv (all of
them) and vessel-segment (--layout, --fov_dir, --manifest, --masks_dir).

  --source NAME:DIR                  repeatable: several datasets in one run (sources.py)
  --stare_dir DIR                    a STARE folder as distributed
  --dataset_dir DIR [--layout L]     a dataset folder as distributed, in layout L
  --images_dir D --masks_dir M       two folders paired by --layout's names, else by stem
  --manifest CSV                     image,mask[,fov][,split][,dataset][,subject]
  --fov_dir DIR                      FOV masks for a layout without them

`sources_from_flags` turns the flags given into datasets.Source objects.
"""
from __future__ import annotations

from typing import Sequence

from absl import app, flags

from tiled_vessel_seg import datasets, sources

FLAGS = flags.FLAGS

ALL = ("source", "stare_dir", "dataset_dir", "layout", "images_dir", "masks_dir", "fov_dir",
       "manifest")
LAYOUT_HELP = ("stare (stare-images/im0001.ppm.gz, labels-ah/im0001.ah.ppm.gz), drive "
               "(training|test/images/21_training.tif, 1st_manual/21_manual1.gif, "
               "mask/21_training_mask.gif; its training/test split is kept), chase_db1 "
               "(Image_01L.jpg, Image_01L_1stHO.png; both eyes of a child are one subject), "
               "hrf (images/01_dr.JPG, manual1/01_dr.tif, mask/01_dr_mask.tif)")
HELP = {
    "source": "A dataset in one run with others, NAME:DIR, repeatable: NAME is its layout "
              f"and name ({', '.join(datasets.LAYOUT_NAMES)}), DIR its folder as "
              "distributed (local or gs://), e.g. --source stare:data/stare --source "
              "chase_db1:data/chase_db1. Records carry the dataset name ([train] "
              "dataset_weights), splits and folds keep a subject's photos together.",
    "stare_dir": "A folder in STARE layout (stare-images/, labels-ah/; local or gs://); "
                 "same as --source stare:DIR.",
    "dataset_dir": "A dataset folder as distributed, in --layout (local or gs://).",
    "layout": "How a dataset names its files, for --dataset_dir (default stare) or for "
              "--images_dir/--masks_dir/--fov_dir (default: pairing by file stem): "
              + LAYOUT_HELP + ".",
    "images_dir": "Folder of photographs, paired with --masks_dir by --layout's file names, "
                  "else by file stem.",
    "masks_dir": "Folder of vessel masks (grey > 127 is vessel), paired with the photographs "
                 "by --layout's file names, else by stem (im0001.png, STARE's "
                 "im0001.ah.ppm.gz).",
    "fov_dir": "Field-of-view masks, named by --layout, else like the image with an "
               "optional _mask/_fov suffix, for a layout that ships none (STARE, CHASE_DB1) "
               "or for --images_dir/--masks_dir; else the FOV is computed from the photo.",
    "manifest": "CSV with columns image,mask[,fov][,split][,dataset][,subject], paths "
                "relative to the CSV; bad rows are reported by row number. A split column "
                "fixes each image's split, a dataset column names each row's dataset, a "
                "subject column the person photographed.",
}


def define_flags(names: Sequence[str] = ALL, help_overrides: dict | None = None) -> None:
    """Defines the named input flags (all by default) with their one help text;
    `help_overrides` may add a tool's own sentence to a flag's help."""
    extra = help_overrides or {}
    for name in names:
        text = HELP[name] + (" " + extra[name] if name in extra else "")
        if name == "source":
            flags.DEFINE_multi_string(name, None, text)
        elif name == "layout":
            flags.DEFINE_enum(name, None, list(datasets.LAYOUT_NAMES), text)
        else:
            flags.DEFINE_string(name, None, text)


def given() -> bool:
    """True when any input-source flag was given."""
    return any(getattr(FLAGS, name, None) for name in ALL)


def sources_from_flags() -> list[datasets.Source]:
    """The datasets.Source of each input the flags name ([] when none is given).

    Raises app.UsageError for a combination that does not say where the inputs are.
    """
    single = {name: getattr(FLAGS, name) for name in ALL if name != "source"}
    if FLAGS.source:
        extra = [f"--{name}" for name, value in single.items() if value]
        if extra:
            raise app.UsageError(f"--source names each dataset with its folder: drop "
                                 f"{', '.join(extra)} (or describe every input in one "
                                 "--manifest with a dataset column)")
        try:
            listed = [sources.parse_source(text) for text in FLAGS.source]
            sources.check(listed)
        except ValueError as e:
            raise app.UsageError(str(e)) from None
        return listed
    if not any(single.values()):
        return []
    if FLAGS.stare_dir and (FLAGS.dataset_dir or FLAGS.layout not in (None, "stare")):
        raise app.UsageError("--stare_dir is a STARE folder: use --dataset_dir with --layout "
                             "for other datasets (or --source NAME:DIR)")
    source = datasets.Source(root=FLAGS.stare_dir or FLAGS.dataset_dir,
                             layout="stare" if FLAGS.stare_dir else FLAGS.layout,
                             images_dir=FLAGS.images_dir, masks_dir=FLAGS.masks_dir,
                             manifest=FLAGS.manifest, fov_dir=FLAGS.fov_dir)
    try:
        source.check()
    except ValueError as e:
        raise app.UsageError(f"{e} (--stare_dir and --dataset_dir are dataset folders)") \
            from None
    return [source]

"""Pretrained models shipped with the package, and where a `--model` value points.

A shipped model is a folder next to this file holding what `vessel-train` writes
(best_model.keras + model_info.json) and its MODEL_CARD.md. `resolve_model` turns what a
user typed (a shipped name such as "fundus_small", or a model directory) into a model
directory that `inference.predictor.load_predictor` reads.

The default is `fundus_small`, trained on two cameras (STARE and CHASE_DB1, each photo
resampled to a 650 px field of view), because a user's photographs come from their own
camera: held out by child it scores 0.79 F1 on CHASE_DB1 photographs where the STARE-only
`stare_small` scores 0.71, and about 0.02 less than `stare_small` on STARE's own photos
(docs/results.md, "Other cameras"). `stare_small` stays available by name.
"""
from __future__ import annotations

import os

from tiled_vessel_seg.names import MODEL_INFO_FILE as _INFO_FILE

DEFAULT_MODEL = "fundus_small"
_HERE = os.path.dirname(os.path.abspath(__file__))


class UnknownModelError(ValueError):
    """A --model value that is neither a shipped model nor a model directory."""


def shipped_models() -> list[str]:
    """Names of the models shipped in this package, sorted."""
    return sorted(name for name in os.listdir(_HERE)
                  if os.path.isfile(os.path.join(_HERE, name, _INFO_FILE)))


def shipped_model_dir(name: str) -> str:
    """The installed folder of shipped model `name` (no check that it exists)."""
    return os.path.join(_HERE, name)


def resolve_model(model: str | os.PathLike | None = None) -> str:
    """A model directory for `model`; None means DEFAULT_MODEL.

    A path (anything holding a "/" or os.sep, or an existing folder) is returned as given:
    the predictor then says what it lacks. A bare name is a shipped model.

    Raises UnknownModelError for a bare name that is not shipped, naming the shipped ones.
    """
    value = DEFAULT_MODEL if model is None else os.fspath(model)
    if "/" in value or os.sep in value or os.path.isdir(value):
        return value
    if value in shipped_models():
        return shipped_model_dir(value)
    raise UnknownModelError(
        f"model {value!r}: not a folder and not a shipped model (shipped: "
        f"{', '.join(shipped_models()) or 'none'}); give a folder holding "
        f"best_model.keras and {_INFO_FILE}, as written by vessel-train")


MODEL_FLAG_HELP = (f"A shipped model name ({DEFAULT_MODEL}, stare_small) or a model directory "
                   f"written by vessel-train (best_model.keras + model_info.json, local or gs://); "
                   f"default: the shipped {DEFAULT_MODEL}. --model_dir is an alias.")


def resolve_model_flag(tool: str, value: str | None) -> str:
    """The model dir for a tool's --model flag; with no flag, prints as the tool's first
    line that the shipped default model is used. Raises UnknownModelError."""
    model_dir = resolve_model(value)
    if value is None:
        print(f"{tool}: no --model given: using the shipped model {DEFAULT_MODEL} "
              f"({model_dir})", flush=True)
    return model_dir

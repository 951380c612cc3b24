"""Flags shared by the trainer's tools (vessel-train, vessel-evaluate), for cli_app.

Keras' progress output is `--keras_verbose auto|0|1|2`: every tool's `--verbose` is
cli_app's switch for debug logs. The argparse versions of these tools spelled Keras'
verbosity `--verbose N`; `accept_old_verbose` keeps such command lines working.
"""
from __future__ import annotations

import sys

from absl import flags

from tiled_vessel_seg import cli_app, models, storage
from tiled_vessel_seg.names import MODEL_INFO_FILE

FLAGS = flags.FLAGS
KERAS_VERBOSITY = ("auto", "0", "1", "2")


def define_keras_verbose() -> None:
    flags.DEFINE_enum("keras_verbose", "auto", list(KERAS_VERBOSITY),
                      "Keras progress: 1 = a progress bar, 2 = one line per epoch, 0 = none; "
                      "auto = 1 on a terminal, else 2 (formerly --verbose N).")


def define_init_model() -> None:
    flags.DEFINE_string("init_model", None, "Fine-tune: start from the weights of a shipped "
                        "model (stare_small) or a model dir written by vessel-train (local or "
                        "gs://) instead of random ones. The config's [model] must build the "
                        "same architecture (for stare_small: --config stare_small). Same as "
                        "--set train.init_model=NAME|DIR; default: random weights.")


def init_model_value() -> str | None:
    """--init_model, checked now so that a wrong name stops the tool before any work:
    a shipped name or a folder holding model_info.json. Raises cli_app.ToolError."""
    if not FLAGS.init_model:
        return None
    try:
        folder = models.resolve_model(FLAGS.init_model)
    except models.UnknownModelError as e:
        raise cli_app.ToolError(f"--init_model: {e}") from None
    if not storage.exists(storage.join(folder, MODEL_INFO_FILE)):
        raise cli_app.ToolError(f"--init_model {FLAGS.init_model}: no {MODEL_INFO_FILE} in "
                                f"{folder}: give a model dir written by vessel-train or a "
                                f"shipped model ({', '.join(models.shipped_models())})")
    return FLAGS.init_model


def keras_verbose() -> int:
    """--keras_verbose as the `verbose` argument of Keras' fit/evaluate."""
    if FLAGS.keras_verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(FLAGS.keras_verbose)


def accept_old_verbose(argv: list[str]) -> list[str]:
    """`--verbose N` / `--verbose=N` (N in auto, 0, 1, 2) -> `--keras_verbose=N`, with a
    note; a bare `--verbose` stays cli_app's debug switch."""
    out, i = [], 0
    while i < len(argv):
        arg, value = argv[i], None
        if arg.startswith("--verbose=") and arg.split("=", 1)[1] in KERAS_VERBOSITY:
            value = arg.split("=", 1)[1]
        elif arg == "--verbose" and i + 1 < len(argv) and argv[i + 1] in KERAS_VERBOSITY:
            value = argv[i + 1]
            i += 1
        if value is None:
            out.append(arg)
        else:
            print(f"note: --verbose {value} is spelled --keras_verbose {value} now; accepted",
                  file=sys.stderr)
            out.append(f"--keras_verbose={value}")
        i += 1
    return out

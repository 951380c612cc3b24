"""Console entry points for absl-flags tools (`vessel-segment`, `vessel-export`)."""
from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags


def run_tool(module_name: str, doc: str, define_flags: Callable[[], None],
             main: Callable[[list], int]) -> None:
    """Defines the tool's flags, makes `--help` show them and its docstring, runs `main`.

    Flags are defined here, not at import, because the tools share flag names and must
    both import in one process.
    """
    define_flags()
    # --help lists the main module's key flags; for a console script that is the script.
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    sys.modules["__main__"].__doc__ = doc
    app.run(main)

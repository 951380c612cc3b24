"""The one shape of every console tool: absl flags -> config with overrides -> library.

    def define_flags():                 # the tool's own flags, defined at run time
        flags.DEFINE_string("output_dir", None, "...")

    def main(argv):                     # flags are parsed; returns the exit code
        config = tool_config.load_config()  # configs/: --config FILE, then --set
        ...

    def run():                          # the console-script entry point
        cli_app.run(__name__, __doc__, define_flags, main)

What every tool gets from `run`:
* `--help` (also -h, --helpshort) prints the tool's docstring and its flags with their
  defaults, and exits 0; `--helpfull` adds absl's own flags.
* the common flags: --config, --set (repeatable), --verbose. `with_config=False` leaves
  out --config/--set for a tool no config section applies to.
* TensorFlow's C++ start-up lines are off (tiled_vessel_seg/__init__.py sets
  TF_CPP_MIN_LOG_LEVEL=3 before anything imports TensorFlow); --verbose turns them back
  on, when TensorFlow has not been imported yet, and shows debug logs.
* an error raised as `ToolError`, or a `storage.StorageError` (a path that cannot be
  read or written: read-only folder, full disk), prints "error: ..." on one line and
  exits 2; so does a usage error (missing required flag).
* `pass_unknown_flags=True` hands flags absl does not know to `main` in argv (Beam's
  --runner, --project ... for PipelineOptions) instead of refusing them.

* `invoke(...)` runs a tool in-process (tests, notebooks) and returns its exit code.

Flags are defined when the tool runs, not at import, so tools sharing flag names can be
imported in one process (tests, notebooks).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Optional

from absl import app, flags

from tiled_vessel_seg import storage

FLAGS = flags.FLAGS
HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")
COMMON_FLAGS = ("config", "set", "verbose")


class ToolError(Exception):
    """A problem the user can fix (bad path, bad config ...): printed as one line, exit 2."""


def define_common_flags(with_config: bool = True) -> None:
    """Defines --config and --set (with_config) and --verbose, unless already defined."""
    if with_config and "config" not in FLAGS:
        flags.DEFINE_string("config", None, "Experiment config file (INI with Python literal "
                            "values, e.g. configs/stare.config); default: built-in defaults.")
    if with_config and "set" not in FLAGS:
        flags.DEFINE_multi_string("set", [], "Config override section.key=value, repeatable, "
                                  "applied after --config (e.g. --set train.epochs=2).")
    if "verbose" not in FLAGS:
        flags.DEFINE_bool("verbose", False, "Show debug logs and TensorFlow's C++ start-up "
                          "lines (also: TF_CPP_MIN_LOG_LEVEL=0 in the environment).")


def _key_flags_for_help(module_name: str) -> None:
    # --help lists the main module's key flags; for a console script that is the script.
    main_module = sys.argv[0]
    for name in COMMON_FLAGS:
        if name in FLAGS:
            flags.FLAGS.register_key_flag_for_module(main_module, FLAGS[name])
    for flag in FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(main_module, flag)


def _wants_help(argv: list[str]) -> bool:
    args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    return any(a in HELP_FLAGS for a in args)


def _apply_verbose() -> None:
    if not FLAGS.verbose:
        return
    if "tensorflow" not in sys.modules:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    logging.getLogger().setLevel(logging.DEBUG)
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.DEBUG)


# The tool whose flags are defined in this process now, and the names it defined.
_ACTIVE: dict = {"define_flags": None, "names": set()}


def _prepare(module_name: str, doc: str, define_flags: Callable[[], None],
             with_config: bool) -> None:
    """Defines the tool's flags; another tool's, defined earlier in this process (tests,
    notebooks), are removed first, as tools share flag names."""
    define_common_flags(with_config)
    if _ACTIVE["define_flags"] is not define_flags:
        for name in _ACTIVE["names"]:
            if name in FLAGS:
                delattr(FLAGS, name)
        before = set(FLAGS)
        define_flags()
        _ACTIVE.update(define_flags=define_flags, names=set(FLAGS) - before)
    _key_flags_for_help(module_name)
    sys.modules["__main__"].__doc__ = doc


def _absl_booleans(argv: list[str]) -> list[str]:
    """argparse's `--no-NAME` for a boolean flag -> absl's `--noNAME` (with a note), so
    command lines written for the argparse versions of the tools keep working."""
    out = []
    for arg in argv:
        name = arg[5:].split("=", 1)[0] if arg.startswith("--no-") else None
        if name and name in FLAGS and isinstance(FLAGS[name], flags.BooleanFlag):
            print(f"note: {arg} is spelled --no{name} now; accepted", file=sys.stderr)
            arg = f"--no{name}"
        out.append(arg)
    return out


def _parse(argv: list[str], pass_unknown_flags: bool) -> list[str]:
    """Parses argv into FLAGS; a bad flag prints one line and exits 2."""
    try:
        return FLAGS(_absl_booleans(argv), known_only=pass_unknown_flags)
    except flags.Error as e:
        print(f"error: {e}\nTry --help.", file=sys.stderr)
        sys.exit(2)


def _call(main: Callable[[list[str]], Optional[int]], args: list[str]) -> int:
    _apply_verbose()
    try:
        return main(args) or 0
    except (ToolError, storage.StorageError) as e:
        # StorageError names the path and the OS reason (read-only, full disk ...)
        print(f"error: {e}", file=sys.stderr)
        return 2
    except app.UsageError as e:  # absl.app would exit 1, the code for rejected inputs
        print(f"error: {e}\nTry --help.", file=sys.stderr)
        return 2


def run(module_name: str, doc: str, define_flags: Callable[[], None],
        main: Callable[[list[str]], Optional[int]], *, with_config: bool = True,
        pass_unknown_flags: bool = False, argv: Optional[list[str]] = None) -> None:
    """The console-script entry: defines the flags, handles --help, parses, runs
    `main(argv)` under absl.app and exits with its code.

    `main` gets the positional arguments after the program name (argv[0] first, as
    absl.app gives them), plus the unknown flags when `pass_unknown_flags`.
    """
    argv = list(sys.argv if argv is None else argv)
    _prepare(module_name, doc, define_flags, with_config)
    if _wants_help(argv):
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)
    app.run(lambda args: _call(main, args), argv=argv,
            flags_parser=lambda args: _parse(args, pass_unknown_flags))


def invoke(module_name: str, doc: str, define_flags: Callable[[], None],
           main: Callable[[list[str]], Optional[int]], argv: list[str], *,
           with_config: bool = True, pass_unknown_flags: bool = False) -> int:
    """Runs a tool in this process (tests, notebooks) and returns its exit code.

    argv starts with the program name. Flags are reset to their defaults first, so
    tools can be invoked one after the other, many times.
    app.UsageError becomes "error: ..." and exit code 2.
    """
    _prepare(module_name, doc, define_flags, with_config)
    if _wants_help(argv):
        app.usage(shorthelp=True, writeto_stdout=True)
        return 0
    FLAGS.unparse_flags()
    args = _parse(list(argv), pass_unknown_flags)
    try:
        return _call(main, args)
    except app.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

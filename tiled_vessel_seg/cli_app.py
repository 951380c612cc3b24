"""The one shape of every console tool: absl flags -> config with overrides -> library.

    def define_flags():                 # the tool's own flags, defined at run time
        flags.DEFINE_string("output_dir", None, "...")

    def main(argv):                     # flags are parsed; returns the exit code
        config = tool_config.load_config()  # configs/: --config FILE, then --set
        ...

    def run():                          # the console-script entry point
        cli_app.run(__name__, __doc__, define_flags, main)

What every tool gets from `run`:
* `--help` (also -h, --helpshort) prints the tool's docstring and every flag the tool
  takes (its own, those of shared modules its define_flags calls, and the common ones),
  each with its default in plain words ("off", "4"), and exits 0 (`help_text`);
  `--helpfull` adds absl's own flags (logging).
* `--version` prints "<tool> <package version>" and exits 0.
* the common flags: --config, --set (repeatable), --verbose. `with_config=False` leaves
  out --config/--set for a tool no config section applies to.
* without --verbose, only the tool's own lines and real warnings reach stderr: logging
  at WARNING with library chatter dropped (tiled_vessel_seg/console.py).
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
import re
import sys
import textwrap
from typing import Callable, Optional

from absl import app, flags
from absl import logging as absl_logging

from tiled_vessel_seg import console, storage

FLAGS = flags.FLAGS
HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-?")
VERSION_FLAGS = ("--version", "-version")
COMMON_FLAGS = ("config", "set", "verbose", "version")
DISTRIBUTION = "tiled-vessel-seg"


class ToolError(Exception):
    """A problem the user can fix (bad path, bad config ...): printed as one line, exit 2."""


def define_common_flags(with_config: bool = True) -> None:
    """Defines --config and --set (with_config) and --verbose, unless already defined."""
    if with_config and "config" not in FLAGS:
        flags.DEFINE_string("config", None, "Experiment config: an INI file with Python "
                            "literal values, or the name of a shipped config (demo, stare, "
                            "stare_cpu, stare_small, ...); default: built-in defaults.")
    if with_config and "set" not in FLAGS:
        flags.DEFINE_multi_string("set", [], "Config override section.key=value, repeatable, "
                                  "applied after --config (e.g. --set train.epochs=2).")
    if "verbose" not in FLAGS:
        flags.DEFINE_bool("verbose", False, "Show debug logs, TensorFlow's and Beam's "
                          "informational lines and TensorFlow's C++ start-up lines (also: "
                          "TF_CPP_MIN_LOG_LEVEL=0 in the environment).")
    if "version" not in FLAGS:
        flags.DEFINE_bool("version", False, "Print the tool's version (the package's) and "
                          "exit.")


def version() -> str:
    """The installed package's version (setup.py), e.g. "0.2.0"."""
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


# A help text that states its own default: "(default: ...", "; default: ...".
_SAYS_DEFAULT = re.compile(r"\(default\b|\bdefault:|\bdefaults? (?:to|is)\b", re.IGNORECASE)


def _plain_default(flag) -> Optional[str]:
    """A flag's default in plain words, or None when there is nothing to say (unset)."""
    value = flag.default
    if isinstance(flag, flags.BooleanFlag):
        return "on" if value else "off"
    if value is None or value == [] or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _flag_line(flag) -> str:
    """'--name VALUE' / '--[no]name' / '--name {a|b}' / '--name VALUE (repeatable)'."""
    if isinstance(flag, flags.BooleanFlag):
        return f"--[no]{flag.name}"
    values = getattr(flag.parser, "enum_values", None)
    if values is None and hasattr(flag, "enum_values"):
        values = flag.enum_values
    arg = "{" + "|".join(values) + "}" if values else "VALUE"
    repeat = " (repeatable)" if isinstance(flag, flags.MultiFlag) else ""
    return f"--{flag.name} {arg}{repeat}"


def tool_flag_names(module_name: str) -> list[str]:
    """Every flag the current tool takes: those its define_flags defined (with the shared
    modules it calls), the module's key flags and the common ones; sorted."""
    names = set(_ACTIVE["names"]) | {n for n in COMMON_FLAGS if n in FLAGS}
    names |= {f.name for f in FLAGS.get_key_flags_for_module(module_name)}
    return sorted(n for n in names if n in FLAGS)


def help_text(module_name: str, doc: str, pass_unknown_flags: bool = False) -> str:
    """The tool's --help: its docstring, then each flag it takes with its help and its
    default in plain words (a help text that already says its default keeps its own)."""
    wrap = textwrap.TextWrapper(width=88, initial_indent="      ", subsequent_indent="      ")
    out = [(doc or "").strip(), "", "flags:"]
    aliases = {}
    for name in tool_flag_names(module_name):
        flag = FLAGS[name]
        if type(flag).__name__ == "_FlagAlias":
            aliases[name] = flag
            continue
        text = " ".join((flag.help or "").split())
        text = re.sub(r"^<[^>]*>: ", "", text)  # absl's enum prefix: the line shows them
        text = re.sub(r";? ?repeat this option to specify a list of values$", "", text)
        default = None if name == "version" else _plain_default(flag)
        if default is not None and not _SAYS_DEFAULT.search(text):
            text = f"{text.rstrip('.')}. Default: {default}."
        out.append("  --version" if name == "version" else f"  {_flag_line(flag)}")
        out.extend(wrap.wrap(text) or [""])
    for name, flag in sorted(aliases.items()):
        target = getattr(flag, "_FlagAlias__original_name", None) or flag.help
        out.append(f"  --{name}")
        out.extend(wrap.wrap(f"Another name for --{target}."
                             if target and target in FLAGS else " ".join(flag.help.split())))
    out.append("")
    if pass_unknown_flags:
        out.append("Flags this tool does not know go to Apache Beam's PipelineOptions "
                   "(--runner, --project, --region, --temp_location, ...).")
    out.append("--helpfull also lists absl's own flags (logging).")
    return "\n".join(out) + "\n"


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


def _wants_version(argv: list[str]) -> bool:
    args = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    return any(a in VERSION_FLAGS or a in ("--version=true", "--version=True") for a in args)


def _program(argv: list[str]) -> str:
    return os.path.basename(argv[0]) if argv else "tool"


def _apply_verbose() -> None:
    if not FLAGS.verbose:
        console.quiet_logging()  # our lines and real warnings only
        return
    if "tensorflow" not in sys.modules:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    logging.getLogger().setLevel(logging.DEBUG)
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


_COMMAND: list[str] = []


def _remember_command(argv: list[str]) -> None:
    _COMMAND[:] = [os.path.basename(argv[0]) if argv else "", *argv[1:]]


def command_line() -> str:
    """The running tool's command as typed, program name first ("vessel-cv --folds 5"):
    for reports. In process (invoke) the argv given, not the host's sys.argv."""
    return " ".join(_COMMAND)


def run(module_name: str, doc: str, define_flags: Callable[[], None],
        main: Callable[[list[str]], Optional[int]], *, with_config: bool = True,
        pass_unknown_flags: bool = False, argv: Optional[list[str]] = None) -> None:
    """The console-script entry: defines the flags, handles --help, parses, runs
    `main(argv)` under absl.app and exits with its code.

    `main` gets the positional arguments after the program name (argv[0] first, as
    absl.app gives them), plus the unknown flags when `pass_unknown_flags`.
    """
    argv = list(sys.argv if argv is None else argv)
    _remember_command(argv)
    _prepare(module_name, doc, define_flags, with_config)
    if _wants_help(argv):
        sys.stdout.write(help_text(module_name, doc, pass_unknown_flags))
        sys.exit(0)
    if _wants_version(argv):
        print(f"{_program(argv)} {version()}")
        sys.exit(0)
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
    _remember_command(argv)
    _prepare(module_name, doc, define_flags, with_config)
    if _wants_help(argv):
        sys.stdout.write(help_text(module_name, doc, pass_unknown_flags))
        return 0
    if _wants_version(argv):
        print(f"{_program(argv)} {version()}")
        return 0
    FLAGS.unparse_flags()
    args = _parse(list(argv), pass_unknown_flags)
    try:
        return _call(main, args)
    except app.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

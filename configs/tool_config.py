"""The config a console tool runs with: `--config FILE`, then every `--set
section.key=value`, then the tool's own flags on top.

The flags --config and --set are defined by `cli_app` (the one shape of every tool, on
the ground floor); reading them into a typed `schema.Config` is this stage's job, so
the ground floor imports no config code.

`--config` takes a file, or the name of a config shipped in this package ("demo",
"stare_cpu.config"; `shipped_configs`), resolved as `--model stare_small` is: so
`vessel-synth --config demo` works outside the clone, where no configs/ folder is.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

from absl import flags

from tiled_vessel_seg import cli_app
from tiled_vessel_seg.configs import config_file, schema


CONFIG_SUFFIX = ".config"
_SHIPPED_DIR = os.path.dirname(os.path.abspath(__file__))


def shipped_configs() -> list[str]:
    """Names of the configs shipped in this package ("demo", "stare", ...), sorted."""
    return sorted(n[:-len(CONFIG_SUFFIX)] for n in os.listdir(_SHIPPED_DIR)
                  if n.endswith(CONFIG_SUFFIX))


def resolve_config(value: Optional[str]) -> Optional[str]:
    """The file a --config value names: an existing file as given; else a shipped config
    named by it ("demo", "demo.config", or "configs/demo.config" outside the clone).
    A value that is neither is returned as given, for the reader to name as missing."""
    if not value or os.path.isfile(value) or "://" in value:
        return value
    head, name = os.path.split(value)
    name = name[:-len(CONFIG_SUFFIX)] if name.endswith(CONFIG_SUFFIX) else name
    if head in ("", "configs") and name in shipped_configs():
        return os.path.join(_SHIPPED_DIR, name + CONFIG_SUFFIX)
    return value


def _config_path() -> Optional[str]:
    parsed = flags.FLAGS
    return resolve_config(parsed["config"].value if "config" in parsed else None)


def given_keys(section: str) -> set[str]:
    """The keys of `section` that --config's file or a --set names (not the defaults)."""
    parsed = flags.FLAGS
    path = _config_path()
    overrides = parsed["set"].value if "set" in parsed else []
    try:
        return {key for name, key in config_file.given_keys(path, overrides or ())
                if name == section}
    except config_file.ConfigError as e:
        raise cli_app.ToolError(str(e)) from None


def load_config(values: Optional[Mapping[str, Any]] = None) -> schema.Config:
    """The config of --config and --set, then `values` {'section.key': value} on top
    (tool flags; None values are skipped). Raises cli_app.ToolError naming the problem."""
    parsed = flags.FLAGS
    path = _config_path()
    overrides = parsed["set"].value if "set" in parsed else []
    try:
        config = config_file.load_config(path, overrides or ())
        return config_file.with_overrides(config, dict(values or {}))
    except config_file.ConfigError as e:
        hint = (f" (--config takes a file or a shipped config: {', '.join(shipped_configs())})"
                if path and "config file not found" in str(e) else "")
        raise cli_app.ToolError(f"{e}{hint}") from None

"""The config a console tool runs with: `--config FILE`, then every `--set
section.key=value`, then the tool's own flags on top.

The flags --config and --set are defined by `cli_app` (the one shape of every tool, on
the ground floor); reading them into a typed `schema.Config` is this stage's job, so
the ground floor imports no config code.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from absl import flags

from tiled_vessel_seg import cli_app
from tiled_vessel_seg.configs import config_file, schema


def given_keys(section: str) -> set[str]:
    """The keys of `section` that --config's file or a --set names (not the defaults)."""
    parsed = flags.FLAGS
    path = parsed["config"].value if "config" in parsed else None
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
    path = parsed["config"].value if "config" in parsed else None
    overrides = parsed["set"].value if "set" in parsed else []
    try:
        config = config_file.load_config(path, overrides or ())
        return config_file.with_overrides(config, dict(values or {}))
    except config_file.ConfigError as e:
        raise cli_app.ToolError(str(e)) from None

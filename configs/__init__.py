"""The experiment config: the reference INI format read safely into typed dataclasses."""
import os

from tiled_vessel_seg.configs.config_file import ConfigError, load_config, to_dict, with_overrides, write_config
from tiled_vessel_seg.configs.schema import Config

CONFIG_DIR = os.path.dirname(os.path.abspath(__file__))


def shipped_config(name: str) -> str:
    """Path of a config shipped in this folder, e.g. shipped_config('stare')."""
    return os.path.join(CONFIG_DIR, name if name.endswith(".config") else name + ".config")

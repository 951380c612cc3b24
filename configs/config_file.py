"""Reads the reference experiment's INI config (`train_eval_infer.config`) safely.

The file format is the one its users already have: INI sections ([model], [train],
[eval], [test], [infer], [tiledinfer], [segmentation], [image], [mask], ...) whose
values are Python literals (`base_kernels = (9,9)`, `model_dir = "./models"`).
Values are parsed with `ast.literal_eval` only - nothing is ever executed - and
checked against the typed dataclasses in `configs.schema`.

* an unknown section or key is a warning naming file, section and key (the reference
  files carry many keys this tool has no use for, e.g. [augmentor] or [generator]);
* a value that is not a literal, or not of the field's type, is a `ConfigError` naming
  file, section, key and the expected type.
"""
from __future__ import annotations

import ast
import configparser
import dataclasses
import logging
import os
import types
import typing
from typing import Any, Iterable, Mapping

from tiled_vessel_seg import storage
from tiled_vessel_seg.configs import schema

_LOG = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config file or override that cannot be used as it is."""


ECHO_LIMIT = 80  # characters of a bad value quoted back in an error message


def _clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text`, or its first `limit` characters and its length: a 400 KB value must not
    be echoed whole."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is None:
        return getattr(tp, "__name__", repr(tp))
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"tuple of {_type_name(args[0])}"
    inner = ", ".join(_type_name(a) for a in args)
    return f"{origin.__name__}[{inner}]"


def coerce(value: Any, tp: Any) -> Any:
    """Returns `value` checked (and mildly converted) to type `tp`, else raises TypeError.

    Accepted conversions are the lossless ones a user writes by habit: an int where a
    float is expected, a list where a tuple is expected.
    """
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return coerce(value, arg)
            except TypeError:
                continue
        raise TypeError(_type_name(tp))
    if tp is type(None):
        if value is None:
            return None
        raise TypeError("None")
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            raise TypeError(_type_name(tp))
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise TypeError(_type_name(tp))
        return tuple(coerce(v, a) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(_type_name(tp))
        return {coerce(k, args[0]): coerce(v, args[1]) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("bool")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("int")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError("float")
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError("str")
    raise TypeError(_type_name(tp))


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_cls)}


def parse_value(text: str, tp: Any, where: str) -> Any:
    """Parses one raw INI value as a Python literal of type `tp`.

    A bare word where a string is expected (`blend = gaussian`, or a `--set` override
    typed without quotes) is taken as that string.
    """
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as e:
        if _accepts_str(tp) and text.strip() and not any(c in text for c in "()[]{}'\""):
            value = text.strip()
        else:
            raise ConfigError(
                f"{where}: {_clip(repr(text.strip()))} is not a Python literal "
                f"(expected {_type_name(tp)}): {e.__class__.__name__}") from None
    try:
        return coerce(value, tp)
    except TypeError:
        raise ConfigError(
            f"{where}: {_clip(repr(value))} is a {type(value).__name__}, "
            f"expected {_type_name(tp)}"
        ) from None


def _accepts_str(tp: Any) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)


def _read_parser(path: str) -> configparser.ConfigParser:
    # Interpolation is off: '%' in paths must stay literal. Keys keep their case.
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    parser.optionxform = str  # type: ignore[assignment]
    try:
        text = _read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        parser.read_string(text, source=path)
    except configparser.Error as e:
        raise ConfigError(
            f"{path}: not a valid INI file: {_clip(str(e), 4 * ECHO_LIMIT)}") from None
    return parser


def _read_text(path: str) -> str:
    """The file's text, local or gs:// (storage: local reads stay TensorFlow-free)."""
    if not storage.exists(path):
        raise FileNotFoundError(path)
    try:
        return storage.read_text(path)
    except storage.StorageError as e:
        raise ConfigError(str(e)) from None


def load_config(path: str | os.PathLike | None = None,
                overrides: Iterable[str] = ()) -> schema.Config:
    """Reads `path` (or the built-in defaults when None) and applies `overrides`.

    Args:
      path: an INI file in the reference format; None gives `schema.Config()`.
      overrides: strings `section.key=value`, value a Python literal (bare words are
        strings), applied after the file - this is how command-line flags win.

    Returns:
      A frozen `schema.Config`.

    Raises:
      ConfigError: naming file, section, key and expected type of a bad value.
    """
    sections: dict[str, dict[str, Any]] = {}
    source = str(path) if path is not None else "<defaults>"
    section_classes = schema.section_classes()
    if path is not None:
        parser = _read_parser(str(path))
        for section in parser.sections():
            cls = section_classes.get(section)
            if cls is None:
                _LOG.warning("%s: unknown section [%s] ignored", source, section)
                continue
            types_ = _field_types(cls)
            values = sections.setdefault(section, {})
            for key, raw in parser.items(section):
                if key not in types_:
                    _LOG.warning("%s: [%s] unknown key %r ignored", source, section, key)
                    continue
                values[key] = parse_value(raw, types_[key], f"{source}: [{section}] {key}")
    for item in overrides:
        section, key, raw = split_override(item)
        cls = section_classes.get(section)
        if cls is None:
            raise ConfigError(f"override {_clip(repr(item))}: unknown section [{section}]; "
                              f"known: {', '.join(sorted(section_classes))}")
        types_ = _field_types(cls)
        if key not in types_:
            raise ConfigError(f"override {_clip(repr(item))}: [{section}] has no key "
                              f"{_clip(repr(key))}; "
                              f"known: {', '.join(sorted(types_))}")
        sections.setdefault(section, {})[key] = parse_value(
            raw, types_[key], f"override: [{section}] {key}")
    try:
        return schema.Config(**{name: section_classes[name](**vals)
                                for name, vals in sections.items()})
    except ValueError as e:  # __post_init__ checks of ranges and combinations
        raise ConfigError(f"{source}: {_clip(str(e), 4 * ECHO_LIMIT)}") from None


def split_override(item: str) -> tuple[str, str, str]:
    """'train.epochs=2' -> ('train', 'epochs', '2')."""
    name, sep, raw = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not section or not key:
        raise ConfigError(f"override {_clip(repr(item))}: expected section.key=value")
    return section, key.strip(), raw


def with_overrides(config: schema.Config, values: Mapping[str, Any]) -> schema.Config:
    """Returns `config` with typed values {'section.key': value} replaced (flags -> config).

    Values are Python objects (not strings); None values are skipped, so an unset
    command-line flag leaves the config's value alone.
    """
    section_classes = schema.section_classes()
    updates: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        if value is None:
            continue
        section, _, key = name.partition(".")
        types_ = _field_types(section_classes[section])
        try:
            updates.setdefault(section, {})[key] = coerce(value, types_[key])
        except TypeError:
            raise ConfigError(f"{name}: {_clip(repr(value))} is a {type(value).__name__}, "
                              f"expected {_type_name(types_[key])}") from None
    try:
        return dataclasses.replace(config, **{
            section: dataclasses.replace(getattr(config, section), **vals)
            for section, vals in updates.items()})
    except ValueError as e:
        raise ConfigError(_clip(str(e), 4 * ECHO_LIMIT)) from None


def to_dict(config: schema.Config) -> dict[str, dict[str, Any]]:
    """The config as plain JSON-able dicts (tuples become lists)."""
    return dataclasses.asdict(config)


def write_config(config: schema.Config, path: str) -> None:
    """Writes `config` in the same INI + literals format, so `load_config` reads it back."""
    lines = []
    for section, values in to_dict(config).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, list):
                value = tuple(value)
            lines.append(f"{key} = {value!r}")
        lines.append("")
    storage.write_text_atomic(path, "\n".join(lines))

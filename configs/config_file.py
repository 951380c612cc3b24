"""Reads the reference experiment's INI config (`train_eval_infer.config`) safely.

The file format is the one its users already have: INI sections ([model], [train],
[tiledinfer], [preprocess], [synth], and the reference's [eval], [test], [infer],
[segmentation], [image], [mask]) whose values are Python literals (`base_kernels =
(9,9)`, `model_dir = "./models"`). Values are parsed with `ast.literal_eval` only -
nothing is ever executed - and checked against the typed dataclasses in
`configs.schema`.

* a reference key this tool does not use (schema.COMPATIBILITY_KEYS) prints one line,
  once: "accepted for compatibility, has no effect";
* a second name of a setting (schema.ALIASES: [model] image_width / image_height for
  [preprocess] tile_size, [tiledinfer] overlapping for overlap) is read as the one name,
  with a one-line note; two different values for one setting are a ConfigError;
* any other unknown section or key is a warning naming file, section and key;
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
_NOTED: set = set()  # notes already printed in this process


def _note_once(message: str) -> None:
    if message not in _NOTED:
        _NOTED.add(message)
        _LOG.warning("%s", message)


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
    except configparser.MissingSectionHeaderError as e:
        # configparser quotes the offending line: a file that is not a config (a key
        # file, a password list) must not be echoed into logs.
        raise ConfigError(f"{path}: not an INI config file: line {e.lineno} comes before "
                          f"any [section] header") from None
    except configparser.ParsingError as e:
        numbers = [str(number) for number, _ in e.errors[:5]]
        where = (f"line {numbers[0]} is" if len(numbers) == 1
                 else f"lines {', '.join(numbers)} are")
        raise ConfigError(f"{path}: not a valid INI file: {where} not 'key = value'") \
            from None
    except configparser.Error as e:
        raise ConfigError(f"{path}: not a valid INI file: "
                          f"{_clip(' '.join(str(e).split()), 4 * ECHO_LIMIT)}") from None
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
        _read_file(_read_parser(str(path)), source, sections)
    from_file = {name: dict(values) for name, values in sections.items()}
    overrides = list(overrides)
    for item in overrides:
        section, key, raw = split_override(item)
        where = f"override {_clip(repr(item))}"
        if (section, key) in schema.ALIASES:
            section, key = _alias(section, key, "override")
        elif key in schema.COMPATIBILITY_KEYS.get(section, ()):
            raise ConfigError(f"{where}: [{section}] {key} is accepted in config files for "
                              "compatibility but has no effect")
        cls = section_classes.get(section)
        if cls is None:
            raise ConfigError(f"{where}: unknown section [{section}]; "
                              f"known: {', '.join(sorted(section_classes))}")
        types_ = _settable_types(section, cls)
        if key not in types_:
            raise ConfigError(f"{where}: [{section}] has no key {_clip(repr(key))}; "
                              f"known: {', '.join(sorted(types_))}")
        sections.setdefault(section, {})[key] = parse_value(
            raw, types_[key], f"override: [{section}] {key}")
    try:
        config = _build(sections)
    except ValueError as e:  # __post_init__ checks of ranges and combinations
        raise ConfigError(f"{_blame(e, source, from_file, overrides)}: "
                          f"{_clip(str(e), 4 * ECHO_LIMIT)}") from None
    return _with_derived_keys(config)


def _build(sections: Mapping[str, Mapping[str, Any]]) -> schema.Config:
    section_classes = schema.section_classes()
    return schema.Config(**{name: section_classes[name](**vals)
                            for name, vals in sections.items()})


def _blame(error: ValueError, source: str, from_file: Mapping[str, Mapping[str, Any]],
           overrides: list[str]) -> str:
    """Who gave the value a range check refused: the file (when it alone fails too), else
    the --set overrides naming the key in the message (all of them if none does)."""
    if not overrides:
        return source
    try:
        _build(from_file)
    except ValueError:
        return source
    named = [item for item in overrides
             if "[{}] {}".format(*split_override(item)[:2]) in str(error)]
    return "--set " + ", ".join(_clip(item) for item in (named or overrides))


def given_keys(path: str | os.PathLike | None = None,
               overrides: Iterable[str] = ()) -> set[tuple[str, str]]:
    """(section, key) of every setting `path` or `overrides` name (aliases as the one name
    they are read as): what the user set, as opposed to the defaults. Values are not
    checked here (load_config does)."""
    keys: set[tuple[str, str]] = set()
    if path is not None:
        parser = _read_parser(str(path))
        for section in parser.sections():
            for key in parser.options(section):
                keys.add(schema.ALIASES.get((section, key), (section, key)))
    for item in overrides:
        section, key, _ = split_override(item)
        keys.add(schema.ALIASES.get((section, key), (section, key)))
    return keys


def _settable_types(section: str, cls: type) -> dict[str, Any]:
    """Field types of a section's keys a file or --set may give (not the derived ones)."""
    derived = schema.DERIVED_KEYS.get(section, ())
    return {k: v for k, v in _field_types(cls).items() if k not in derived}


def _alias(section: str, key: str, source: str) -> tuple[str, str]:
    target = schema.ALIASES[(section, key)]
    _note_once(f"{source}: [{section}] {key} is read as [{target[0]}] {target[1]} "
               "(one name per setting)")
    return target


def _read_file(parser: configparser.ConfigParser, source: str,
               sections: dict[str, dict[str, Any]]) -> None:
    """Parses a file's values into `sections`; aliases, compatibility keys, warnings."""
    section_classes = schema.section_classes()
    aliased: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for section in parser.sections():
        cls = section_classes.get(section)
        compatible = schema.COMPATIBILITY_KEYS.get(section, ())
        if cls is None and not compatible:
            _LOG.warning("%s: unknown section [%s] ignored", source, section)
            continue
        types_ = _settable_types(section, cls) if cls is not None else {}
        for key, raw in parser.items(section):
            where = f"{source}: [{section}] {key}"
            if (section, key) in schema.ALIASES:
                target = _alias(section, key, source)
                target_types = _field_types(section_classes[target[0]])
                value = parse_value(raw, target_types[target[1]], where)
                aliased.setdefault(target, []).append((f"[{section}] {key}", value))
            elif key in compatible:
                _note_once(f"{where}: accepted for compatibility, has no effect")
            elif key in types_:
                sections.setdefault(section, {})[key] = parse_value(raw, types_[key], where)
            else:
                _LOG.warning("%s: [%s] unknown key %r ignored", source, section, key)
    for (section, key), values in aliased.items():
        given = sections.setdefault(section, {})
        for name, value in values:
            if key not in given:
                given[key] = value
            elif given[key] != value:
                raise ConfigError(f"{source}: {name} = {value!r} is read as [{section}] {key}, "
                                  f"which is {given[key]!r}; give the setting one value")


def _with_derived_keys(config: schema.Config) -> schema.Config:
    """Sets [model] image_width / image_height from [preprocess] tile_size."""
    tile = config.preprocess.tile_size
    if (config.model.image_width, config.model.image_height) == (tile, tile):
        return config
    return dataclasses.replace(config, model=dataclasses.replace(
        config.model, image_width=tile, image_height=tile))


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
        if (section, key) in schema.ALIASES:
            section, key = schema.ALIASES[(section, key)]
        types_ = _settable_types(section, section_classes[section])
        try:
            updates.setdefault(section, {})[key] = coerce(value, types_[key])
        except TypeError:
            raise ConfigError(f"{name}: {_clip(repr(value))} is a {type(value).__name__}, "
                              f"expected {_type_name(types_[key])}") from None
    try:
        config = dataclasses.replace(config, **{
            section: dataclasses.replace(getattr(config, section), **vals)
            for section, vals in updates.items()})
    except ValueError as e:
        raise ConfigError(_clip(str(e), 4 * ECHO_LIMIT)) from None
    return _with_derived_keys(config) if "preprocess" in updates else config


def to_dict(config: schema.Config) -> dict[str, dict[str, Any]]:
    """The config as plain JSON-able dicts (tuples become lists)."""
    return dataclasses.asdict(config)


def write_config(config: schema.Config, path: str) -> None:
    """Writes `config` in the same INI + literals format, so `load_config` reads it back."""
    lines = []
    for section, values in to_dict(config).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if key in schema.DERIVED_KEYS.get(section, ()):
                continue
            if isinstance(value, list):
                value = tuple(value)
            lines.append(f"{key} = {value!r}")
        lines.append("")
    storage.write_text_atomic(path, "\n".join(lines))

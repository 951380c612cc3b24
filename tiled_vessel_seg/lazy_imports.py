"""Module-level lazy imports that stay plain `import` statements.

A console tool's `--help` must not import TensorFlow (a second of start-up), yet a reader
and a type checker (pyright, mypy) should see every import at the top of the module. The
answer, as in tensorflow/datasets (`etils.epy.lazy_imports`), is a block of ordinary
import statements whose names are bound to stand-ins:

    from tiled_vessel_seg.lazy_imports import lazy_imports

    with lazy_imports():
        import tensorflow as tf
        from tiled_vessel_seg.trainer import train          # a submodule
        from tiled_vessel_seg.inference import predictor as predictor_lib

Each name is a `LazyModule`; the module is imported on the first attribute access
(`tf.constant`, `train.train(...)`), by `importlib.import_module`, whose per-module locks
make a first use from several threads at once import the module once.

Inside the block only modules may be imported: `import a`, `import a.b`, `import a.b as c`,
`from a import b` and `from . import b` where `b` is a module. `from a import some_function`
is refused with an ImportError when the block runs (a stand-in cannot tell a function from
a module without importing `a`); import such names outside the block, or import the module
and write `a.some_function`. A module that does not exist is reported when the block runs,
as a plain import would, without importing it.

Only import statements of the module (or function) that entered the block are deferred;
imports that other modules or other threads run meanwhile are untouched.
"""
from __future__ import annotations

import builtins
import contextlib
import importlib
import importlib.util
import sys
import threading
import types
from typing import Any, Iterator

_LOCK = threading.Lock()
_STATE = threading.local()  # .frames: list of (globals dict, {name: LazyModule}) per block
_ORIGINAL_IMPORT: Any = None
_ACTIVE_BLOCKS = 0


class LazyModule:
    """Stands in for the module `name` until an attribute is read; then imports it.

    Submodules named by the import statements of the block (`import a.b`, `from a import b`)
    are children: `a.b` returns the child stand-in, so `a.b` stays lazy after `a` is loaded.
    """

    __slots__ = ("_lazy_name", "_lazy_children", "_lazy_module")

    def __init__(self, name: str):
        object.__setattr__(self, "_lazy_name", name)
        object.__setattr__(self, "_lazy_children", {})
        object.__setattr__(self, "_lazy_module", None)

    def _lazy_child(self, part: str) -> "LazyModule":
        children = object.__getattribute__(self, "_lazy_children")
        if part not in children:
            children[part] = LazyModule(f"{object.__getattribute__(self, '_lazy_name')}.{part}")
        return children[part]

    def _lazy_load(self) -> types.ModuleType:
        module = object.__getattribute__(self, "_lazy_module")
        if module is None:
            # No lock of our own: import_module serialises a module's first import across
            # threads, and every thread gets the same module object back.
            module = importlib.import_module(object.__getattribute__(self, "_lazy_name"))
            object.__setattr__(self, "_lazy_module", module)
        return module

    def __getattr__(self, attr: str) -> Any:
        children = object.__getattribute__(self, "_lazy_children")
        if attr in children:
            return children[attr]
        return getattr(self._lazy_load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self._lazy_load(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._lazy_load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._lazy_load())

    def __repr__(self) -> str:
        name = object.__getattribute__(self, "_lazy_name")
        loaded = object.__getattribute__(self, "_lazy_module") is not None
        return f"<lazy module {name!r} ({'imported' if loaded else 'not yet imported'})>"

    def __reduce__(self):
        # Pickled (e.g. by Beam with a function's globals) as the module it stands for.
        return importlib.import_module, (object.__getattribute__(self, "_lazy_name"),)


def _search_locations(name: str) -> list[str] | None:
    """The submodule search path of package `name`, found without importing it (None for a
    module that is not a package). Raises ModuleNotFoundError when `name` does not exist."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__path__", None)
    parent = name.rpartition(".")[0]
    path = None
    if parent:
        path = _search_locations(parent)
        if path is None:
            raise ModuleNotFoundError(
                f"No module named {name!r}; {parent!r} is not a package", name=name)
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        spec = find_spec(name, path, None) if find_spec else None
        if spec is not None:
            locations = spec.submodule_search_locations
            return list(locations) if locations is not None else None
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def _is_module(name: str) -> bool:
    try:
        _search_locations(name)
    except ModuleNotFoundError:
        return False
    return True


def _block_for(import_globals: Any) -> dict[str, LazyModule] | None:
    for frame_globals, proxies in reversed(getattr(_STATE, "frames", ())):
        if frame_globals is import_globals:
            return proxies
    return None


def _proxy(proxies: dict[str, LazyModule], name: str) -> LazyModule:
    """The stand-in for `name`, with each dotted level registered as a child of the one
    above it (so `import a.b` then `a.b.x` goes through the stand-ins)."""
    top, *parts = name.split(".")
    proxy = proxies.setdefault(top, LazyModule(top))
    for part in parts:
        proxy = proxy._lazy_child(part)
    return proxy


def _lazy_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
    proxies = _block_for(globals)
    if proxies is None:
        return _ORIGINAL_IMPORT(name, globals, locals, fromlist, level)
    if level:
        package = globals.get("__package__") or globals["__name__"].rpartition(".")[0]
        name = importlib.util.resolve_name("." * level + name, package)
    if not fromlist:
        _search_locations(name)
        _proxy(proxies, name)  # registers every level
        return proxies[name.split(".")[0]]
    if "*" in fromlist:
        raise ImportError(f"lazy_imports(): `from {name} import *` cannot be deferred; "
                          "import it outside the `with lazy_imports():` block")
    is_package = _search_locations(name) is not None
    for attr in fromlist:
        if not (is_package and _is_module(f"{name}.{attr}")):
            raise ImportError(
                f"lazy_imports(): `from {name} import {attr}`: {attr!r} is not a module of "
                f"{name!r}. Only modules can be imported lazily: import {name!r} in the "
                f"block and write `{name.rpartition('.')[2]}.{attr}`, or import {attr!r} "
                "outside the block", name=name)
    parent = _proxy(proxies, name)
    for attr in fromlist:
        parent._lazy_child(attr)
    return parent


@contextlib.contextmanager
def lazy_imports() -> Iterator[None]:
    """Defers the module imports of the `with` block until first attribute access.

    Only import statements run by the caller's module (its globals) in this thread are
    deferred. Raises ImportError in the block for `from module import non_module_name`
    and ModuleNotFoundError for a module that does not exist.
    """
    global _ORIGINAL_IMPORT, _ACTIVE_BLOCKS
    caller_globals = sys._getframe(2).f_globals  # 0: here, 1: contextmanager's __enter__
    frames = _STATE.__dict__.setdefault("frames", [])
    with _LOCK:
        if _ACTIVE_BLOCKS == 0:
            _ORIGINAL_IMPORT = builtins.__import__
            builtins.__import__ = _lazy_import
        _ACTIVE_BLOCKS += 1
    frames.append((caller_globals, {}))
    try:
        yield
    finally:
        frames.pop()
        with _LOCK:
            _ACTIVE_BLOCKS -= 1
            if _ACTIVE_BLOCKS == 0:
                if builtins.__import__ is _lazy_import:
                    builtins.__import__ = _ORIGINAL_IMPORT

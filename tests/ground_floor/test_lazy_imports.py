"""tiled_vessel_seg.lazy_imports: plain import statements whose modules load on first use."""
import sys
import textwrap
import threading

import pytest

from tiled_vessel_seg.lazy_imports import LazyModule, lazy_imports


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A package `lazypkg_<n>` on sys.path with submodules `sub` (defines VALUE = 42,
    counts its executions, sleeps a little so threads overlap) and `other` (defines
    `helper`, a function)."""
    name = f"lazypkg_{tmp_path.name.replace('-', '_')}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sub.py").write_text(textwrap.dedent("""
        import builtins, time
        builtins.lazy_test_executions = getattr(builtins, "lazy_test_executions", 0) + 1
        time.sleep(0.2)
        VALUE = 42
    """))
    (package / "other.py").write_text("def helper():\n    return 'helped'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins
    monkeypatch.setattr(builtins, "lazy_test_executions", 0, raising=False)
    yield name
    for module in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module]


def run_as_module(source: str, folder) -> dict:
    """Imports `source` as the module lazy_test_module (written to a file, never exec'd);
    returns its namespace."""
    import importlib.util
    path = folder / "lazy_test_module.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("lazy_test_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return vars(module)


def test_nothing_is_imported_until_an_attribute_is_read(fake_package):
    with lazy_imports():
        import json as json_alias  # noqa: F401  (a stdlib module, maybe already loaded)
        exec_import = __import__(f"{fake_package}.sub", globals(), None, None, 0)
    assert isinstance(exec_import, LazyModule)
    assert fake_package not in sys.modules
    assert f"{fake_package}.sub" not in sys.modules
    assert exec_import.sub.VALUE == 42  # `import pkg.sub` then pkg.sub.VALUE
    assert sys.modules[f"{fake_package}.sub"].VALUE == 42


def test_import_as_binds_the_submodule(fake_package, tmp_path):
    source = f"""
from tiled_vessel_seg.lazy_imports import lazy_imports
with lazy_imports():
    import {fake_package}.sub as sub_alias
    import {fake_package}
"""
    namespace = run_as_module(source, tmp_path)
    assert f"{fake_package}.sub" not in sys.modules
    assert isinstance(namespace["sub_alias"], LazyModule)
    assert isinstance(namespace[fake_package], LazyModule)
    assert namespace["sub_alias"].VALUE == 42
    assert sys.modules[f"{fake_package}.sub"].VALUE == 42
    import builtins
    assert builtins.lazy_test_executions == 1


def test_from_package_import_submodule(fake_package, tmp_path):
    source = f"""
from tiled_vessel_seg.lazy_imports import lazy_imports
with lazy_imports():
    from {fake_package} import other, sub as renamed
"""
    namespace = run_as_module(source, tmp_path)
    assert fake_package not in sys.modules
    assert namespace["other"].helper() == "helped"
    assert f"{fake_package}.sub" not in sys.modules
    assert namespace["renamed"].VALUE == 42


def test_the_project_stage_modules_resolve_through_the_installed_namespace():
    # tiled_vessel_seg.<stage> lives in another folder (setup.py's package_dir): the check
    # that the module exists must find it without importing it.
    with lazy_imports():
        from tiled_vessel_seg.inference import metrics  # numpy only: a fast first use
    assert isinstance(metrics, LazyModule)
    assert metrics.__name__ == "tiled_vessel_seg.inference.metrics"
    assert metrics.__file__.endswith("inference/metrics.py")


def test_a_non_module_name_is_refused_when_the_block_runs(fake_package):
    with pytest.raises(ImportError, match=r"'helper' is not a module of"):
        with lazy_imports():
            __import__(f"{fake_package}.other", globals(), None, ("helper",), 0)
    with pytest.raises(ImportError, match="'dedent' is not a module of 'textwrap'"):
        with lazy_imports():
            from json import decoder as _  # json is a package: fine
            __import__("textwrap", globals(), None, ("dedent",), 0)
    assert fake_package not in sys.modules


def test_a_missing_module_is_reported_when_the_block_runs():
    with pytest.raises(ModuleNotFoundError, match="no_such_module_xyz"):
        with lazy_imports():
            import no_such_module_xyz  # noqa: F401
    with pytest.raises(ImportError, match="'no_such' is not a module"):
        with lazy_imports():
            from tiled_vessel_seg import no_such  # noqa: F401


def test_imports_outside_the_block_and_of_other_modules_are_plain(fake_package):
    with lazy_imports():
        pass
    import json
    assert not isinstance(json, LazyModule)
    import builtins
    assert builtins.__import__.__module__ != "tiled_vessel_seg.lazy_imports"


def test_first_use_from_many_threads_imports_once(fake_package):
    with lazy_imports():
        proxy = __import__(fake_package, globals(), None, ("sub",), 0).sub
    barrier = threading.Barrier(8)
    values, errors = [], []

    def use():
        try:
            barrier.wait()
            values.append(proxy.VALUE)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    import builtins
    assert errors == []
    assert values == [42] * 8
    assert builtins.lazy_test_executions == 1


def test_another_threads_imports_are_not_deferred_while_a_block_is_open(fake_package):
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def other_thread():
        entered.wait()
        seen["module"] = __import__(f"{fake_package}.other", globals(), None, ("helper",), 0)
        release.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with lazy_imports():
        entered.set()
        release.wait(10)
    thread.join()
    assert seen["module"].helper() == "helped"
    assert not isinstance(seen["module"], LazyModule)


def test_relative_import_in_a_package_module_and_pickling(fake_package, tmp_path):
    (tmp_path / fake_package / "user.py").write_text(textwrap.dedent("""
        from tiled_vessel_seg.lazy_imports import lazy_imports
        with lazy_imports():
            from . import sub
    """))
    import importlib
    import pickle
    user = importlib.import_module(f"{fake_package}.user")
    assert f"{fake_package}.sub" not in sys.modules
    # Pickled (as Beam may pickle a function's globals) as the module it stands for.
    assert pickle.loads(pickle.dumps(user.sub)) is sys.modules[f"{fake_package}.sub"]
    assert user.sub.VALUE == 42

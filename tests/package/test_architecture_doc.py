"""docs/architecture.md and docs/usage.md's "Where each stage lives" name only what the
tree has: every `folder/module.py` file, every `folder/module.function` library call,
and every folder of the repository's source tree appears in the stage table."""
from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
USAGE = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
FOLDERS = ("tiled_vessel_seg", "synthetic", "beam_jobs", "tfrecords", "trainer", "inference",
           "pipeline", "configs")
NAME = re.compile(r"`((?:%s)/[\w/]+?)(?:\.py)?(?:\.(\w+))?`" % "|".join(FOLDERS))


def top_level_names(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def named(text: str) -> list[tuple[str, str]]:
    """(module path, function or '') of each `folder/module[.py][.function]` in text."""
    return [(m.group(1), m.group(2) or "") for m in NAME.finditer(text)]


def test_architecture_names_modules_and_calls_that_exist():
    found = named(ARCHITECTURE)
    assert len(found) >= 20
    missing = []
    for module, function in found:
        path = ROOT / f"{module}.py"
        if not path.exists():
            if not (ROOT / module).is_dir():
                missing.append(f"{module}: no such file or folder")
            continue
        if function and function != "py" and function not in top_level_names(path):
            missing.append(f"{module}.{function}: not defined in {path.name}")
    assert missing == []


def test_usage_stage_table_lists_every_source_folder_and_no_missing_module():
    table = USAGE.split("## Where each stage lives", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1) for m in re.finditer(r"^\| `(\w+)/` \|", table, re.M)}
    assert set(FOLDERS) <= rows
    missing = [f"{module}.py" for module, _ in named(table)
               if not (ROOT / f"{module}.py").exists() and not (ROOT / module).is_dir()]
    assert missing == []

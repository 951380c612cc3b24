"""Nothing imports a CLI module: no source module names a console script's module (setup.py)
in any import statement, inside functions too. Libraries a tool and another module share
live beside the tool (pipeline/stages.py for vessel-run and vessel-cv)."""
from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDERS = ("tiled_vessel_seg", "configs", "synthetic", "beam_jobs", "tfrecords", "trainer",
           "inference", "pipeline", "models")
CLI_MODULES = set(re.findall(r'"vessel-[\w-]+=([\w.]+):\w+"',
                             (ROOT / "setup.py").read_text(encoding="utf-8")))


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts if parts[0] == "tiled_vessel_seg" else ["tiled_vessel_seg", *parts])


def imported_names(path: pathlib.Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def test_no_source_module_imports_a_console_script_module():
    assert {"tiled_vessel_seg.pipeline.run", "tiled_vessel_seg.pipeline.cv",
            "tiled_vessel_seg.stare_download_cli"} <= CLI_MODULES
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, name in imported_names(path):
                if name in CLI_MODULES and name != module_name(path):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert found == []

"""Every console tool's --help lists every flag the tool takes, with defaults in plain
words, and every tool has --version (issue 18 item 11).

Each tool runs in its own process, as its console script does: `run()` with argv
[tool, --help]. The flags it takes are read from absl's registry in that process after
the run (every flag not defined by absl itself), not from what the help printer chose.
"""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SETUP = (ROOT / "setup.py").read_text(encoding="utf-8")
SCRIPTS = re.findall(r'"(vessel-[\w-]+)=([\w.]+):(\w+)"', SETUP)
VERSION = re.search(r'version="([^"]+)"', SETUP).group(1)

PROBE = r"""
import contextlib, io, json, sys, time
tool, module, function, flag = sys.argv[1:5]
sys.argv = [tool, flag]
import importlib
entry = getattr(importlib.import_module(module), function)
out = io.StringIO()
code = None
with contextlib.redirect_stdout(out):
    try:
        entry()
    except SystemExit as e:
        code = e.code
cpu = time.process_time()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
from absl import flags
taken = sorted({f.name for mod, fl in flags.FLAGS.flags_by_module_dict().items()
                if not mod.startswith("absl") for f in fl})
print(json.dumps({"code": code, "out": out.getvalue(), "flags": taken, "cpu": cpu,
                  "loaded": loaded}))
"""


def probe(tool, module, function, flag):
    result = subprocess.run([sys.executable, "-c", PROBE, tool, module, function, flag],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def helps():
    """{tool: probe result of --help}, the tools run two at a time."""
    out = {}
    procs = []
    for tool, module, function in SCRIPTS:
        procs.append((tool, subprocess.Popen(
            [sys.executable, "-c", PROBE, tool, module, function, "--help"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)))
    for tool, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, (tool, stderr[-2000:])
        out[tool] = json.loads(stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("tool", [s[0] for s in SCRIPTS])
def test_help_is_fast_and_imports_no_tensorflow(helps, tool):
    """issue 20 item 6: every console script answers --help in under 1 s without importing
    TensorFlow or Keras (lazy_imports() where a tool's modules need them). The time is the
    process's CPU time, interpreter start-up included, not wall time: the probes run side
    by side, and the test machine trains beside the suite."""
    assert helps[tool]["loaded"] == [], f"{tool} --help imports {helps[tool]['loaded'][:5]}"
    assert helps[tool]["cpu"] < 1.0, f"{tool} --help took {helps[tool]['cpu']:.2f} s of CPU"


def test_setup_lists_the_tools():
    assert len(SCRIPTS) >= 9 and ("vessel-segment", "tiled_vessel_seg.inference.cli",
                                  "run") in SCRIPTS


def listed_flags(text):
    """Flag names the help lists at the start of an entry line: '  --name ...' or
    '  --[no]name'."""
    return set(re.findall(r"^  --(?:\[no\])?(\w+)", text, re.M))


@pytest.mark.parametrize("tool", [s[0] for s in SCRIPTS])
def test_help_lists_every_flag_the_tool_takes(helps, tool):
    result = helps[tool]
    assert result["code"] in (0, None)
    taken = set(result["flags"])
    assert taken, "the probe found no flags"
    missing = sorted(taken - listed_flags(result["out"]))
    assert missing == [], f"{tool} --help omits {missing}"
    assert "version" in taken


def test_segment_and_export_list_the_tiling_flags(helps):
    expected = {"model", "model_dir", "tta", "threshold", "input_scale", "overlap",
                "batch_size", "blend", "tiler", "min_overlap"}
    for tool in ("vessel-segment", "vessel-export"):
        assert expected <= listed_flags(helps[tool]["out"]), tool


@pytest.mark.parametrize("tool", [s[0] for s in SCRIPTS])
def test_help_says_defaults_in_plain_words_and_has_no_broken_lines(helps, tool):
    text = helps[tool]["out"]
    assert "(default: '" not in text and "(default: \"" not in text
    assert "repeat this option to specify a list of values" not in text
    # a backslash-continued example in a docstring runs two lines into one
    assert not re.search(r"\S {4,}--\w", text), re.search(r".*\S {4,}--\w.*", text).group(0)


def test_plain_defaults_of_a_boolean_and_a_number(helps):
    text = helps["vessel-segment"]["out"]
    entry = text.split("  --[no]overlay", 1)[1].split("\n  --", 1)[0]
    assert "Default: off." in " ".join(entry.split())
    entry = text.split("  --max_pixels", 1)[1].split("\n  --", 1)[0]
    assert "Default: 64000000." in " ".join(entry.split())


@pytest.mark.parametrize("tool,module,function", SCRIPTS[:3] + SCRIPTS[-2:])
def test_version(tool, module, function):
    result = probe(tool, module, function, "--version")
    assert result["code"] in (0, None)
    assert result["out"].strip() == f"{tool} {VERSION}"

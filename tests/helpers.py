"""Plain helper functions shared by test modules (`from tests.helpers import ...`).
Fixtures live in tests/conftest.py."""
import json


def one_error_line(err: str) -> str:
    """The one `error:` line of a tool's stderr; fails the test unless there is exactly one
    and no traceback."""
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def model_dir_with_info(path, **fields):
    """A model dir holding only model_info.json with the given raw JSON fields."""
    path.mkdir(parents=True, exist_ok=True)
    info = {"tile_size": 32, "scale": 2, "overlap": 8, "threshold": 0.5, **fields}
    (path / "model_info.json").write_text(json.dumps(info))
    return path

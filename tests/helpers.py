"""Plain helper functions shared by test modules (`from tests.helpers import ...`).
Fixtures live in tests/conftest.py."""
import json
import uuid


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


def ram_dir(name: str) -> str:
    """A fresh folder on TensorFlow's in-memory filesystem (ram://: the tf.io.gfile code
    gs:// goes through, with no network)."""
    return f"ram://{uuid.uuid4().hex[:8]}/{name}"


def tree(root: str) -> dict[str, bytes]:
    """{path relative to root: bytes} of every file under root (any scheme)."""
    from tiled_vessel_seg import storage  # pylint: disable=import-outside-toplevel
    files = {}
    for name in storage.listdir(root):
        path = storage.join(root, name)
        if storage.isdir(path):
            files.update({f"{name}/{k}": v for k, v in tree(path).items()})
        else:
            files[name] = storage.read_bytes(path)
    return files


def copy_tree(source: str, destination: str) -> None:
    """Copies every file under source to destination (any schemes)."""
    from tiled_vessel_seg import storage  # pylint: disable=import-outside-toplevel
    storage.makedirs(destination)
    for name in storage.listdir(source):
        path = storage.join(source, name)
        if storage.isdir(path):
            copy_tree(path, storage.join(destination, name))
        else:
            storage.copy(path, storage.join(destination, name))

"""Checkpoints: a directory with `state.pt` (everything to resume bit for bit) and `meta.json`.

Written under a temporary name and renamed into place, so a crash never leaves a half checkpoint
under the real name. Read only with `torch.load(..., weights_only=True)`: a checkpoint never runs code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import random
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tune_app.errors import CheckpointError

__all__ = [
    "STATE_FILE",
    "CheckpointError",
    "atomic_write_bytes",
    "code_fingerprint",
    "get_rng_state",
    "load_state",
    "load_torch_file",
    "package_versions",
    "save_checkpoint",
    "set_rng_state",
    "state_bytes",
]

STATE_FILE = "state.pt"
FORMAT = 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file whole or not at all: through a temporary file in the same directory, synced,
    then renamed over `path` (a crash or a full disk never leaves half a file under its name).

    Args:
        path: the file to write; its folder is made if missing.
        data: the file's bytes.

    Raises:
        OSError: the write failed (a full disk, no permission), naming `path`; the temporary
            file is removed and any older `path` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with _naming(path), open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError inside names `path` (a failed write(), a full disk, names no file itself)."""
    try:
        yield
    except OSError as exc:
        if exc.filename and not Path(exc.filename).name.startswith("."):
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc


def get_rng_state() -> dict[str, Any]:
    """The random generators' states, to store in a checkpoint (`set_rng_state` restores them).

    Returns:
        {"torch": torch's CPU generator state (a uint8 tensor), "numpy": numpy's legacy global
        state as plain lists, "python": the `random` module's state}: all loadable with
        `torch.load(weights_only=True)`.
    """
    legacy: tuple[Any, ...] = tuple(np.random.get_state())
    return {
        "torch": torch.get_rng_state(),
        "numpy": [legacy[0], legacy[1].tolist(), *legacy[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random generators to a state `get_rng_state` returned, so a resumed run draws
    the same numbers (batch order, noise, dropout) as an uninterrupted one.

    Args:
        state: `get_rng_state`'s dict, as a checkpoint stored it.
    """
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(directory: Path, state: dict[str, Any], files: dict[str, bytes]) -> Path:
    """Write `state.pt` and the caller's `files` into `directory`, atomically as a whole: under a
    temporary name, synced, then renamed over any older version.

    Args:
        directory: the checkpoint folder (its parent is made if missing).
        state: what `state.pt` holds (model and optimizer state dicts, RNG states, epoch, plan
            as plain data, ...), saved with the checkpoint format tag (`state_bytes`).
        files: other files to write beside it, name -> bytes (`meta.json`, `metrics.parquet`).

    Returns:
        `directory`.

    Raises:
        OSError: a write failed (a full disk, no permission), naming the file; nothing is left
            under `directory`'s name that was not there before.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    with _naming(directory):
        tmp.mkdir()
    try:
        with _naming(directory / STATE_FILE), open(tmp / STATE_FILE, "wb") as handle:
            handle.write(state_bytes(state))
            handle.flush()
            os.fsync(handle.fileno())
        for name, data in files.items():
            with _naming(directory / name):
                (tmp / name).write_bytes(data)
        _fsync_dir(tmp)
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(directory, old)
        os.replace(tmp, directory)
        _fsync_dir(directory.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def state_bytes(state: dict[str, Any]) -> bytes:
    """A checkpoint's state as the bytes of a `state.pt`.

    Args:
        state: the state dict (tensors and plain data only, so it loads with
            `weights_only=True`).

    Returns:
        `torch.save`'s bytes of `state`, tagged with the checkpoint format.
    """
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buffer)
    return buffer.getvalue()


def load_state(directory: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint's `state.pt` safely (`torch.load(..., weights_only=True)`).

    Args:
        directory: a checkpoint folder, or the state file itself.
        map_location: where the tensors go (`"cpu"` by default).

    Returns:
        The state dict `save_checkpoint` wrote (model, optimizer, RNG states, epoch, plan, ...).

    Raises:
        CheckpointError: no state file there, not a tune_app checkpoint (another format), or
            unreadable (`load_torch_file`): the message says what is wrong and what to pass.
    """
    path = Path(directory)
    file = path / STATE_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(
            f"checkpoint {directory}: no {STATE_FILE} there, and not a `tune-app best` export; "
            "pass a checkpoint directory, a state file, best_model_combined.pth or an export"
        )
    state = load_torch_file(file, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise CheckpointError(
            f"checkpoint {file}: not a tune_app checkpoint (format {FORMAT} expected)"
        )
    return state


def load_torch_file(file: Path, map_location: str | torch.device = "cpu") -> Any:
    """`torch.load(file, weights_only=True)`: a file that would run code is refused, never loaded.

    Args:
        file: a torch file (`state.pt`, `best_model.pth`, `best_model_combined.pth`).
        map_location: where the tensors go.

    Returns:
        What the file holds (a state dict, or a dict of them).

    Raises:
        CheckpointError: the file holds objects that could run code, is corrupt or truncated,
            or is not a torch file at all.
    """
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"checkpoint {file}: refused, it holds objects that could run code when loaded "
                f"({found.group(1)}); only tune_app checkpoints are accepted"
            ) from None
        raise CheckpointError(
            f"checkpoint {file}: corrupt or truncated (not a readable torch file); use an earlier checkpoint"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        # an empty file (a full disk) raises an EOFError with no message at all
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CheckpointError(
            f"checkpoint {file}: corrupt or truncated ({why}); use an earlier checkpoint"
        ) from None
    except Exception as exc:  # not a torch file at all: pickle raises anything (KeyError, ...)
        raise CheckpointError(
            f"checkpoint {file}: not a torch checkpoint ({type(exc).__name__}); pass a "
            "checkpoint directory, a state.pt, best_model_combined.pth or a `tune-app best` export"
        ) from None


@cache
def code_fingerprint() -> str:
    """Which code produced a checkpoint, recorded in its `meta.json`.

    Returns:
        The sha256 hex digest of every Python source of the tune_app package (its relative path
        and bytes, in sorted order); computed once per process.
    """
    root = Path(__file__).parents[1]  # the whole tune_app package, not only training/
    digest = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@cache
def package_versions() -> dict[str, str]:
    """The versions of the packages a run depends on, recorded with its checkpoints and exports.

    Returns:
        {package: version} for tune_app, torch, ray, optuna, numpy and pyarrow ("not installed"
        for one that is not); computed once per process.
    """
    versions = {}
    for name in ("tune_app", "torch", "ray", "optuna", "numpy", "pyarrow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions

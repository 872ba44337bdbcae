"""Output folders that appear whole or not at all (`tune-app best`, `tune-app report`).

Everything is written into a temporary folder beside `--out` and moved into place at the end:
a new folder is one rename; into an existing one (an earlier export or report) each file is
renamed over its old version, with Ctrl-C held back for those few renames. A full disk, an
error or Ctrl-C before that leaves `--out` as it was and removes the temporary folder, so what
the command says about its output is true.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tune_app.errors import Interrupted, RunFailed

__all__ = ["staged_folder"]

# errors of the place written to, not of what is read: said as "could not write"
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C waits until the block ends (only the main thread can hold it back)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _publish(staged: Path, out: Path) -> None:
    """Move the staged folder's content to `out` (see the module doc)."""
    with _interrupts_held():
        if not out.exists():
            os.replace(staged, out)
            return
        for item in sorted(staged.iterdir()):
            target = out / item.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(item, target)


def _inside(path: str | None, folder: Path) -> bool:
    return bool(path) and Path(str(path)).resolve().is_relative_to(folder.resolve())


@contextmanager
def staged_folder(out: Path, what: str) -> Iterator[Path]:
    """A temporary folder to write `out`'s content into, moved into place when the block ends.

    Args:
        out: the folder the user asked for (made, or updated file by file if it exists).
        what: what is written, for messages ("the export", "the report").

    Yields:
        The temporary folder, beside `out` (same file system, so the move is a rename).

    Raises:
        RunFailed: the disk was full or not writable (what could not be written is named);
            nothing was changed in `out`.
        Interrupted: Ctrl-C before the move; nothing was changed in `out`.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        staged.mkdir()
        yield staged
        _publish(staged, out)
    except KeyboardInterrupt:
        raise Interrupted(
            note=f"nothing was written to {out} ({what} was not finished); run the command again"
        ) from None
    except OSError as exc:
        if not (exc.errno in WRITE_ERRORS or _inside(exc.filename, staged)):
            raise
        name = str(exc.filename or out).replace(str(staged), str(out))
        raise RunFailed(
            f"could not write {name}: {exc.strerror or exc}; nothing was written to {out} "
            f"({what} was not finished); free space (or fix the permissions) and run the "
            "command again"
        ) from None
    finally:
        shutil.rmtree(staged, ignore_errors=True)

"""Why a Ray run stopped, in one line with what to do, from what its folder shows."""

from __future__ import annotations

import contextlib
import os
import shutil

from tune_app.runs.records import MANIFEST
from tune_app.runs.storage import Location

__all__ = ["gone", "why_stopped"]


def why_stopped(location: Location, exc: BaseException) -> str:
    """One line on why a run stopped (`exc`, what Tune raised), with what to do: its folder
    gone, its disk full or not writable, else the error's last line."""
    with contextlib.suppress(OSError):  # remote storage that stopped answering: said below
        if not location.join(MANIFEST).exists():
            return gone(location)
    lines = [line for line in str(exc).splitlines() if line.strip()]
    detail = (lines[-1] if lines else type(exc).__name__)[:300]
    if location.is_local:
        try:
            free = shutil.disk_usage(location.path).free
        except OSError:
            free = None
        if free is not None and free < 16 * 2**20:
            return f"its storage is full ({free // 1024} KiB free); free space, then run again with --resume"
        if not os.access(location.path, os.W_OK):
            return "its storage is not writable; fix the permissions, then run again with --resume"
    return f"{type(exc).__name__}: {detail}; the checkpoints written so far are kept, --resume continues"


def gone(location: Location) -> str:
    """What to say when a run's folder was deleted while it ran (its manifest, written before
    Ray starts, is gone even where Ray made the folder again to save its own state)."""
    return (
        f"its folder {location.uri} disappeared while it ran (deleted, moved or unmounted), and "
        "with it every checkpoint: nothing is left to resume there; run the command again "
        "without --resume (a folder you moved resumes where it is now: --storage and --name)"
    )

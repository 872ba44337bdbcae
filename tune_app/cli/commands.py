"""The command lines messages advise, built from what a run recorded, so they work as printed.

Every such command is one `tune-app` accepts (tests/test_advice.py parses each with the real
parser): a run is resumed with its own --name and --storage, and a compare run with the plans
A and B as it recorded their arguments.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tune_app.runs.records import RunManifest
    from tune_app.runs.storage import Location

__all__ = ["resume_command", "train_resume_command"]


def resume_command(manifest: RunManifest, location: Location) -> str:
    """The command that resumes the run at `location` (a finished compare run: prints its
    comparison again, training nothing).

    Args:
        manifest: the run's manifest (its kind; a compare run's arms).
        location: the run's folder: its name and, above it, its storage.

    Returns:
        `tune-app KIND --resume --name NAME --storage STORAGE`; for a compare run
        `tune-app compare A B --resume ...`, A and B as the run recorded them (an older run,
        which did not: its labels, A and B, to be replaced by the plans).
    """
    flags = ["--resume", "--name", location.name, "--storage", location.parent.uri]
    if manifest.kind == "compare":
        named = [str(arm.get("argument") or arm["label"]) for arm in manifest.arms]
        return "tune-app compare " + shlex.join([*(named or ["A", "B"]), *flags])
    return "tune-app " + shlex.join([manifest.kind, *flags])


def train_resume_command(checkpoint: Location, out: Location) -> str:
    """The command that goes on from a run's checkpoint in this process, without Ray.

    Args:
        checkpoint: a checkpoint folder on a local disk.
        out: the folder the in-process run writes.

    Returns:
        `tune-app train --resume CHECKPOINT --out OUT`.
    """
    return "tune-app " + shlex.join(["train", "--resume", checkpoint.path, "--out", out.path])

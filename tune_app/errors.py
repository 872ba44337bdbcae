"""The project's error types: bad input (exit 2) versus a failure while working (exit 1)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CheckpointError",
    "DivergedError",
    "ErrorList",
    "InputError",
    "Interrupted",
    "NothingToResume",
    "RunClaimed",
    "RunFailed",
]


class InputError(ValueError):
    """Bad input from the user: a plan, a data file, a flag, a run path.

    The CLI prints the message (no traceback) and exits with status 2, before any work starts.
    """


class RunClaimed(InputError):
    """Another live process holds the run's name (runs/lock.py): a second launch, or a
    --resume of a run still going. A command that names its runs itself (certify) says it in
    its own words, with `owner` (the process holding it, described)."""

    def __init__(self, message: str, owner: str = "") -> None:
        super().__init__(message)
        self.owner = owner


class NothingToResume(InputError):
    """--resume of a run Ray cannot restore (no experiment state saved yet, or not a run)."""


class CheckpointError(InputError):
    """A checkpoint that is missing, truncated, foreign, or would run code when loaded (exit 2)."""


class RunFailed(RuntimeError):
    """A run that started but could not go on (storage full or unwritable, cluster lost): exit 1.

    `flags`, when given, resume the run from what it saved: put on the same command line (as
    `Interrupted.flags`), the CLI prints that command after the message."""

    def __init__(self, message: str = "", flags: dict[str, str | None] | None = None) -> None:
        super().__init__(message)
        self.flags = flags or {}


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with what resumes it: flags to put on the same command line
    (`{"--resume": None, "--name": "search-1"}`; None for a flag without a value), or, when
    nothing can be resumed, `note` says why (with flags, `note` says what was kept, before the
    command). The CLI prints the command and exits 130."""

    def __init__(self, flags: dict[str, str | None] | None = None, note: str = "") -> None:
        super().__init__(note)
        self.flags = flags or {}
        self.note = note


class DivergedError(RuntimeError):
    """A loss became NaN or infinite, or exploded (see monitors.DivergenceMonitor); the last
    good checkpoint is kept."""

    def __init__(
        self, epoch: int, loss: float, last_checkpoint: str | None, reason: str = ""
    ) -> None:
        self.epoch = epoch
        self.loss = loss
        self.last_checkpoint = last_checkpoint
        self.reason = reason
        where = last_checkpoint or "none written yet"
        super().__init__(
            f"training diverged at epoch {epoch} ({reason or f'loss = {loss}'}); last good "
            f"checkpoint: {where}. Lower the learning rate or the gradient clip for this phase "
            "and resume from it."
        )


class ErrorList:
    """Collects every problem in a piece of input, so the user sees all of them at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, path: str, problem: str, value: Any = None, fix: str = "") -> None:
        got = "" if value is None else f" (got {value!r})"
        tail = f"; {fix}" if fix else ""
        self.messages.append(f"{path}: {problem}{got}{tail}")

    def __bool__(self) -> bool:
        return bool(self.messages)

    def raise_if_any(self) -> None:
        if self.messages:
            lines = "\n".join(f"  - {m}" for m in self.messages)
            count = len(self.messages)
            noun = "problem" if count == 1 else "problems"
            raise InputError(f"{self.source}: {count} {noun}:\n{lines}")

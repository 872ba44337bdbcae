"""A failed trial in one line, Ray's traceback in a file; a run whose folder is gone stops.

Ray Tune logs every trial failure as "Trial task failed for trial X" with the whole traceback
(45 to 200 lines, one block per retry) on the driver's stderr, before tune_app's own line on why
the run stopped. `TrialErrorLog`, a filter on Tune's controller logger, writes each such record
(traceback included) to a log file instead: `RUN/trial_errors.log` while the run's folder is
there and writable, else a file in the system's temporary folder (a full disk, a deleted
folder), and prints one line naming the trial, the error and the file. Records it cannot write
anywhere are left to Ray's own handler.

`StopWhenRunGone`, a Tune callback, ends the run at the first trial failure after its folder
disappeared (its manifest, written before Ray starts, is gone): Ray would otherwise retry the
trial `--max-failures` times against the missing folder, and make the folder again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from tune_app.runs.records import MANIFEST
from tune_app.runs.storage import Location

__all__ = ["ERRORS_FILE", "RunFolderGone", "StopWhenRunGone", "TrialErrorLog", "trial_errors"]

TUNE_CONTROLLER_LOGGER = "ray.tune.execution.tune_controller"
FAILED = "Trial task failed for trial "
ERRORS_FILE = "trial_errors.log"


def _manifest_there(location: Location) -> bool:
    with contextlib.suppress(OSError):
        return bool(location.join(MANIFEST).exists())
    return False


_HEADER = re.compile(r"^[\w.]*(?:Error|Exception|Exit|Interrupt)\b[^:]*:")


def _last_line(error: BaseException | None) -> str:
    """The error's own line: the last `SomeError: ...` line of its text (a RayTaskError's text
    holds the remote traceback, its original error last), else its last line."""
    if error is None:
        return "an error"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    headers = [line for line in lines if _HEADER.match(line)]
    return ((headers or lines or [type(error).__name__])[-1])[:240]


class TrialErrorLog(logging.Filter):
    """Diverts Tune's "Trial task failed" records to a file, with one line on stderr each.

    Attributes:
        file: where the tracebacks went (None until the first failure).
    """

    def __init__(self, location: Location) -> None:
        super().__init__()
        self.location = location
        self.file: Path | None = None

    def _candidates(self) -> list[Path]:
        folders = []
        if self.location.is_local and _manifest_there(self.location):
            folders.append(Path(self.location.path) / ERRORS_FILE)
        name = f"tune_app-{self.location.name}-{os.getpid()}-{ERRORS_FILE}"
        return [*folders, Path(tempfile.gettempdir()) / name]

    def _write(self, text: str) -> Path | None:
        for path in ([self.file] if self.file else []) + self._candidates():
            existed = path.exists()
            try:
                with open(path, "a", encoding="utf-8") as handle:
                    handle.write(text + "\n\n")
                return path
            except OSError:
                if not existed:  # a full disk may leave an empty file behind
                    with contextlib.suppress(OSError):
                        path.unlink()
        return None

    def filter(self, record: logging.LogRecord) -> bool:
        """Write a trial failure's record to the file and print its line instead.

        Args:
            record: a record of Tune's controller logger.

        Returns:
            False for a trial failure written to the file (Ray's handler skips it), True for
            any other record, or one no file could take.
        """
        message = record.getMessage()
        if not message.startswith(FAILED):
            return True
        written = self._write(logging.Formatter("%(asctime)s %(message)s").format(record))
        if written is None:
            return True
        self.file = written
        error = record.exc_info[1] if record.exc_info else None
        print(
            f"tune-app: {message[len(FAILED) :]} failed: {_last_line(error)} (Ray's traceback: "
            f"{written})",
            file=sys.stderr,
            flush=True,
        )
        return False


@contextlib.contextmanager
def trial_errors(location: Location) -> Iterator[TrialErrorLog]:
    """`TrialErrorLog` on Tune's controller logger while the block runs.

    Args:
        location: the run's folder.

    Yields:
        The filter; its `file` names where the tracebacks went.
    """
    divert = TrialErrorLog(location)
    logger = logging.getLogger(TUNE_CONTROLLER_LOGGER)
    logger.addFilter(divert)
    try:
        yield divert
    finally:
        logger.removeFilter(divert)


class RunFolderGone(RuntimeError):
    """The run's folder disappeared while it ran; raised to end Tune's loop."""


class StopWhenRunGone(Callback):
    """Ends the run at a trial failure once the run's folder (its manifest) is gone."""

    def __init__(self, location: Location) -> None:
        self.location = location

    def _check(self) -> None:
        if not _manifest_there(self.location):
            raise RunFolderGone(f"{self.location.uri} disappeared")

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._check()

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._check()

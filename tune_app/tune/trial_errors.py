"""A failed trial in one line, Ray's traceback in a file; a run whose folder is gone stops.

Ray Tune logs every trial failure as "Trial task failed for trial X" with the whole traceback
(45 to 200 lines, one block per retry) on the driver's stderr, before tune_app's own line on why
the run stopped. `TrialErrorLog`, a filter on Tune's controller logger, writes each such record
(traceback included) to a log file instead: `RUN/trial_errors.log` while the run's folder is
there and writable, else a file in the system's temporary folder (a full disk, a deleted
folder), and prints one line naming the trial, the error and the file; the same for Ray's
"Unhandled error" records (a trial's task that failed while the run stopped, its error never
read). Records it cannot write anywhere are left to Ray's own handler.

`StopWhenRunGone`, a Tune callback, ends the run once its folder disappeared (its manifest,
written before Ray starts, is gone): at the first trial failure after that, and between trial
results as soon as it sees the manifest missing (local storage: within a second; remote storage:
within `REMOTE_CHECK_S`). Ray would otherwise go on training until the next checkpoint found
the folder missing (a whole phase), retry the trial `--max-failures` times against it, and make
the folder again with its own experiment state (it saves that every 10 s or more; a folder Ray
made again holds that state only: no manifest, no checkpoint).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
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
RAY_WORKER_LOGGER = "ray._private.worker"  # logs a task's error that nothing read
UNHANDLED = "Unhandled error"
ERRORS_FILE = "trial_errors.log"


def _manifest_there(location: Location) -> bool:
    with contextlib.suppress(OSError):
        return bool(location.join(MANIFEST).exists())
    return False


_HEADER = re.compile(r"^[\w.]*(?:Error|Exception|Exit|Interrupt)\b[^:]*:")


def _last_line(error: BaseException | str | None) -> str:
    """The error's own line: the last `SomeError: ...` line of its text (a RayTaskError's text
    holds the remote traceback, its original error last), else its last line."""
    if error is None:
        return "an error"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    headers = [line for line in lines if _HEADER.match(line)]
    fallback = error if isinstance(error, str) else type(error).__name__
    return ((headers or lines or [fallback])[-1])[:240]


class TrialErrorLog(logging.Filter):
    """Diverts Tune's "Trial task failed" records, and Ray's "Unhandled error" ones (a trial's
    task that failed while the run was stopping, its result never read), to a file, with one
    line on stderr each.

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
            record: a record of Tune's controller logger or of Ray's worker logger.

        Returns:
            False for a trial failure or an unhandled task error written to the file (Ray's
            handler skips it), True for any other record, or one no file could take.
        """
        message = record.getMessage()
        if message.startswith(FAILED):
            error: BaseException | str | None = record.exc_info[1] if record.exc_info else None
            what = f"{message[len(FAILED) :]} failed"
        elif message.startswith(UNHANDLED):
            error, what = message, "a trial's task, stopped with the run, failed"
        else:
            return True
        written = self._write(logging.Formatter("%(asctime)s %(message)s").format(record))
        if written is None:
            return True
        self.file = written
        print(
            f"tune-app: {what}: {_last_line(error)} (Ray's traceback: {written})",
            file=sys.stderr,
            flush=True,
        )
        return False


@contextlib.contextmanager
def trial_errors(location: Location) -> Iterator[TrialErrorLog]:
    """`TrialErrorLog` on Tune's controller logger and Ray's worker logger while the block runs.

    Args:
        location: the run's folder.

    Yields:
        The filter; its `file` names where the tracebacks went.
    """
    divert = TrialErrorLog(location)
    loggers = [logging.getLogger(TUNE_CONTROLLER_LOGGER), logging.getLogger(RAY_WORKER_LOGGER)]
    for logger in loggers:
        logger.addFilter(divert)
    try:
        yield divert
    finally:
        for logger in loggers:
            logger.removeFilter(divert)


class RunFolderGone(RuntimeError):
    """The run's folder disappeared while it ran; raised to end Tune's loop."""


LOCAL_CHECK_S = 0.5
REMOTE_CHECK_S = 30.0


def _manifest_gone(location: Location) -> bool:
    """True only where the storage answers that the manifest does not exist (a remote store
    that does not answer is not a deleted run)."""
    try:
        return not location.join(MANIFEST).exists()
    except OSError:
        return False


class StopWhenRunGone(Callback):
    """Ends the run once the run's folder (its manifest) is gone: at a trial failure, and at
    the start of Tune's loop step at most every `LOCAL_CHECK_S` (local) or `REMOTE_CHECK_S`
    (remote storage: each check is a request) seconds.

    Raises:
        RunFolderGone: from the callback, which ends `Tuner.fit`.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.every = LOCAL_CHECK_S if location.is_local else REMOTE_CHECK_S
        self.checked = time.monotonic()

    def _where(self, trials: list[Trial]) -> Location:
        """The run's folder as Ray has it now. `Tuner.restore` unpickles this callback from the
        run's tuner.pkl with the folder the run started in; a run moved (`mv`) since then and
        resumed where it is now would otherwise be taken for one whose folder disappeared."""
        for trial in trials:
            storage = getattr(trial, "storage", None)
            if storage is not None:
                return Location(
                    storage.storage_filesystem, storage.experiment_fs_path, self.location.uri
                )
        return self.location

    def _check(self, trials: list[Trial]) -> None:
        if not _manifest_there(self._where(trials)):
            raise RunFolderGone(f"{self.location.uri} disappeared")

    def on_step_begin(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        now = time.monotonic()
        if now - self.checked < self.every:
            return
        self.checked = now
        if _manifest_gone(self._where(trials)):
            raise RunFolderGone(f"{self.location.uri} disappeared")

    def on_trial_recover(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._check(trials)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._check(trials)

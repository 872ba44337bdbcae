"""Ray Tune's trial tracebacks go to a file, one line on stderr each (fresh-20, items 8 and 10:
45 to 205 lines of "Trial task failed" tracebacks before tune_app's own line)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from tune_app.runs.records import MANIFEST
from tune_app.runs.storage import locate
from tune_app.tune.trial_errors import (
    ERRORS_FILE,
    RAY_WORKER_LOGGER,
    REMOTE_CHECK_S,
    TUNE_CONTROLLER_LOGGER,
    RunFolderGone,
    StopWhenRunGone,
    trial_errors,
)


def _fail(logger: logging.Logger) -> None:
    try:
        raise OSError(28, "No space left on device")
    except OSError as exc:
        logger.error("Trial task failed for trial trial-00", exc_info=exc)


@pytest.mark.parametrize("manifest", [True, False], ids=["in-the-run", "run-folder-gone"])
def test_a_trial_failure_is_one_line_and_its_traceback_a_file(manifest, tmp_path: Path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    if manifest:
        (run / MANIFEST).write_text("{}")
    logger = logging.getLogger(TUNE_CONTROLLER_LOGGER)
    handler = logging.StreamHandler(sys.stderr)  # as Ray's own handler prints it
    logger.addHandler(handler)
    try:
        with trial_errors(locate(str(run))) as errors:
            _fail(logger)
            logger.error("another record")  # not a trial failure: left to Ray's handler
        err = capsys.readouterr().err
        _fail(logger)  # the filter is gone with the block
        assert "Traceback" in capsys.readouterr().err
    finally:
        logger.removeHandler(handler)
    assert "Traceback" not in err and "another record" in err, err
    (line,) = [line for line in err.splitlines() if "trial-00" in line]
    assert errors.file is not None and f"(Ray's traceback: {errors.file})" in line
    assert line.startswith("tune-app: trial-00 failed: [Errno 28] No space left on device")
    assert errors.file == (run / ERRORS_FILE if manifest else errors.file)
    if not manifest:  # a run folder without its manifest is not written into
        assert errors.file.parent != run and sorted(p.name for p in run.iterdir()) == []
    logged = errors.file.read_text()
    assert "Traceback (most recent call last)" in logged and "OSError" in logged
    if not manifest:
        errors.file.unlink()


def test_a_trial_failure_after_the_run_folder_went_stops_the_run(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / MANIFEST).write_text("{}")
    stop = StopWhenRunGone(locate(str(run)))
    stop.on_trial_recover(0, [], None)  # type: ignore[arg-type]  # the run is there: Ray retries
    (run / MANIFEST).unlink()
    with pytest.raises(RunFolderGone):
        stop.on_trial_recover(0, [], None)  # type: ignore[arg-type]
    with pytest.raises(RunFolderGone):
        stop.on_trial_error(0, [], None)  # type: ignore[arg-type]


def test_the_run_stops_between_results_once_its_folder_went(tmp_path: Path, monkeypatch):
    # CI stop 28: the trial trained on after the folder was deleted until its next checkpoint,
    # and Ray's periodic experiment-state save (every >= 10 s) made the folder again meanwhile
    run = tmp_path / "run"
    run.mkdir()
    (run / MANIFEST).write_text("{}")
    clock = [100.0]
    monkeypatch.setattr("tune_app.tune.trial_errors.time.monotonic", lambda: clock[0])
    stop = StopWhenRunGone(locate(str(run)))
    clock[0] += 1.0
    stop.on_step_begin(0, [])  # the run is there: nothing happens
    (run / MANIFEST).unlink()
    clock[0] += 0.1
    stop.on_step_begin(1, [])  # checked 0.1 s ago: not again yet (a stat per step at most 2/s)
    clock[0] += 1.0
    with pytest.raises(RunFolderGone):
        stop.on_step_begin(2, [])


def test_a_remote_store_that_does_not_answer_is_not_a_deleted_run(tmp_path: Path, monkeypatch):
    import pyarrow.fs as pafs

    from tune_app.runs.storage import Location

    remote = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())  # not a local fs
    stop = StopWhenRunGone(Location(remote, "run", "s3://bucket/run"))
    assert stop.every == REMOTE_CHECK_S  # each check is a request

    def unreachable(self: Location) -> bool:
        raise OSError("connection timed out")

    monkeypatch.setattr(Location, "exists", unreachable)
    stop.checked -= REMOTE_CHECK_S + 1
    stop.on_step_begin(0, [])  # no answer: the run goes on
    monkeypatch.undo()
    stop.checked -= REMOTE_CHECK_S + 1
    with pytest.raises(RunFolderGone):  # the store answers: no manifest
        stop.on_step_begin(1, [])


def test_a_task_error_nobody_read_is_one_line_too(tmp_path: Path, capsys):
    # a trial's task that failed while the stopping run's cleanup waited on it: Ray logs its
    # whole remote traceback as "Unhandled error" on the driver's stderr
    run = tmp_path / "run"
    run.mkdir()
    (run / MANIFEST).write_text("{}")
    logger = logging.getLogger(RAY_WORKER_LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    remote = "ray::ImplicitFunc.train()\nTraceback (most recent call last):\n  File x\nRuntimeError: Unable to set up cluster storage\nStorageContext<\n>"
    try:
        with trial_errors(locate(str(run))) as errors:
            logger.error(
                f"Unhandled error (suppress with 'RAY_IGNORE_UNHANDLED_ERRORS=1'): {remote}"
            )
            logger.error("another record")
        err = capsys.readouterr().err
    finally:
        logger.removeHandler(handler)
    assert "Traceback" not in err and "another record" in err, err
    line = next(line for line in err.splitlines() if line.startswith("tune-app:"))
    assert "RuntimeError: Unable to set up cluster storage" in line and str(errors.file) in line
    assert errors.file == run / ERRORS_FILE and "Traceback" in errors.file.read_text()


def test_a_run_resumed_after_its_folder_moved_is_not_taken_for_gone(tmp_path: Path):
    # fresh-s3: Tuner.restore unpickles this callback with the folder the run started in; a
    # run moved with `mv` and resumed where it is now failed "RunFolderGone" on every --resume
    from types import SimpleNamespace

    import pyarrow.fs as pafs

    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / MANIFEST).write_text("{}")
    stop = StopWhenRunGone(locate(str(tmp_path / "where-it-started")))
    storage = SimpleNamespace(
        storage_filesystem=pafs.LocalFileSystem(), experiment_fs_path=str(moved)
    )
    trials = [SimpleNamespace(storage=storage)]
    stop.on_trial_error(0, trials, trials[0])  # type: ignore[arg-type]
    stop.checked -= 10
    stop.on_step_begin(0, trials)  # type: ignore[arg-type]
    (moved / MANIFEST).unlink()
    with pytest.raises(RunFolderGone):
        stop.on_trial_error(0, trials, trials[0])  # type: ignore[arg-type]

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

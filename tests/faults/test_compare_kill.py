"""SIGKILL the driver of a compare mid-run; `--resume` repeats no finished trial.

A plan compared with itself: every trial of seed i trains to the same numbers, so after the
resume the differences are still exactly 0 only if the trials cut short went on bit for bit
from their last checkpoint. The kill takes the driver's whole session (the Ray processes it
started) and nothing else on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tune_app.runs.records import CompareResult
from tune_app.runs.storage import locate

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]
PHASE = 4
LAST = 5 * PHASE
TINY = ["--phase-epochs", str(PHASE), "--stride", "4", "--hidden", "16"]


def _epochs(run: Path) -> dict[str, list[int]]:
    """Checkpointed epochs per trial folder (a folder counts once it holds one)."""
    out: dict[str, list[int]] = {}
    for trial in run.iterdir():
        metas = [json.loads(p.read_text()) for p in trial.glob("checkpoint_*/meta.json")]
        if metas:
            out[trial.name] = sorted(m["epoch"] for m in metas)
    return out


def _session(sid: int) -> list[int]:
    """The processes of session `sid` (the driver and what it started), by /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
                    pids.append(int(entry.name))
    return pids


def _kill_session_when(argv: list[str], ready, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(
        argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and not ready():
            time.sleep(0.2)
        assert proc.poll() is None, "the compare ended before the kill; make it longer"
        assert ready(), "the compare never reached the point to kill it at"
    finally:
        for pid in _session(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 60
    while _session(proc.pid) and time.monotonic() < deadline:  # Ray's own children, if any
        for pid in _session(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(1)


def test_a_killed_compare_resumes_without_repeating_finished_trials(tmp_path: Path):
    storage, run = tmp_path / "s", tmp_path / "s" / "k"
    argv = [*CLI, "compare", "seed", "seed", *TINY, "--seeds", "3", "--storage", str(storage)]
    argv += ["--name", "k", "--cpus-per-trial", "1"]

    def ready() -> bool:  # some trials finished, some not
        done = [e for e in _epochs(run).values() if e[-1] == LAST] if run.exists() else []
        return 2 <= len(done) < 6

    _kill_session_when(argv, ready)
    before = _epochs(run)
    finished = {name for name, epochs in before.items() if epochs[-1] == LAST}
    stamps = {
        name: sorted((p.name, p.stat().st_mtime_ns) for p in (run / name).glob("checkpoint_*/*"))
        for name in finished
    }
    assert not (run / "comparison.json").exists()
    done = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = _epochs(run)
    assert len(after) == 6 and all(epochs[-1] == LAST for epochs in after.values())
    for name in finished:  # not trained again: the same checkpoints, untouched
        assert after[name] == before[name]
        files = sorted((p.name, p.stat().st_mtime_ns) for p in (run / name).glob("checkpoint_*/*"))
        assert files == stamps[name], name
    for name, epochs in before.items():  # cut short: went on from its last checkpoint
        assert after[name][: len(epochs)] == epochs
    result = CompareResult.read(locate(run))
    assert result is not None
    (comparison,) = result.comparisons
    assert comparison.seeds == (1000, 1001, 1002)
    assert comparison.mean.differences == (0.0, 0.0, 0.0)  # resumed bit for bit

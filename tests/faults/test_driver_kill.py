"""SIGKILL the driver of a baseline and of a search mid-run; `--resume` completes the run.

The baseline ends with the same final metrics as an undisturbed in-process run (deterministic on
CPU). The search keeps its PBT journal (what was written before the kill is still there, in order),
and every trial continues from its last phase-boundary checkpoint, not from scratch.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]
PHASE = 20
TINY = ["--phase-epochs", str(PHASE), "--stride", "4", "--hidden", "16", "--cpus-per-trial", "0.5"]
LAST = 5 * PHASE
MARKER = "TUNE_APP_TEST_DRIVER_KILL"


def _checkpoint_epochs(run: Path) -> dict[str, list[int]]:
    """Checkpointed epochs per trial folder. A folder counts once it holds a checkpoint: the
    driver syncs `params.json` into storage later than a worker persists its checkpoints, so a
    trial may have checkpoints before its `params.json` shows up."""
    out: dict[str, list[int]] = {}
    for trial in run.iterdir():
        metas = [json.loads(p.read_text()) for p in trial.glob("checkpoint_*/meta.json")]
        if metas:
            out[trial.name] = sorted(m["epoch"] for m in metas)
    return out


def _rows(run: Path) -> dict[str, list[dict]]:
    return {
        trial.name: [
            json.loads(line)
            for line in (trial / "result.json").read_text().splitlines()
            if line.strip()
        ]
        for trial in run.iterdir()
        if (trial / "result.json").exists()
    }


def _kill_when(argv: list[str], ready, timeout: float = 240) -> None:  # type: ignore[no-untyped-def]
    """Start the driver in its own session; SIGKILL the whole session once `ready()` holds.
    The driver's environment carries a marker that Ray's processes inherit, so only this run's
    Ray is waited for and cleared (another Ray on the machine is left alone)."""
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        argv,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, MARKER: marker},
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready():
                break
            time.sleep(0.3)
        assert proc.poll() is None, "the run ended before the kill; make it longer"
        assert ready(), "the run never reached the point to kill it at"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _wait_for_ray_to_go(marker)


def _marked(marker: str) -> list[int]:
    """The pids whose environment carries `marker` (Linux: /proc/<pid>/environ)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if f"{MARKER}={marker}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
    return found


def _wait_for_ray_to_go(marker: str, timeout: float = 60) -> None:
    """Ray's own processes (raylet, workers) notice the dead driver and exit; a worker may still
    finish its epoch and persist a checkpoint meanwhile. Wait for them, then clear stragglers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _marked(marker):
        time.sleep(1)
    for pid in _marked(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(2)


def _resume(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_killed_baseline_resumes_to_the_undisturbed_result(tmp_path: Path):
    storage, run = tmp_path / "s", tmp_path / "s" / "b"
    argv = [*CLI, "baseline", *TINY, "--storage", str(storage), "--name", "b"]

    def reached(epoch: int) -> bool:
        return run.exists() and any(
            e >= epoch for epochs in _checkpoint_epochs(run).values() for e in epochs
        )

    _kill_when(argv, lambda: reached(2 * PHASE))
    killed_at = max(e for epochs in _checkpoint_epochs(run).values() for e in epochs)
    assert killed_at < LAST
    _resume([*argv, "--resume"])
    (epochs,) = _checkpoint_epochs(run).values()
    assert epochs == [PHASE * k for k in range(1, 6)]
    subprocess.run(
        [*CLI, "train", *TINY[:-2], "--out", str(tmp_path / "local"), "--progress-every", "100"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    local = pd.read_parquet(tmp_path / "local" / "metrics.parquet")
    (rows,) = _rows(run).values()
    final = [r for r in rows if r["epoch"] == LAST][-1]
    assert final["val_free_loss"] == local["val_free_loss"].iloc[-1]


def test_killed_search_resumes_with_its_journal_intact(tmp_path: Path):
    storage, run = tmp_path / "s", tmp_path / "s" / "p"
    journal = run / "pbt_journal.jsonl"
    argv = [
        *CLI,
        "search",
        *TINY,
        "--population",
        "4",
        "--quantile-fraction",
        "0.5",
        "--storage",
        str(storage),
        "--name",
        "p",
    ]

    def ready() -> bool:
        return (
            journal.exists()
            and run.exists()
            and len(epochs := _checkpoint_epochs(run)) == 4
            and all(max(e) >= 2 * PHASE for e in epochs.values())
        )

    _kill_when(argv, ready)
    before = journal.read_text().splitlines()
    checkpoints_before = {name: max(epochs) for name, epochs in _checkpoint_epochs(run).items()}
    rows_before = {name: len(rows) for name, rows in _rows(run).items()}
    _resume([*argv, "--resume"])
    after = journal.read_text().splitlines()
    assert after[: len(before)] == before
    assert all(max(epochs) == LAST for epochs in _checkpoint_epochs(run).values())
    events = [json.loads(line) for line in after]
    rounds = [e["epoch"] for e in events if e.get("event") == "round"]
    assert rounds == sorted(set(rounds)) == list(range(PHASE, LAST, PHASE))  # each once, in order
    exploits = [e for e in events if e.get("event", "exploit") == "exploit"]
    assert {e["epoch"] for e in exploits} == set(rounds)  # every round copied a donor
    checkpoints_after = _checkpoint_epochs(run)
    for name, rows in _rows(run).items():
        new = [r for r in rows[rows_before.get(name, 0) :] if not r.get("rejoined_round")]
        if not new:
            continue
        trial_id = rows[0]["trial_id"]
        first = int(new[0]["epoch"])
        exploited = any(e["trial"] == trial_id and int(e["epoch"]) + 1 == first for e in exploits)
        # continued from its last boundary checkpoint (or from a donor's), never from scratch:
        # the last one seen after the kill, or a newer one of its own that a worker still
        # persisted while Ray wound down (the trial then resumes from that one)
        continued = first - 1 in checkpoints_after[name] and first - 1 >= checkpoints_before[name]
        assert continued or exploited, (name, first, checkpoints_before[name])

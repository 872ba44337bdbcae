"""Faults inside a running trial, with the driver alive: a killed worker process, and a checkpoint
truncated or swapped for a pickle that would run code. The trial goes on from the last good
phase-boundary checkpoint and ends with the same final metrics as an undisturbed run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]
PHASE = 20
TINY = ["--phase-epochs", str(PHASE), "--stride", "4", "--hidden", "16"]


class Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("this would run code",))


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> float:
    out = tmp_path_factory.mktemp("local")
    subprocess.run(
        [*CLI, "train", *TINY, "--out", str(out), "--progress-every", "100"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return float(pd.read_parquet(out / "metrics.parquet")["val_free_loss"].iloc[-1])


def _checkpoints(run: Path) -> list[Path]:
    return (
        sorted(
            run.glob("*/checkpoint_*"),
            key=lambda p: json.loads((p / "meta.json").read_text())["epoch"],
        )
        if run.exists()
        else []
    )


def _descendants(root: int) -> set[int]:
    """Every process below `root` (its Ray's GCS, raylet and their workers), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while read
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _worker_pids(driver: int) -> list[int]:
    """The trial workers of the Ray that `driver` started: only its own (fresh-i22c: a pgrep
    over the whole machine killed other Ray runs' trials too)."""
    found = subprocess.run(
        ["pgrep", "-f", "ray::ImplicitFunc|ray::run_trial"], capture_output=True, text=True
    )
    own = _descendants(driver)
    return [int(pid) for pid in found.stdout.split() if int(pid) in own]


@pytest.mark.parametrize("damage", ["none", "truncate", "pickle"])
def test_worker_killed_mid_phase_resumes_from_last_good_checkpoint(
    damage, undisturbed, tmp_path: Path
):
    run = tmp_path / "s" / "b"
    driver = subprocess.Popen(
        [*CLI, "baseline", *TINY, "--storage", str(tmp_path / "s"), "--name", "b"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(_checkpoints(run)) < 2:
        time.sleep(0.2)
    assert len(_checkpoints(run)) >= 2, "the run never reached its second checkpoint"
    time.sleep(0.5)  # now somewhere inside phase 3
    latest = _checkpoints(run)[-1]
    if damage == "truncate":
        data = (latest / "state.pt").read_bytes()
        (latest / "state.pt").write_bytes(data[: len(data) // 3])
    elif damage == "pickle":
        torch.save({"format": 1, "model": Evil()}, latest / "state.pt")
    pids = _worker_pids(driver.pid)
    assert pids, "no trial process to kill"
    for pid in pids:
        subprocess.run(["kill", "-9", str(pid)])
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-3000:]
    rows = [json.loads(line) for line in next(run.glob("*/result.json")).read_text().splitlines()]
    final = [r for r in rows if r["epoch"] == 5 * PHASE][-1]
    assert final["val_free_loss"] == undisturbed
    if damage != "none":
        assert "skipping checkpoint" in output and (
            "corrupt or truncated" in output or "could run code" in output
        )

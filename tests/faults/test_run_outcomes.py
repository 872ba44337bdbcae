"""How a Ray run ends when it cannot succeed: every member diverging exits 1 with a summary;
Ctrl-C answers with tune_app's own resume command, which then completes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]
TINY = ["--stride", "4", "--hidden", "16", "--cpus-per-trial", "0.5"]


def test_search_in_which_every_member_diverges_exits_1(tmp_path: Path):
    high_lr = [f"--set=phases.{i}.lr=1000" for i in range(1, 6)]
    argv = [*CLI, "search", *TINY, "--phase-epochs", "2", "--population", "2", *high_lr]
    done = subprocess.run(
        [*argv, "--storage", str(tmp_path), "--name", "d"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no trial finished: 2 diverged, 0 failed, of 2" in done.stderr
    assert done.stderr.count("diverged at epoch") >= 2


def _interrupted_and_resumed(
    argv: list[str], run: Path, pattern: str, poll_s: float
) -> tuple[str, str, subprocess.CompletedProcess]:
    """Starts `argv`, sends Ctrl-C once `run` holds a `pattern` file, checks exit 130, runs the
    printed resume command; returns (the run's stdout, its stderr, the resumed run)."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(run.glob(pattern)):
        time.sleep(poll_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    hint = err.split("resume with: tune-app ", 1)[1].splitlines()[0]
    resumed = subprocess.run(
        [*CLI, *hint.split()], capture_output=True, text=True, timeout=600, env={**os.environ}
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return out, err, resumed


def test_ctrl_c_in_a_search_names_tune_apps_resume(tmp_path: Path):
    argv = [*CLI, "search", *TINY, "--phase-epochs", "3", "--population", "2"]
    argv += ["--storage", str(tmp_path), "--name", "p"]
    out, err, _ = _interrupted_and_resumed(argv, tmp_path / "p", "*/checkpoint_*", 1.0)
    assert "Tuner.restore" not in out + err
    hint = err.split("resume with: tune-app ", 1)[1].splitlines()[0]
    assert f"--resume --name p --storage {tmp_path}" in hint


def test_ctrl_c_before_the_first_result_and_its_resume_show_no_ray_warning(tmp_path: Path):
    """fresh-s3b: a Ctrl-C as soon as Ray saved the run's state (no trial result yet), and the
    --resume of that run, printed Tune's "Failed to fetch metrics ... FileNotFoundError" for
    a trial that had simply not reported yet (ray_messages.NoResultYet drops it)."""
    argv = [*CLI, "baseline", *TINY, "--phase-epochs", "30"]
    argv += ["--storage", str(tmp_path), "--name", "b"]
    _, err, resumed = _interrupted_and_resumed(argv, tmp_path / "b", "experiment_state*", 0.05)
    assert "Failed to fetch metrics" not in err + resumed.stderr, err[-2000:] + resumed.stderr

"""A run's own Ray starts its trial workers at the driver's priority (Ray's default is 15 nicer:
beside any busy process, a trial then gets a few percent of a core), unless the user set
RAY_worker_niceness."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tune_app.errors import InputError
from tune_app.tune.cluster import local_system_config
from tune_app.tune.ray_env import check_niceness


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"worker_niceness": 0}),
        ({"RAY_worker_niceness": "15"}, {}),  # the user's choice: Ray applies it
        ({"RAY_worker_niceness": "0"}, {}),
    ],
)
def test_a_runs_own_ray_starts_workers_at_the_drivers_niceness(environ, expected):
    assert local_system_config(environ) == expected


GOOD = ["15", "0", "-1", "+3", " 3", "\t4", "99"]
BAD = ["abc", "1.5", "", "3 ", "0x3", "1_0", "\uff13"]  # the last: a full-width digit 3


@pytest.mark.parametrize("value", GOOD + BAD)
def test_a_niceness_is_read_as_ray_reads_it(value: str):
    if value in GOOD:
        check_niceness({"RAY_worker_niceness": value})
    else:
        with pytest.raises(InputError, match=r"RAY_worker_niceness=.*not a whole number"):
            check_niceness({"RAY_worker_niceness": value})


def test_the_values_refused_are_those_that_crash_import_ray():
    """Ray's C++ config reader parses the variable when `ray` is imported; what it cannot
    parse ends the process (a segmentation fault), what it can is imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    for value in ["abc", "3 ", " 3", "+3", "1_0"]:
        done = subprocess.run(
            [sys.executable, "-c", "import ray"],
            env={**env, "RAY_worker_niceness": value},
            capture_output=True,
            timeout=120,
        )
        assert (done.returncode == 0) == (value not in BAD), (value, done.returncode)


def test_a_niceness_ray_cannot_read_is_one_line_before_ray_starts(tmp_path: Path):
    """Today `import ray` segfaults on it (exit 139, nothing said)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    argv = [sys.executable, "-m", "tune_app.cli", "baseline", "--storage", str(tmp_path / "s")]
    done = subprocess.run(
        [*argv, "--phase-epochs", "1"],
        env={**env, "RAY_worker_niceness": "abc"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "RAY_worker_niceness='abc': not a whole number" in lines[0]
    assert not (tmp_path / "s").exists()


def _niceness(pid: int) -> int:
    """A process's niceness, field 19 of /proc/PID/stat (after the command's parentheses)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[16])


def _trial_processes(mark: str) -> dict[int, int]:
    """pid -> niceness of the trial workers (`ray::ImplicitFunc...`) of the run marked `mark`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                continue
            if mark.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = _niceness(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.slow
@pytest.mark.parametrize(
    ("driver_nice", "environ", "increment"),
    [
        (0, {}, 0),  # the usual shell
        (5, {}, 0),  # `nice -n 5 tune-app baseline ...`
        (0, {"RAY_worker_niceness": "3"}, 3),  # the user's own setting stays
    ],
)
def test_a_local_baselines_trial_runs_at_the_drivers_niceness(
    tmp_path: Path, driver_nice: int, environ: dict[str, str], increment: int
):
    mark = f"TUNE_APP_TEST_RUN={uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_worker"))}
    env.update(environ, **dict([mark.split("=", 1)]))
    argv = [sys.executable, "-m", "tune_app.cli", "baseline", "--storage", str(tmp_path)]
    argv += ["--phase-epochs", "4", "--stride", "4", "--hidden", "16"]
    run = subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.nice(driver_nice),
    )
    seen: dict[int, int] = {}
    driver = None
    deadline = time.monotonic() + 600
    while run.poll() is None and time.monotonic() < deadline:
        driver = _niceness(run.pid) if driver is None else driver
        seen.update(_trial_processes(mark))
        time.sleep(0.1)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr[-2000:]
    assert driver == os.nice(0) + driver_nice
    assert seen, "no trial worker seen"
    assert set(seen.values()) == {driver + increment}, seen

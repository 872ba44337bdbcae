"""The storage fills up mid-run: the run ends with a clear error (exit 1, no traceback), and the
half-written checkpoint folders are never taken for checkpoints: `best` exports the last good one."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_storage_full_mid_run(small_disk: Path, tmp_path: Path):
    run = small_disk / "b"
    driver = subprocess.Popen(
        [
            *CLI,
            "baseline",
            "--phase-epochs",
            "20",
            "--stride",
            "4",
            "--hidden",
            "16",
            "--storage",
            str(small_disk),
            "--name",
            "b",
            "--max-failures",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(run.glob("*/checkpoint_*/meta.json")):
        time.sleep(0.2)
    assert list(run.glob("*/checkpoint_*/meta.json")), "no first checkpoint"
    with open(small_disk / "filler", "wb") as filler:  # fill the disk
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 1, out[-2000:] + err[-2000:]
    # Ray either ends the trial (reported per trial) or cannot even write its own state (the run
    # stops): either way the last word is ours, one line, saying the storage is full
    last = err.strip().splitlines()[-1]
    assert last.startswith(("tune-app: the run at", "trial failed:")), err[-3000:]
    assert "storage is full" in last, err[-3000:]
    assert "Traceback" not in err, err[-3000:]  # Ray's trial tracebacks went to a file, named
    for logged in set(re.findall(r"Ray's traceback: (\S+)\)", err)):
        assert "Traceback" in Path(logged).read_text()
        Path(logged).unlink()  # in the temporary folder: the full disk could not take it
    (small_disk / "filler").unlink()
    best = subprocess.run(
        [*CLI, "best", str(run), "--out", str(tmp_path / "best")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert best.returncode == 0, best.stderr
    config = json.loads((tmp_path / "best" / "config.json").read_text())
    assert config["epoch"] == 20  # the one sound checkpoint, not a half-written later one

"""A real local multi-node Ray cluster (`ray start --head` + a worker node), joined with --address."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_baseline_through_address_on_a_two_node_cluster(local_cluster: str, tmp_path: Path):
    storage = tmp_path / "storage"
    cli = [sys.executable, "-m", "tune_app.cli"]
    run = subprocess.run(
        [
            *cli,
            "baseline",
            "--address",
            local_cluster,
            "--storage",
            str(storage),
            "--name",
            "c",
            "--phase-epochs",
            "2",
            "--stride",
            "4",
            "--hidden",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    status = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "status", "--address", local_cluster],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.stdout.count("node_") >= 2, status.stdout  # two nodes were in the cluster
    best = subprocess.run(
        [*cli, "best", str(storage / "c")], capture_output=True, text=True, timeout=120
    )
    assert best.returncode == 0, best.stderr
    config = json.loads((storage / "c" / "best" / "config.json").read_text())
    assert config["epoch"] == 10

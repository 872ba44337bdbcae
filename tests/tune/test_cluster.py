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


def test_search_spreads_a_population_of_three_over_the_nodes(local_cluster: str, tmp_path: Path):
    """Three nodes of one CPU each and three trials of one CPU: trials that run at the same
    time run on different nodes. Then `best` reads the run back."""
    storage = tmp_path / "storage"
    cli = [sys.executable, "-m", "tune_app.cli"]
    run = subprocess.run(
        [
            *cli,
            "search",
            "--address",
            local_cluster,
            "--storage",
            str(storage),
            "--name",
            "p",
            "--population",
            "3",
            "--cpus-per-trial",
            "1",
            "--phase-epochs",
            "4",
            "--stride",
            "4",
            "--hidden",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    status = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "status", "--address", local_cluster],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.stdout.count("node_") >= 3, status.stdout
    spans = []
    for trial in (storage / "p").iterdir():
        if (trial / "result.json").exists():
            rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
            spans.append(
                (rows[0]["timestamp"] - rows[0]["time_this_iter_s"], rows[-1]["timestamp"])
            )
    assert len(spans) == 3
    start, end = max(s for s, _ in spans), min(e for _, e in spans)
    assert start < end, "all three trials ran at once, so on three different one-CPU nodes"
    best = subprocess.run(
        [*cli, "best", str(storage / "p")], capture_output=True, text=True, timeout=120
    )
    assert best.returncode == 0, best.stderr
    assert "control" in best.stdout


def test_resources_no_node_has_are_refused_after_a_bounded_wait(local_cluster: str, tmp_path: Path):
    """Three nodes of one CPU: three CPUs in all, but a 2-CPU trial fits on none of them."""
    storage = tmp_path / "storage"
    argv = [sys.executable, "-m", "tune_app.cli", "baseline", "--address", local_cluster]
    argv += ["--storage", str(storage), "--cpus-per-trial", "2", "--wait-for-resources", "3"]
    run = subprocess.run(
        [*argv, "--phase-epochs", "1"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "--cpus-per-trial 2 but the largest node of the cluster at" in run.stderr
    assert "has 1 CPU (waited 3 s)" in run.stderr and "Traceback" not in run.stderr
    assert not storage.exists()

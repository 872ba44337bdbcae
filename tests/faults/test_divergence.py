"""A trial that diverges in a search: stopped, reported as diverged, never a donor; the rest of
the population finishes and `best` exports a finite winner. The divergence is injected into one
member (tests/faults/inject/sitecustomize.py) since no modification within bounds makes training
blow up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

INJECT = Path(__file__).parent / "inject"


def test_diverged_member_is_stopped_and_never_copied(tmp_path: Path):
    env = {
        **os.environ,
        "PYTHONPATH": f"{INJECT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "TUNE_APP_TEST_DIVERGE_MEMBER": "2",
        "TUNE_APP_TEST_DIVERGE_EPOCH": "3",
    }
    storage = tmp_path / "s"
    cli = [sys.executable, "-m", "tune_app.cli"]
    done = subprocess.run(
        [
            *cli,
            "search",
            "--phase-epochs",
            "2",
            "--stride",
            "4",
            "--hidden",
            "16",
            "--cpus-per-trial",
            "0.5",
            "--population",
            "4",
            "--quantile-fraction",
            "0.5",
            "--storage",
            str(storage),
            "--name",
            "p",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {}
    for trial in (storage / "p").iterdir():
        if (trial / "result.json").exists():
            lines = (trial / "result.json").read_text().splitlines()
            rows[trial.name] = [json.loads(line) for line in lines]
    diverged = {r[0]["trial_id"] for r in rows.values() if any(x.get("diverged") for x in r)}
    assert len(diverged) == 1
    finished = [r for r in rows.values() if r[0]["trial_id"] not in diverged]
    assert len(finished) == 3 and all(r[-1]["epoch"] == 10 for r in finished)
    journal = storage / "p" / "pbt_journal.jsonl"
    events = (
        [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
    )
    exploits = [e for e in events if e.get("event", "exploit") == "exploit"]
    assert exploits and all(e["donor"] not in diverged for e in exploits)
    for event in (e for e in events if e.get("event") == "round"):  # ranked only while alive
        ranked = {r["trial"] for r in event["ranking"]}
        assert not (ranked & diverged) or event["epoch"] < 3
    best = subprocess.run(
        [*cli, "best", str(storage / "p")], capture_output=True, text=True, timeout=300
    )
    assert best.returncode == 0, best.stderr
    assert (
        "val_free_loss = " in best.stdout and "inf" not in best.stdout.split("val_free_loss = ")[1]
    )

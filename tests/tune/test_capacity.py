"""Capacity search: Optuna proposes, ASHA stops early, the best model config feeds `baseline`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tune_app.cli import main

pytestmark = pytest.mark.slow

TINY = ["--phase-epochs", "2", "--stride", "4", "--cpus-per-trial", "0.5"]


def test_capacity_search_stops_trials_early_and_its_config_feeds_baseline(
    ray_local, tmp_path: Path
):
    storage = tmp_path / "storage"
    assert (
        main(["capacity", *TINY, "--trials", "6", "--storage", str(storage), "--name", "cap"]) == 0
    )
    run = storage / "cap"
    lengths = []
    for trial in run.iterdir():
        if (trial / "result.json").exists():
            rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
            lengths.append(len(rows))
            assert set(rows[0]["config"]["capacity"]) == {
                "hidden",
                "layers",
                "dropout",
                "cell",
                "input_len",
            }
    assert len(lengths) == 6
    folders = sorted(t.name for t in run.iterdir() if (t / "result.json").exists())
    assert folders == [f"trial-{i:02d}" for i in range(6)]  # as the README names them
    assert min(lengths) < 10 and max(lengths) == 10, (
        lengths
    )  # ASHA stopped some, one ran to the end
    chosen = json.loads((run / "best_model_config.json").read_text())
    assert chosen["model"]["hidden"] >= 16 and chosen["data"]["input_len"] in (24, 48, 72)

    assert (
        main(
            [
                "baseline",
                *TINY,
                "--model-config",
                str(run / "best_model_config.json"),
                "--storage",
                str(storage),
                "--name",
                "base",
            ]
        )
        == 0
    )
    assert main(["best", str(storage / "base"), "--out", str(tmp_path / "best")]) == 0
    exported = json.loads((tmp_path / "best" / "config.json").read_text())
    assert exported["model"] == chosen["model"]
    assert exported["data"]["input_len"] == chosen["data"]["input_len"]
    assert main(["report", str(run), "--out", str(tmp_path / "report")]) == 0
    assert "Parameter importances" in (tmp_path / "report" / "report.html").read_text()

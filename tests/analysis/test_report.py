"""The report: every section and image, on a finished run and on one still going."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tiny import train_tiny

from tune_app.analysis.report import plateaus
from tune_app.cli import main
from tune_app.plan.plan import load_plan

BASE_SECTIONS = [
    "Trials",
    "Learning curves",
    "Train/val gap",
    "Per-component validation losses",
    "Schedules used",
]


def fake_run(
    root: Path, dataset, kind: str = "baseline", trials: int = 1, epochs: int | None = None
) -> Path:  # type: ignore[no-untyped-def]
    """A run directory laid out as Ray Tune writes one, from real in-process training."""
    plan = load_plan(phase_epochs=2)
    run = root / kind
    run.mkdir(parents=True)
    (run / "tune_app_run.json").write_text(
        json.dumps({"kind": kind, "spec": {"plan": plan.to_dict(), "train": {}}})
    )
    for index in range(trials):
        trial_dir = run / f"run_trial_{index}"
        result = train_tiny(plan, dataset, trial_dir / "work", stop_after=epochs)
        member = {"index": index, "control": index == 0, "params": {"alpha_shift": 0.1 * index}}
        params = (
            {"member": member}
            if kind == "search"
            else {"capacity": {"hidden": 16 + index, "layers": 1}}
            if kind == "capacity"
            else {}
        )
        (trial_dir / "params.json").write_text(json.dumps(params))
        rows = [
            {**row, "trial_id": f"t{index}", "training_iteration": row["epoch"], "config": params}
            for row in result.history
        ]
        (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for number, checkpoint in enumerate(sorted((trial_dir / "work" / "checkpoints").iterdir())):
            shutil.copytree(checkpoint, trial_dir / f"checkpoint_{number:06d}")
    if kind == "search":
        (run / "pbt_journal.jsonl").write_text(
            json.dumps(
                {
                    "epoch": 2,
                    "trial": "t1",
                    "donor": "t0",
                    "val_free_loss": 1.0,
                    "donor_val_free_loss": 0.9,
                }
            )
            + "\n"
        )
    return run


def _check(out: Path, sections: list[str], images_expected: int = 4) -> str:
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    for title in sections:
        assert f"<h2>{title}</h2>" in page, title
        assert f"## {title}" in markdown, title
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == len(re.findall(r"!\[", markdown)) == images_expected
    assert all(len(i) > 1000 for i in images)
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (out / name).is_file()
    return page


@pytest.mark.parametrize(
    ("kind", "extra", "images"),
    [
        ("baseline", [], 4),
        ("search", ["PBT family tree", "Modifications ranked"], 5),
        ("capacity", ["Parameter importances"], 5),
    ],
)
def test_report_sections_for_each_kind(kind, extra, images, tiny_dataset, tmp_path: Path):
    run = fake_run(tmp_path, tiny_dataset, kind, trials=1 if kind == "baseline" else 3)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    page = _check(tmp_path / "out", BASE_SECTIONS + extra, images)
    if kind == "search":
        assert "(control)" in page or "control" in page


def test_report_on_a_run_still_going(tiny_dataset, tmp_path: Path):
    run = fake_run(tmp_path, tiny_dataset, "baseline", epochs=3)
    with open(next(run.glob("run_trial_*")) / "result.json", "a") as handle:
        handle.write('{"epoch": 4, "val_free')  # a line being written right now
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    page = _check(tmp_path / "out", BASE_SECTIONS)
    assert "not finished yet" in page


def test_report_on_a_run_with_no_results_yet(tmp_path: Path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "tune_app_run.json").write_text(json.dumps({"kind": "search"}))
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    assert "No trial has reported" in (tmp_path / "out" / "report.html").read_text()


def test_report_on_something_that_is_not_a_run(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a tune_app run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([5, 4, 3, 2, 1], []),
        ([5] + [6] * 35 + [4], [(2, 36)]),
        ([5] + [6] * 31, [(2, 32)]),
        ([5] + [6] * 30, []),
    ],
)
def test_plateaus_longer_than_30_epochs(losses, expected):
    frame = pd.DataFrame({"epoch": range(1, len(losses) + 1), "val_free_loss": losses})
    assert plateaus(frame, 30) == expected


def test_tables_use_the_checkpoint_history_not_a_cut_short_result_json(
    tiny_dataset, tmp_path: Path, capsys
):
    """Failure 2 of issue 12: an exploited trial's result.json can stop early (6 rows where its
    checkpoints hold 10 epochs); `best` and `report` showed the winner at a worse value."""
    from tune_app.runs.results import open_run, trial_table

    run = fake_run(tmp_path, tiny_dataset, "search", trials=2)
    cut = run / "run_trial_1" / "result.json"
    rows = cut.read_text().splitlines()
    cut.write_text("\n".join(rows[:2]) + "\n")  # Tune's record of trial 1 cut short
    history = pd.read_parquet(sorted(run.glob("run_trial_1/checkpoint_*"))[-1] / "metrics.parquet")
    assert len(history) == len(rows) == 10
    (row,) = [r for r in trial_table(open_run(str(run))) if r["trial"] == "t1"]
    assert row["epochs"] == 10
    assert row["best_val_free_loss"] == pytest.approx(history["val_free_loss"].min())
    assert main(["best", str(run), "--out", str(tmp_path / "best")]) == 0
    summary = capsys.readouterr().out
    assert f"{history['val_free_loss'].min():.6f}" in summary
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    assert f"{history['val_free_loss'].min():.6g}" in (tmp_path / "out" / "report.html").read_text()

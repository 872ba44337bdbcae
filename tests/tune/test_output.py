"""What a search prints, end to end through the CLI: short lines, few of them, short folders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tune_app.cli import main

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]
# 5 phases of 1 epoch: a 5-epoch plan, perturbed at each phase boundary
TINY = ["--phase-epochs", "1", "--stride", "4", "--hidden", "16", "--cpus-per-trial", "0.5"]
# Ray's own log lines that may run long: its warnings (log records and Python warnings) and its
# note on deduplicated worker logs
RAYS_OWN = re.compile(r"\bWARNING\b|Warning:|Ray deduplicates logs")


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    storage = tmp_path_factory.mktemp("output")
    done = subprocess.run(
        [*CLI, "search", *TINY, "--population", "3", "--storage", str(storage), "--name", "s"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = (done.stdout + done.stderr).splitlines()
    assert done.returncode == 0, "\n".join(lines[-40:])
    return storage / "s", lines


def test_a_small_search_prints_short_lines_and_few_of_them(search):
    _run, lines = search
    long = [line for line in lines if len(line) > 200 and not RAYS_OWN.search(line)]
    assert not long, long[:3]
    assert len(lines) < 400, len(lines)
    assert not any("'spec'" in line or "'phases'" in line for line in lines)  # no config dump
    rows = [line for line in lines if line.startswith("member-0")]
    assert rows and all(len(line) <= 120 for line in rows)
    assert any(re.match(r"member-00 +control +TERMINATED +5/5", line) for line in rows)


def test_trial_folders_are_named_by_member(search):
    run, _lines = search
    folders = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert folders == ["member-00", "member-01", "member-02"]
    assert all(len(name) <= 60 for name in folders)


def test_its_report_opens_with_the_answer(search, tmp_path: Path):
    run, _lines = search
    assert main(["report", str(run), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    summary = markdown[markdown.index("## Summary") : markdown.index("## Trials")]
    assert "PBT search of 3 members" in summary and "5 epochs in 5 phases" in summary
    assert "test" in summary and "could not be computed" not in summary
    assert "| 5/5 |" in markdown and "not finished yet" not in markdown

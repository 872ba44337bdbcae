"""Names where records exist (issue 23, point 4): metric names as constants, every journal
read through its records, one explore function per method."""

from __future__ import annotations

import ast
import random
from pathlib import Path

from tune_app.runs.records import JournalEvent, RoundEvent, read_events
from tune_app.runs.storage import locate
from tune_app.training import metrics

PACKAGE = Path(__file__).resolve().parents[1] / "tune_app"
# the metric names no other word shares ("epoch" is also a field of several records)
LOSSES = {
    metrics.VAL_FREE_LOSS,
    metrics.BEST_VAL_FREE_LOSS,
    metrics.TRAIN_LOSS,
    metrics.VAL_LOSS,
    metrics.VAL_FREE_MSE,
}


def _strings(file: Path) -> list[tuple[int, str]]:
    """The string constants of `file` that are code, not docstrings."""
    tree = ast.parse(file.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_metric_names_are_constants_outside_analysis():
    found = [
        f"{file.relative_to(PACKAGE)}:{line}: {text!r}"
        for file in PACKAGE.rglob("*.py")
        if "analysis" not in file.parts and file.name != "metrics.py"
        for line, text in _strings(file)
        if text in LOSSES
    ]
    assert not found, found


def test_only_the_records_read_the_journal():
    """`records.read_events` reads pbt_journal.jsonl; the scheduler's Journal writes it."""
    users = sorted(
        str(file.relative_to(PACKAGE))
        for file in PACKAGE.rglob("*.py")
        if "JOURNAL"
        in {n.id for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.Name)}
    )
    assert users == ["runs/records.py", "tune/journal.py"]


def test_the_journal_round_trips_through_its_records(tmp_path: Path):
    from tune_app.tune.journal import Journal

    journal = Journal(locate(tmp_path))
    ranking = ({"trial": "t0", "member": 0, "val_free_loss": 1.0, "fitness": 1.0, "params": {}},)
    first = RoundEvent(epoch=2, ranking=ranking, selection="recent")
    exploit = JournalEvent(epoch=2, trial="t1", donor="t0", donor_val_free_loss=1.0, new={"a": 1})
    journal.append(first, exploit)
    journal.append(RoundEvent(epoch=4))
    assert read_events(locate(tmp_path)) == [first, exploit, RoundEvent(epoch=4)]
    assert journal.rounds_done() == {2, 4}
    assert [line["event"] for line in journal.lines()] == ["round", "exploit", "round"]
    (observed, donors) = journal.history()
    assert (observed.trial, observed.score, donors.trial, donors.params) == (
        "t0",
        1.0,
        "t1",
        {"a": 1},
    )


def test_one_explore_function_per_scheduler():
    from tune_app.plan.search_space import load_space
    from tune_app.tune.explore import EXPLORERS, Exploit, explore_pb2, explore_pbt
    from tune_app.tune.options import SCHEDULERS

    assert {"pbt": explore_pbt, "pb2": explore_pb2} == EXPLORERS
    assert tuple(EXPLORERS) == SCHEDULERS
    space = load_space(None, "modifications.yaml", "pbt").expand(["c0", "c1", "c2"])
    donor = space.sample(random.Random(1))
    runs = [explore_pbt(space, Exploit(donor), random.Random(4), 0.25) for _ in range(2)]
    assert runs[0] == runs[1] and runs[0][1] == "pbt"
    assert runs[0][0] == space.mutate(donor, random.Random(4), 0.25)

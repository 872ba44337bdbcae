"""What a person watching a run sees: one short row per member, short trial folders."""

from __future__ import annotations

import io
import random
from types import SimpleNamespace

import pytest

from tune_app.plan.plan import load_plan
from tune_app.plan.search_space import load_space
from tune_app.tune.progress import TrialTable, render, trial_dirname

SPACE = load_space(None, "modifications.yaml", "pbt").expand(["c0", "c1", "c2"])
SPEC = {"plan": load_plan(phase_epochs=100).to_dict(), "model": {"hidden": 64}}  # 500 epochs


def fake_trial(trial_id: str, config: dict, status: str = "RUNNING", result: dict | None = None):  # type: ignore[no-untyped-def]
    return SimpleNamespace(trial_id=trial_id, config=config, status=status, last_result=result)


def member(index: int) -> dict:
    params = SPACE.neutral() if index == 0 else SPACE.sample(random.Random(index))
    return {"spec": SPEC, "member": {"index": index, "control": index == 0, "params": params}}


RESULT = {
    "epoch": 123,
    "phase": 2,
    "lr": 3.2e-4,
    "teacher_forcing": 0.55,
    "alpha": 0.7,
    "val_free_loss": 1.23456,
    "best_val_free_loss": 1.2,
    "config": member(1),  # Ray's results carry the whole config: it must not be printed
}


@pytest.mark.parametrize(
    ("trial_id", "config", "expected"),
    [
        ("df039_00002", member(2), "member-02"),
        ("df039_00000", member(0), "member-00"),
        ("a1b2c_00003", {"spec": SPEC, "capacity": {"hidden": 32, "layers": 2}}, "trial-03"),
        ("df039_00000", {"spec": SPEC}, "trial-00"),
        ("e4f5a_00003", {"spec": SPEC, "arm": {"label": "B", "seed": 1001}}, "B-1001"),
        ("e4f5a_00007", {"spec": SPEC, "arm": {"label": "no-alpha", "seed": 9}}, "no-alpha-9"),
        ("d1e2f3a4", {"spec": SPEC}, "trial-d1e2f3a4"),
    ],
)
def test_trial_folders_are_short_names(trial_id, config, expected):
    name = trial_dirname(fake_trial(trial_id, config))
    assert name == expected and len(name) <= 60 and "/" not in name


def test_status_is_one_short_row_per_member_without_the_config():
    trials = [
        fake_trial("x_00002", member(2), "PAUSED", RESULT),
        fake_trial("x_00000", member(0), "RUNNING", {**RESULT, "val_free_loss": float("inf")}),
        fake_trial("x_00001", member(1), "PENDING", None),
    ]
    block = render(trials, 75.0, ["PopulationBasedTraining: 5 checkpoints, 1 perturbs", ""])
    lines = block.splitlines()
    assert len(lines) == 2 + len(trials)  # a header, the column titles, a row per member
    assert max(len(line) for line in lines) <= 160
    assert lines[0].startswith("== 01:15 elapsed: 3 trial(s)")
    assert lines[1].split() == [
        "member",
        "role",
        "status",
        "epoch",
        "phase",
        "lr",
        "tf",
        "alpha",
        "val_free",
        "best",
    ]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert list(rows) == ["member-00", "member-01", "member-02"]
    assert rows["member-00"][1:4] == ["control", "RUNNING", "123/500"]
    assert rows["member-00"][8] == "inf"
    assert rows["member-01"][1:] == ["search", "PENDING", "0/500", "-", "-", "-", "-", "-", "-"]
    assert rows["member-02"][3:] == ["123/500", "2", "3.2e-04", "0.55", "0.70", "1.2346", "1.2000"]
    assert "seed_500" not in block and "params" not in block and "{" not in block


def test_capacity_rows_show_the_capacity():
    config = {"spec": SPEC, "capacity": {"hidden": 32, "layers": 2, "dropout": 0.123456}}
    block = render([fake_trial("y_00004", config, "RUNNING", RESULT)], 3.0)
    assert block.splitlines()[1].endswith("capacity")
    assert block.splitlines()[2].startswith("trial-04")
    assert block.splitlines()[2].endswith("hidden=32 layers=2 dropout=0.123")


def test_table_prints_only_when_something_changed_and_at_the_end():
    stream = io.StringIO()
    table = TrialTable(every=0, stream=stream)
    trials = [fake_trial("x_00000", member(0), "RUNNING", RESULT)]
    assert table.should_report(trials)
    table.report(trials, False)
    assert not table.should_report(trials)  # nothing new
    trials[0].last_result = {**RESULT, "epoch": 124}
    assert table.should_report(trials)
    assert table.should_report(trials, done=True)
    assert stream.getvalue().count("member-00") == 1


def test_a_long_header_wraps_and_keeps_every_word():
    """Ray's status (a scheduler's note, resources on a cluster with custom resources) can run
    long: the header wraps at its width instead of losing its end."""
    trials = [fake_trial(f"x_{i:05d}", member(i), "PAUSED", RESULT) for i in range(8)]
    scheduler = "PB2 rounds every 25 epochs: 17 rounds, 17 exploits, 7 waiting at epoch 450"
    resources = (
        "Logical resource usage: 8.0/64 CPUs, 0/8 GPUs (0.0/8.0 accelerator_type:H100, "
        "0.0/2.0 node:__internal_head__, 0.0/16.0 memory_gib_per_worker_node_on_this_cluster)"
    )
    block = render(trials, 3725.0, [scheduler, resources])
    lines = block.splitlines()
    header = lines[: lines.index(next(line for line in lines if line.startswith("member")))]
    assert len(header) > 1 and all(len(line) <= 120 for line in header)
    assert all(line.startswith("   ") for line in header[1:])
    expected = f"== 62:05 elapsed: 8 trial(s), 8 paused | {scheduler} | " + resources.removeprefix(
        "Logical resource usage: "
    )
    assert " ".join(" ".join(header).split()) == expected  # every word, in order

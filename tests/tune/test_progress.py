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


def fake_trial(
    trial_id: str, config: dict, status: str = "RUNNING", result: dict | None = None, tag: str = ""
):  # type: ignore[no-untyped-def]
    return SimpleNamespace(
        trial_id=trial_id, config=config, status=status, last_result=result, experiment_tag=tag
    )


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


CAPACITY = {"spec": SPEC, "capacity": {"hidden": 32, "layers": 2}}


@pytest.mark.parametrize(
    ("trial_id", "config", "tag", "expected"),
    [
        ("df039_00002", member(2), "2", "member-02"),
        ("df039_00000", member(0), "0", "member-00"),
        ("a1b2c_00003", CAPACITY, "3", "trial-03"),
        ("df039_00000", {"spec": SPEC}, "0", "trial-00"),
        # Optuna's trials (SearchGenerator): a bare id, a tag counted from 1
        ("fe918ae6", CAPACITY, "1_capacity/hidden=32,capacity/layers=2", "trial-00"),
        ("0b1c2d3e", CAPACITY, "4_capacity/hidden=32", "trial-03"),
        ("e4f5a_00003", {"spec": SPEC, "arm": {"label": "B", "seed": 1001}}, "3", "B-1001"),
        ("e4f5a_00007", {"spec": SPEC, "arm": {"label": "no-alpha", "seed": 9}}, "7", "no-alpha-9"),
        ("d1e2f3a4", {"spec": SPEC}, "", "trial-d1e2f3a4"),
    ],
)
def test_trial_folders_are_short_names(trial_id, config, tag, expected):
    name = trial_dirname(fake_trial(trial_id, config, tag=tag))
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


def _spans(line: str, cells: list[str]) -> list[tuple[int, int]]:
    """Where each cell sits in `line`, in turn: (start, end) of its text."""
    spans, at = [], 0
    for cell in cells:
        start = line.index(cell, at)
        spans.append((start, start + len(cell)))
        at = start + len(cell)
    return spans


def test_a_long_arm_label_widens_the_first_column_and_the_rest_stay_aligned():
    """Issue 19: certify's `no-grad-clip-scale-1000-3` overflowed the 9-character first column
    and shifted every later column of its row; its role was empty."""
    arms = [("no-grad-clip-scale-1000", 3), ("winner", 3), ("control", 12)]
    trials = [
        fake_trial(f"c_{i:05d}", {"spec": SPEC, "arm": {"label": a, "seed": s}}, "RUNNING", RESULT)
        for i, (a, s) in enumerate(arms)
    ]
    lines = render(trials, 3.0).splitlines()
    titles = lines[1].split()
    header = _spans(lines[1], titles)
    assert [line.split()[0] for line in lines[2:]] == [
        "control-12",
        "no-grad-clip-scale-1000-3",
        "winner-3",
    ]
    for line in lines[2:]:
        cells = line.split()
        assert len(cells) == len(titles) and cells[1] == "arm"
        spans = _spans(line, cells)
        # the name, role and status start under their titles; the numbers end under theirs
        assert [s for s, _ in spans[:3]] == [s for s, _ in header[:3]]
        assert [e for _, e in spans[3:]] == [e for _, e in header[3:]]


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


def test_the_fifo_scheduler_s_own_note_is_left_out():
    """Every status of a baseline, compare or certify run carried Ray's "Using FIFO scheduling
    algorithm." in its header (fresh-22b)."""
    trials = [fake_trial("x_00000", member(0), "RUNNING", RESULT)]
    block = render(
        trials, 5.0, ["Using FIFO scheduling algorithm.", "Logical resource usage: 1.0/2 CPUs"]
    )
    header = block.splitlines()[0]
    assert "FIFO" not in block and header.endswith("1 running | 1.0/2 CPUs"), header


def _sharing(share: float | None, status: str = "RUNNING", cpus: float = 1.0, index: int = 1):  # type: ignore[no-untyped-def]
    result = {**RESULT, **({"cpu_share": share} if share is not None else {})}
    trial = fake_trial(f"x_{index:05d}", member(index), status, result)
    trial.placement_group_factory = SimpleNamespace(required_resources={"CPU": cpus})
    return trial


@pytest.mark.parametrize(
    ("trials", "says"),
    [
        # Ray's default worker niceness beside two busy processes: a few percent of a core
        ([_sharing(0.04), _sharing(0.06, index=2)], "got 5% of the CPU they asked for"),
        ([_sharing(0.2, cpus=0.5)], "got 40% of the CPU they asked for"),  # half a CPU asked
        ([_sharing(0.95), _sharing(0.9, index=2)], None),  # a whole core each: not busy
        ([_sharing(0.3, cpus=0.5)], None),  # 60 % of the half CPU it asked for
        ([_sharing(0.01, status="PAUSED")], None),  # waiting for its round: not running
        ([_sharing(None)], None),  # a GPU trial reports no CPU share
        ([], None),
    ],
)
def test_the_header_says_when_the_machine_is_too_busy_for_the_trials(trials, says):
    from tune_app.tune.progress import busy_note

    note = busy_note(trials)
    if says is None:
        assert note is None
    else:
        assert note is not None and says in note and "other processes take the CPUs" in note
        header = render(trials, 75.0, [], note).splitlines()[0]
        assert header.startswith("== 01:15 elapsed") and "machine too busy" in header


def test_the_busy_note_compares_the_pace_with_the_first_minutes():
    """60 epochs a minute for the first 2 minutes, then 1 a minute: said with both rates."""
    from tune_app.tune.progress import Pace, busy_note

    pace, trial = Pace(window_s=120), _sharing(0.05)
    for second in range(0, 600, 15):
        epoch = second if second <= 120 else 120 + (second - 120) / 60
        trial.last_result = {**trial.last_result, "epoch": epoch}
        pace.add([trial], float(second))
    assert pace.first() == pytest.approx(60.0)
    assert pace.now(585.0) == pytest.approx(1.0)
    assert "1.0 epochs/min against 60.0 in the first minutes" in str(
        busy_note([trial], pace, 585.0)
    )


def test_a_busy_machine_shows_in_the_printed_table():
    stream = io.StringIO()
    table = TrialTable(every=0, stream=stream)
    table.report([_sharing(0.05)], False)
    table.report([_sharing(0.05)], True)  # the final table: the run is over, nothing to say
    first, last = stream.getvalue().split("== ")[1:]
    assert "machine too busy" in first and "machine too busy" not in last


def _reported_shares(epochs: list[tuple[float, float]], monkeypatch: pytest.MonkeyPatch) -> list:  # type: ignore[type-arg]
    """The `cpu_share` a CPU trial's reports carry, for epochs of (wall seconds, CPU seconds)
    on a hand-made clock."""
    from tune_app.tune import trainable

    clock = {"cpu": 100.0, "wall": 5000.0}
    monkeypatch.setattr(
        trainable,
        "time",
        SimpleNamespace(process_time=lambda: clock["cpu"], perf_counter=lambda: clock["wall"]),
    )
    report = trainable._TuneReport(writer=None, on_cpu=True)  # type: ignore[arg-type]
    shares = []
    for wall, cpu in epochs:
        clock["wall"] += wall
        clock["cpu"] += cpu
        shares.append(report._with_cpu_share({"epoch": len(shares) + 1})["cpu_share"])
    return shares


def test_the_busy_note_does_not_flicker_with_single_epochs(monkeypatch: pytest.MonkeyPatch):
    """Epochs of 1 s, every other one writing a checkpoint (0.2 s of CPU instead of 0.9): the
    trial gets 55 % of its core. Measured per epoch, the note came and went every other epoch."""
    from tune_app.tune.progress import busy_note

    shares = _reported_shares([(1.0, 0.9 if n % 2 else 0.2) for n in range(1, 121)], monkeypatch)
    notes = [busy_note([_sharing(share)]) for share in shares]
    assert notes == [None] * len(shares), shares
    assert shares[-1] == pytest.approx(0.55, abs=0.02)


def test_the_busy_note_shows_from_the_first_epochs_timing(monkeypatch: pytest.MonkeyPatch):
    """Beside two busy processes at Ray's niceness 15: 28 s for the first epoch, 1.1 s of CPU."""
    from tune_app.tune.progress import busy_note

    (share,) = _reported_shares([(28.0, 1.1)], monkeypatch)
    assert share == pytest.approx(0.039, abs=0.001)
    assert "got 4% of the CPU they asked for" in str(busy_note([_sharing(share)]))


def test_the_cpu_share_spans_at_least_30_seconds_once_a_trial_has_run_them():
    """Epochs of 10 s on a whole core for a minute, then the machine gets busy (1 s of CPU an
    epoch): the share follows within the window, never from one epoch alone."""
    from tune_app.tune.progress import CpuShare

    share = CpuShare(cpu=0.0, wall=0.0, window_s=30.0)
    cpu, got = 0.0, []
    for epoch in range(1, 10):
        cpu += 10.0 if epoch <= 6 else 1.0
        got.append(share.add(cpu, 10.0 * epoch))
    # to 60 s: a whole core; then over 40..70 s, 50..80 s, 60..90 s
    assert got == pytest.approx([1.0] * 6 + [21 / 30, 12 / 30, 3 / 30])
    uneven = CpuShare(cpu=0.0, wall=0.0, window_s=30.0)
    for wall in (7.0, 14.0, 21.0, 28.0, 35.0, 42.0):
        last = uneven.add(wall / 2, wall)
    assert uneven.marks[0][1] == 7.0  # 42 - 7 = 35 s >= 30 s: the newest mark that old
    assert last == pytest.approx(0.5)

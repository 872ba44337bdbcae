"""Phase-boundary PBT: the scheduler's rules on a fake population, and a real search end to end."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import yaml
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from tiny import assert_inside, space_with_a_choice

from tune_app.cli import main
from tune_app.plan.plan import load_plan
from tune_app.plan.search_space import SearchSpace, load_space
from tune_app.runs.records import (
    CheckpointMeta,
    JournalEvent,
    RoundEvent,
    read_journal,
)
from tune_app.runs.storage import locate
from tune_app.tune.pbt import Journal, PhaseBoundaryPBT, plan_round, population
from tune_app.tune.trainable import MEMBER_KEY, trial_plan

SPACE = load_space(None, "modifications.yaml", "pbt").expand(["c0", "c1", "c2"])
PLAN = load_plan(phase_epochs=2)
COMPONENTS = ["c0", "c1", "c2"]


class FakeTrial:
    """What the scheduler reads of a Ray trial."""

    def __init__(self, trial_id: str, member: dict) -> None:
        self.trial_id, self.config = trial_id, {MEMBER_KEY: member, "spec": {"x": 1}}
        self.status = Trial.PENDING
        self.path = f"/runs/s/member-{trial_id}"
        self.checkpoint: SimpleNamespace | None = None
        self.last_result: dict = {}

    def is_finished(self) -> bool:
        return self.status in (Trial.TERMINATED, Trial.ERROR)

    def set_config(self, config: dict) -> None:
        self.config = config


class FakeController:
    def __init__(self, trials: list[FakeTrial]) -> None:
        self.trials = trials

    def get_trials(self) -> list[FakeTrial]:
        return self.trials


def _population(tmp_path: Path, size: int = 4, quantile: float = 0.25):
    scheduler = PhaseBoundaryPBT(
        SPACE, 2, 10, Journal(locate(tmp_path)), quantile_fraction=quantile
    )
    trials = [FakeTrial(f"t{i}", m) for i, m in enumerate(population(SPACE, size, 0))]
    return scheduler, trials, FakeController(trials)


def _reach(scheduler, controller, trial: FakeTrial, epoch: int, loss: float) -> str:
    """The trial reports `epoch` (with its checkpoint there) and Ray acts on the decision."""
    trial.status = Trial.RUNNING
    decision = scheduler.on_trial_result(controller, trial, {"epoch": epoch, "val_free_loss": loss})
    trial.last_result = {"epoch": epoch, "val_free_loss": loss}
    if decision == TrialScheduler.PAUSE:
        trial.status = Trial.PAUSED
        trial.checkpoint = SimpleNamespace(path=f"{trial.path}/checkpoint_{epoch:06d}")
    return decision


@pytest.mark.parametrize(
    ("losses", "controls", "quantile", "exploits"),
    [
        # N = 4 (3 + control), q = 0.25: one exploit, the worst non-control copies the best
        ({"c": 2.0, "a": 1.0, "b": 3.0, "d": 4.0}, {"c"}, 0.25, [("d", "a")]),
        # the control is the worst: it is never changed; the worst other member copies
        ({"c": 9.0, "a": 1.0, "b": 2.0, "d": 3.0}, {"c"}, 0.25, [("d", "a")]),
        # the control is the best: it is the donor
        ({"c": 0.5, "a": 1.0, "b": 2.0, "d": 3.0}, {"c"}, 0.25, [("d", "c")]),
        # a diverged member is neither donor nor loser
        ({"c": 2.0, "a": math.inf, "b": 3.0, "d": 4.0}, {"c"}, 0.25, [("d", "c")]),
        # N = 2: the only non-control member is the donor -> nobody exploits
        ({"c": 2.0, "a": 1.0}, {"c"}, 0.25, []),
        # q = 0.5 on 4: two donors (the control among them), two losers
        ({"c": 1.0, "a": 4.0, "b": 3.0, "d": 2.0}, {"c"}, 0.5, [("a", None), ("b", None)]),
        # q = 0.5, the control worst: it is never a loser, so only one member exploits
        ({"c": 4.0, "a": 1.0, "b": 2.0, "d": 3.0}, {"c"}, 0.5, [("d", None)]),
    ],
)
def test_round_rule(losses, controls, quantile, exploits):
    decided = plan_round(losses, controls, quantile, random.Random(0))
    assert [t for t, _ in decided.exploits] == [t for t, _ in exploits]
    for (_, donor), (_, expected) in zip(decided.exploits, exploits, strict=True):
        if expected is not None:
            assert donor == expected
        assert math.isfinite(losses[donor]) and donor not in {t for t, _ in decided.exploits}
    assert not controls & {t for t, _ in decided.exploits}
    assert set(decided.left_alone) | {t for t, _ in decided.exploits} == set(losses)


@pytest.mark.parametrize("seed", range(20))
def test_with_four_members_one_exploits_at_every_round(seed: int):
    rng = random.Random(seed)
    losses = {t: rng.random() for t in "cabd"}
    assert len(plan_round(losses, {"c"}, 0.25, rng).exploits) == 1


def test_a_round_waits_for_every_member_at_the_same_epoch(tmp_path: Path):
    scheduler, trials, controller = _population(tmp_path)
    for trial in trials[:2]:  # two slots: members 0 and 1 run first
        assert scheduler.on_trial_result(controller, trial, {"epoch": 1, "val_free_loss": 1.0}) == (
            TrialScheduler.CONTINUE
        )
        assert _reach(scheduler, controller, trial, 2, 1.0 + int(trial.trial_id[1])) == "PAUSE"
    # the waiting ones are not run again before the others caught up (Ray itself starts the
    # PENDING members 2 and 3)
    assert scheduler.choose_trial_to_run(controller) is None
    assert scheduler.journal.lines() == []
    _reach(scheduler, controller, trials[2], 2, 0.5)
    assert scheduler.choose_trial_to_run(controller) is None
    assert scheduler.journal.lines() == []
    # the last to arrive runs the round; it copies a donor, so it pauses too
    assert _reach(scheduler, controller, trials[3], 2, 9.0) == TrialScheduler.PAUSE
    events = scheduler.journal.lines()
    assert [e["event"] for e in events] == ["round", "exploit"]
    assert [r["trial"] for r in events[0]["ranking"]] == ["t2", "t0", "t1", "t3"]
    exploit = events[1]
    assert (exploit["trial"], exploit["donor"], exploit["epoch"]) == ("t3", "t2", 2)
    member = trials[3].config[MEMBER_KEY]
    assert member["version"] == 1 and member["control"] is False and member["index"] == 3
    assert member["restore"] == {"trial_dir": "member-t2", "epoch": 2, "version": 0, "donor": "t2"}
    assert trials[0].config[MEMBER_KEY] == population(SPACE, 4, 0)[0]  # the control: untouched
    for param in SPACE.params:
        if param.type == "float":
            assert param.low <= member["params"][param.name] <= param.high
    assert scheduler.choose_trial_to_run(controller) is not None  # everyone may run again
    # a second report at the same epoch (a retry after the round) does not wait again
    assert scheduler.on_trial_result(controller, trials[3], {"epoch": 2, "val_free_loss": 1}) == (
        TrialScheduler.CONTINUE
    )


def test_the_last_to_arrive_goes_on_without_pausing_unless_it_copies(tmp_path: Path):
    scheduler, trials, controller = _population(tmp_path)
    for trial, loss in zip(trials[:3], [3.0, 2.0, 9.0], strict=True):
        _reach(scheduler, controller, trial, 2, loss)
    assert _reach(scheduler, controller, trials[3], 2, 1.0) == TrialScheduler.CONTINUE
    (exploit,) = [e for e in scheduler.journal.lines() if e["event"] == "exploit"]
    assert (exploit["trial"], exploit["donor"]) == ("t2", "t3")
    assert trials[2].config[MEMBER_KEY]["restore"]["trial_dir"] == "member-t3"


def test_a_member_that_ends_does_not_hold_up_the_round(tmp_path: Path):
    scheduler, trials, controller = _population(tmp_path)
    for trial, loss in zip(trials[:3], [1.0, 2.0, 3.0], strict=True):
        _reach(scheduler, controller, trial, 2, loss)
    trials[3].status = Trial.TERMINATED  # diverged and stopped
    scheduler.on_trial_complete(controller, trials[3], {"diverged": 1.0})
    scheduler.choose_trial_to_run(controller)
    (round_event,) = [e for e in scheduler.journal.lines() if e["event"] == "round"]
    assert {r["trial"] for r in round_event["ranking"]} == {"t0", "t1", "t2"}
    assert [e["donor"] for e in scheduler.journal.lines() if e["event"] == "exploit"] == ["t0"]


def test_rounds_already_journalled_are_not_repeated_after_a_restore(tmp_path: Path):
    scheduler, trials, controller = _population(tmp_path)
    for trial in trials:
        _reach(scheduler, controller, trial, 2, 1.0)
    scheduler.choose_trial_to_run(controller)
    restored, trials2, controller2 = _population(tmp_path)  # a new driver, the same journal
    assert restored.on_trial_result(controller2, trials2[1], {"epoch": 2, "val_free_loss": 1}) == (
        TrialScheduler.CONTINUE
    )
    assert _reach(restored, controller2, trials2[1], 4, 1.0) == TrialScheduler.PAUSE


def test_journal_appends_and_survives_a_new_instance(tmp_path: Path):
    journal = Journal(locate(tmp_path))
    journal.append(JournalEvent(epoch=2, trial="a", donor="b"))
    journal.append(RoundEvent(epoch=4), JournalEvent(epoch=4, trial="c", donor="a"))
    again = Journal(locate(tmp_path))
    assert [e["epoch"] for e in again.lines()] == [2, 4, 4]
    assert again.rounds_done() == {4}
    assert [(e.trial, e.donor) for e in read_journal(locate(tmp_path))] == [("a", "b"), ("c", "a")]
    assert not list(tmp_path.glob(".*tmp*"))  # no temp files left behind


def test_trial_plan_applies_changed_params_from_the_next_epoch():
    rng = random.Random(1)
    first = SPACE.sample(rng)
    start = trial_plan(PLAN, {MEMBER_KEY: {"params": first}}, None, COMPONENTS)
    assert [m.from_epoch for m in start.modifications] == [1]
    meta = CheckpointMeta(4, 2, {}, "", COMPONENTS, start.to_dict(), "", {})
    assert (
        trial_plan(PLAN, {MEMBER_KEY: {"params": first}}, meta, COMPONENTS) == start
    )  # a plain restart
    second = SPACE.mutate(first, rng, 0.0)
    moved = trial_plan(PLAN, {MEMBER_KEY: {"params": second}}, meta, COMPONENTS)
    assert [m.from_epoch for m in moved.modifications] == [1, 5]
    control = trial_plan(
        PLAN, {MEMBER_KEY: {"params": SPACE.neutral(), "control": True}}, None, COMPONENTS
    )
    assert control == PLAN


# ---------------------------------------------------------------- a real search (slow)
TINY = ["--phase-epochs", "2", "--stride", "4", "--hidden", "16", "--cpus-per-trial", "0.5"]


# id -> (explore step, CPUs per member: 0.5 runs all 4 at once, 1 gives 2 slots taken in turns)
SEARCHES = {"all-at-once": ("pbt", "0.5"), "taking-turns": ("pbt", "1"), "pb2": ("pb2", "0.5")}


class SearchRun(NamedTuple):
    path: Path  # the run's folder
    slots: int  # members that train at once on the 2 CPUs of `ray_local`


@pytest.fixture(scope="module", params=list(SEARCHES), ids=list(SEARCHES))
def search_run(request, ray_local, tmp_path_factory: pytest.TempPathFactory) -> SearchRun:
    """4 members, 5 phases of 2 epochs (rounds at epochs 2, 4, 6, 8), as `SEARCHES` says."""
    storage = tmp_path_factory.mktemp("search")
    scheduler, cpus = SEARCHES[request.param]
    args = [*TINY[:-1], cpus, "--population", "4", "--storage", str(storage)]
    if scheduler == "pb2":
        (storage / "space.yaml").write_text(yaml.safe_dump(space_with_a_choice()))
        args += ["--scheduler", "pb2", "--space", str(storage / "space.yaml")]
    assert main(["search", *args, "--name", "s"]) == 0
    return SearchRun(storage / "s", min(4, int(2 / float(cpus))))


def _space(run) -> SearchSpace:  # type: ignore[no-untyped-def]
    """The space a search ran over, one weight per component: its manifest names the file."""
    default = run.manifest.space == "search_spaces/modifications.yaml"
    space = load_space(None if default else run.manifest.space, "modifications.yaml", "pbt")
    return space.expand(list(run.manifest.components))


@pytest.mark.slow
def test_search_exploits_at_every_boundary_and_leaves_the_control_alone(search_run: SearchRun):
    from tune_app.runs.results import open_run

    run = open_run(str(search_run.path))
    rounds = run.rounds()
    assert [r.epoch for r in rounds] == [2, 4, 6, 8]
    # N = 4, q = 0.25: exactly one member copies a donor at every interior boundary
    assert sorted(e.epoch for e in run.journal()) == [2, 4, 6, 8]
    assert [len(r.exploits) for r in rounds] == [1, 1, 1, 1]
    by_id = {t.trial_id: t for t in run.trials}
    (control,) = [t for t in run.trials if t.params[MEMBER_KEY]["control"]]
    neutral = control.params[MEMBER_KEY]["params"]
    assert neutral == _space(run).neutral()
    assert all(e.trial != control.trial_id for e in run.journal())
    for event in rounds:  # each round ranks the members' scores at that one epoch
        assert len(event.ranking) == 4
        assert control.trial_id not in {x["trial"] for x in event.exploits}  # never a loser
        (own,) = [x for x in event.ranking if x["trial"] == control.trial_id]
        assert own["params"] == neutral, event.epoch  # trained as written up to every round
        for entry in event.ranking:
            (own,) = [c for c in by_id[entry["trial"]].checkpoints if c.epoch == event.epoch]
            assert own.meta.metrics["val_free_loss"] == entry["val_free_loss"]
    assert sorted(c.epoch for c in control.checkpoints) == [2, 4, 6, 8, 10]
    assert all(not c.meta.plan.get("modifications") for c in control.checkpoints)
    assert {json.dumps(c.meta.params, sort_keys=True) for c in control.checkpoints} == {
        json.dumps(control.params[MEMBER_KEY]["params"] or None, sort_keys=True)
    }
    for trial in run.trials:
        assert max(c.epoch for c in trial.checkpoints) == 10, trial.trial_id
    assert control.location.name == "member-00"  # trial folders are named by member


@pytest.mark.slow
def test_no_worker_process_starts_after_the_first_round(search_run: SearchRun):
    """A member that waits for its round hands its worker process to a member that takes its
    turn, and gets one back (reuse_actors); no member's restart (pause, exploit) starts a new
    process. Tune records each result's worker pid; every member's rows cover every epoch."""
    rows = {
        trial.name: [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
        for trial in search_run.path.glob("member-*")
    }
    assert len(rows) == 4
    for name, own in rows.items():
        assert {int(r["epoch"]) for r in own} == set(range(1, 11)), name
    first_round = {r["pid"] for own in rows.values() for r in own if int(r["epoch"]) <= 2}
    after = {r["pid"] for own in rows.values() for r in own if int(r["epoch"]) > 2}
    assert len(first_round) == search_run.slots
    assert after <= first_round, (
        f"new worker processes after the first round: {after - first_round}"
    )


@pytest.mark.slow
def test_every_value_stays_inside_the_space_and_the_journal_names_the_explore(
    search_run: SearchRun,
):
    """Over all rounds: what each member trained with, each exploit's old, donor and new
    parameters, and each checkpoint's, lie inside the space's bounds; PB2 explores with its GP
    from the second round on (the first has no improvements to fit yet)."""
    from tune_app.runs.results import open_run

    run = open_run(str(search_run.path))
    space = _space(run)
    seen = [entry["params"] for r in run.rounds() for entry in r.ranking]
    seen += [params for e in run.journal() for params in (e.old, e.donor_params, e.new)]
    seen += [c.meta.params or {} for t in run.trials for c in t.checkpoints]
    assert len(seen) == 4 * 4 + 4 * 3 + 4 * 5  # rankings, exploits (old, donor, new), checkpoints
    for params in seen:
        assert_inside(space, params)
    first = {"pbt": "pbt", "pb2": "pbt (pb2: no data yet)"}[run.manifest.scheduler or ""]
    later = run.manifest.scheduler
    assert [(e.epoch, e.explore) for e in run.journal()] == [
        (2, first),
        (4, later),
        (6, later),
        (8, later),
    ]


@pytest.mark.slow
def test_exported_plans_replay_exactly(search_run: SearchRun, tmp_path: Path):
    """The winner, and every trial that copied a donor: one sequential run of the exported plan
    with the root seed gives the same val_free_loss."""
    from tune_app.runs.results import export_checkpoint, open_run

    run = open_run(str(search_run.path))
    journal_trials = {e.trial for e in run.journal()}
    chosen = [t for t in run.trials if t.trial_id in journal_trials]
    assert chosen
    exports = []
    assert main(["best", str(search_run.path), "--out", str(tmp_path / "best")]) == 0
    exports.append(tmp_path / "best")
    for trial in chosen:
        out = tmp_path / trial.trial_id
        export_checkpoint(run, trial, trial.checkpoints[-1], out)
        lineage = json.loads((out / "lineage.json").read_text())
        assert any(s["copied_from"] for s in lineage["segments"]), lineage
        exports.append(out)
    for out in exports:
        expected = json.loads((out / "config.json").read_text())["value"]
        assert (
            main(
                [
                    "train",
                    "--replay",
                    str(out),
                    "--out",
                    str(out / "replay"),
                    "--progress-every",
                    "100",
                ]
            )
            == 0
        )
        import pandas as pd

        replayed = pd.read_parquet(out / "replay" / "metrics.parquet")["val_free_loss"].iloc[-1]
        assert replayed == pytest.approx(expected, rel=1e-6), out.name


@pytest.mark.slow
def test_rounds_between_phase_boundaries_get_their_checkpoints(ray_local, tmp_path: Path):
    """--perturb-every 1 with 2-epoch phases: a round (and a checkpoint to copy) every epoch."""
    from tune_app.runs.results import open_run

    args = [*TINY[:-1], "1", "--population", "3", "--perturb-every", "1"]
    assert main(["search", *args, "--storage", str(tmp_path), "--name", "p"]) == 0
    run = open_run(str(tmp_path / "p"))
    assert [r.epoch for r in run.rounds()] == list(range(1, 10))
    assert all(len(r.ranking) == 3 for r in run.rounds())
    assert {e.epoch for e in run.journal()} == set(range(1, 10))
    for trial in run.trials:
        assert not trial.diverged and max(c.epoch for c in trial.checkpoints) == 10


def test_a_restored_members_search_asks_the_live_scheduler(tmp_path: Path):
    """Ray saves a search algorithm's __dict__ and restores it on --resume: a stale copy of the
    scheduler there (members frozen as RUNNING) would keep a finished search waiting forever."""
    from tune_app.tune.pbt import MembersSearch

    scheduler, trials, _ = _population(tmp_path)
    search = MembersSearch(scheduler)
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    state = search.get_state()
    assert "_scheduler" not in state
    live, live_trials, _ = _population(tmp_path)
    restored = MembersSearch(live)
    restored.set_state(state)
    assert restored._scheduler is live
    for trial in live_trials:
        live.on_trial_add(None, trial)
        trial.status = Trial.TERMINATED
    assert live.all_finished()


def test_the_status_line_says_a_smoothing_rule_reads_one_epoch(tmp_path: Path):
    """Issue 22's fresh user: `--selection improvement` with rounds every epoch ranked exactly
    as truncation, and nothing said so."""
    from tune_app.tune.selection import Selection

    def line(rule: str, interval: int) -> str:
        journal = Journal(locate(tmp_path / f"{rule}{interval}"))
        selection = Selection.for_interval(rule, interval)
        return PhaseBoundaryPBT(SPACE, interval, 10, journal, selection=selection).debug_string()

    assert "improvement selection reading one epoch, as truncation" in line("improvement", 1)
    assert "recent selection reading one epoch, as truncation" in line("recent", 1)
    assert "(improvement selection)" in line("improvement", 4)
    assert "(truncation selection)" in line("truncation", 1)

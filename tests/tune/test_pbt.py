"""Phase-boundary PBT: the scheduler's rules on a fake population, and a real search end to end."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from tune_app.cli import main
from tune_app.plan.plan import load_plan
from tune_app.plan.search_space import load_space
from tune_app.runs.records import CheckpointMeta
from tune_app.runs.storage import locate
from tune_app.tune.pbt import Journal, PhaseBoundaryPBT, population
from tune_app.tune.trainable import MEMBER_KEY, trial_plan

SPACE = load_space(None, "modifications.yaml", "pbt").expand(["c0", "c1", "c2"])
PLAN = load_plan(phase_epochs=2)
COMPONENTS = ["c0", "c1", "c2"]


class FakeTrial:
    def __init__(self, trial_id: str, member: dict) -> None:
        self.trial_id, self.config = trial_id, {MEMBER_KEY: member}

    def is_finished(self) -> bool:
        return False


def _scheduler(tmp_path: Path, losses: list[float]) -> tuple[PhaseBoundaryPBT, list[FakeTrial]]:
    scheduler = PhaseBoundaryPBT(SPACE, 2, Journal(locate(tmp_path)), quantile_fraction=0.5)
    trials = [FakeTrial(f"t{i}", m) for i, m in enumerate(population(SPACE, len(losses), 0))]
    for trial, loss in zip(trials, losses, strict=True):
        scheduler._trial_state[trial] = type("S", (), {"last_score": -loss})()
    return scheduler, trials


def test_control_is_never_in_the_lower_quantile(tmp_path: Path):
    scheduler, trials = _scheduler(tmp_path, [9.0, 1.0, 2.0, 3.0])  # the control is the worst
    lower, upper = scheduler._quantiles()
    assert trials[0] not in lower and lower == [trials[3]]
    assert set(upper) == {trials[1], trials[2]}


def test_diverged_trials_are_never_donors(tmp_path: Path):
    scheduler, trials = _scheduler(tmp_path, [1.0, 2.0, 3.0, 4.0])
    scheduler._trial_state[trials[0]].last_score = -math.inf
    _lower, upper = scheduler._quantiles()
    assert trials[0] not in upper


def test_new_config_is_a_clamped_mutation_of_the_donor_and_never_a_control(tmp_path: Path):
    scheduler, trials = _scheduler(tmp_path, [1.0, 2.0, 3.0, 4.0])
    for _ in range(50):
        config, _ = scheduler._get_new_config(trials[3], trials[0])  # donor: the control
        member = config[MEMBER_KEY]
        assert member["control"] is False and member["index"] == 3
        for param in SPACE.params:
            if param.type == "float":
                assert param.low <= member["params"][param.name] <= param.high


def test_journal_appends_and_survives_a_new_instance(tmp_path: Path):
    journal = Journal(locate(tmp_path))
    journal.append({"epoch": 2, "trial": "a", "donor": "b"})
    journal.append({"epoch": 4, "trial": "c", "donor": "a"})
    assert [e["epoch"] for e in Journal(locate(tmp_path)).events()] == [2, 4]
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


@pytest.fixture(scope="module")
def search_run(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("search")
    code = main(
        [
            "search",
            *TINY,
            "--population",
            "4",
            "--quantile-fraction",
            "0.5",
            "--storage",
            str(storage),
            "--name",
            "s",
        ]
    )
    assert code == 0
    return storage / "s"


def _trials(run: Path) -> dict[str, list[dict]]:
    out = {}
    for trial in run.iterdir():
        if (trial / "result.json").exists():
            rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
            out[rows[0]["trial_id"]] = rows
    return out


@pytest.mark.slow
def test_search_perturbs_at_boundaries_and_leaves_the_control_alone(search_run: Path):
    journal = [
        json.loads(line) for line in (search_run / "pbt_journal.jsonl").read_text().splitlines()
    ]
    assert journal, "a population of 4 with quantile 0.5 exploits at least once in 5 boundaries"
    assert all(event["epoch"] % 2 == 0 for event in journal)
    trials = _trials(search_run)
    (control_id,) = [
        tid for tid, rows in trials.items() if rows[0]["config"][MEMBER_KEY]["control"]
    ]
    assert all(event["trial"] != control_id for event in journal)
    control_rows = trials[control_id]
    assert len({json.dumps(r["config"][MEMBER_KEY], sort_keys=True) for r in control_rows}) == 1
    assert control_rows[-1]["epoch"] == 10
    (control_dir,) = [
        d
        for d in search_run.iterdir()
        if (d / "result.json").exists() and d.name.startswith(f"run_trial_{control_id}")
    ]
    metas = [json.loads(p.read_text()) for p in control_dir.glob("checkpoint_*/meta.json")]
    assert sorted(m["epoch"] for m in metas) == [2, 4, 6, 8, 10]
    assert all(not m["plan"].get("modifications") for m in metas)  # the plan as written, throughout
    for tid, rows in trials.items():
        assert rows[-1]["epoch"] == 10, tid


@pytest.mark.slow
def test_exported_plans_replay_exactly(search_run: Path, tmp_path: Path):
    """The winner, and every trial that copied a donor: one sequential run of the exported plan
    with the root seed gives the same val_free_loss."""
    from tune_app.runs.results import export_checkpoint, open_run

    run = open_run(str(search_run))
    journal_trials = {e.trial for e in run.journal()}
    chosen = [t for t in run.trials if t.trial_id in journal_trials]
    assert chosen
    exports = []
    assert main(["best", str(search_run), "--out", str(tmp_path / "best")]) == 0
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

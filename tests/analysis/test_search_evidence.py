"""Which modification helped, read from a search run's records alone (no Ray, no training):
what followed each exploit, the winner's lineage with its rules, and the search's name."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from tune_app.analysis.text import (
    exploit_effects,
    readable_effects,
    search_summary,
    winner_modifications,
)
from tune_app.cli import main
from tune_app.plan.modifications import Modification
from tune_app.plan.plan import Plan, load_plan
from tune_app.runs.results import find_best, lineage, open_run

PLAN = load_plan(phase_epochs=2)  # 5 phases of 2 epochs


def _plan(*mods: Modification) -> dict[str, Any]:
    plan = PLAN
    for mod in mods:
        plan = plan.apply(mod)
    return plan.to_dict()


def fabricated_run(
    root: Path,
    checkpoints: dict[int, list[tuple[int, int, float, dict[str, Any]]]],
    journal: list[dict[str, Any]],
    scheduler: str | None = "pbt",
) -> Path:
    """A search run as the records say it: member index -> its checkpoints (epoch, version,
    val_free_loss, plan), the journal's lines, the scheduler the manifest records. Member 0
    is the control; trial ids are the folder names (there is no result.json)."""
    run = root / "search"
    run.mkdir(parents=True)
    manifest: dict[str, Any] = {"kind": "search", "spec": {"plan": PLAN.to_dict()}}
    if scheduler:
        manifest["scheduler"] = scheduler
    (run / "tune_app_run.json").write_text(json.dumps(manifest))
    for index, written in checkpoints.items():
        trial = run / f"member-{index:02d}"
        trial.mkdir()
        member = {"index": index, "control": index == 0, "params": {}}
        (trial / "params.json").write_text(json.dumps({"member": member}))
        for number, (epoch, version, loss, plan) in enumerate(written):
            folder = trial / f"checkpoint_{number:06d}"
            folder.mkdir()
            meta = {
                "epoch": epoch,
                "phase": (epoch - 1) // 2,
                "metrics": {"val_free_loss": loss},
                "data_fingerprint": "",
                "components": [],
                "plan": plan,
                "code_fingerprint": "",
                "versions": {},
                "version": version,
            }
            (folder / "meta.json").write_text(json.dumps(meta))
    (run / "pbt_journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in journal))
    return run


def _round(epoch: int, scores: dict[int, float], exploits: list[tuple[int, int]]) -> dict[str, Any]:
    return {
        "event": "round",
        "epoch": epoch,
        "ranking": [
            {"trial": f"member-{m:02d}", "member": m, "val_free_loss": s, "params": {}}
            for m, s in sorted(scores.items(), key=lambda item: item[1])
        ],
        "exploits": [{"trial": f"member-{a:02d}", "donor": f"member-{b:02d}"} for a, b in exploits],
    }


CHANGED = {f"p{i:02d}": 0.1 * i for i in range(12)}  # 12 parameters, every one explored


def _exploit(epoch: int, member: int, donor: int, scores: dict[int, float]) -> dict[str, Any]:
    return {
        "event": "exploit",
        "epoch": epoch,
        "trial": f"member-{member:02d}",
        "donor": f"member-{donor:02d}",
        "val_free_loss": scores[member],
        "donor_val_free_loss": scores[donor],
        "donor_params": CHANGED,
        "new": {k: v + 0.05 for k, v in CHANGED.items()},
        "explore": "pb2",
    }


# rounds at 2, 4, 6, 8 of a 10-epoch plan; member 1 diverges after epoch 4
ROUNDS = {
    2: ({1: 0.9, 0: 1.0, 2: 1.1, 3: 1.3}, [(3, 1)]),
    4: ({1: 0.70, 3: 0.80, 0: 0.85, 2: 0.95}, [(2, 1)]),
    6: ({2: 0.60, 0: 0.70, 3: 0.75}, [(3, 2)]),
    8: ({3: 0.50, 2: 0.55, 0: 0.65}, [(2, 3)]),
}
P = _plan()
# each exploit adds the copier's explored modification to the donor's plan, from the next epoch
M1, M3, M5, M7, M9 = (Modification(from_epoch=e, alpha_shift=e / 100) for e in (1, 3, 5, 7, 9))
P1, P13, P15, P157, P1579 = (
    _plan(M1),
    _plan(M1, M3),
    _plan(M1, M5),
    _plan(M1, M5, M7),
    _plan(M1, M5, M7, M9),
)
CHECKPOINTS = {  # (epoch, version: exploits made so far, val_free_loss, plan)
    0: [(2, 0, 1.0, P), (4, 0, 0.85, P), (6, 0, 0.70, P), (8, 0, 0.65, P), (10, 0, 0.60, P)],
    1: [(2, 0, 0.9, P1), (4, 0, 0.70, P1)],
    2: [
        (2, 0, 1.1, P),
        (4, 0, 0.95, P),
        (6, 1, 0.60, P15),
        (8, 1, 0.55, P15),
        (10, 2, 0.45, P1579),
    ],
    3: [
        (2, 0, 1.3, P),
        (4, 1, 0.80, P13),
        (6, 1, 0.75, P13),
        (8, 2, 0.50, P157),
        (10, 2, 0.48, P157),
    ],
}


@pytest.fixture
def four_rounds(tmp_path: Path) -> Path:
    journal = []
    for epoch, (scores, exploits) in ROUNDS.items():
        journal.append(_round(epoch, scores, exploits))
        journal += [_exploit(epoch, a, b, scores) for a, b in exploits]
    return fabricated_run(tmp_path, CHECKPOINTS, journal, scheduler="pb2")


def test_after_an_exploit_the_copier_is_compared_with_the_donor_at_the_same_epoch(four_rounds):
    """Issue 15's try: the change was the copier's next score minus the donor's score at the
    exploit, i.e. mostly a phase of training (always negative). Now like with like: the copier
    and the donor, from the same weights, each at the next round (after the last: at the end)."""
    rows = exploit_effects(open_run(str(four_rounds))).to_dict("records")
    got = [(r["epoch"], r["member"], r["copied"], r["next epoch"]) for r in rows]
    assert got == [
        (2, "member-03", "member-01", 4),
        (4, "member-02", "member-01", 6),
        (6, "member-03", "member-02", 8),
        (8, "member-02", "member-03", 10),  # no later round: both members' last checkpoints
    ]
    # epoch 2: the explored parameters did worse than the donor going on as it was
    assert (rows[0]["copier next"], rows[0]["donor next"]) == (0.80, 0.70)
    assert rows[0]["vs donor"] == pytest.approx(0.10)
    assert rows[0]["donor at exploit"] == 0.9
    # epoch 4: the donor diverged before the next round: no number rather than a wrong one
    assert rows[1]["copier next"] == 0.60 and math.isnan(rows[1]["donor next"])
    assert math.isnan(rows[1]["vs donor"])
    assert rows[2]["vs donor"] == pytest.approx(0.50 - 0.55)
    # after the last round: member-02's checkpoint of its new version, member-03's of its own
    assert (rows[3]["copier next"], rows[3]["donor next"]) == (0.45, 0.48)
    assert rows[3]["vs donor"] == pytest.approx(-0.03)
    # every changed parameter, largest change first, none cut to "+N more"
    assert all(r["parameters changed"].count("→") == 12 for r in rows)
    assert "more" not in rows[0]["parameters changed"]
    shown = readable_effects(exploit_effects(open_run(str(four_rounds))))
    assert list(shown["vs donor"]) == ["+0.1", "n/a", "-0.05", "-0.03"]


def test_best_prints_every_changed_parameter_and_what_is_compared(four_rounds, tmp_path, capsys):
    from tune_app.training.checkpoint import STATE_FILE, state_bytes

    for folder in four_rounds.glob("member-*/checkpoint_*"):  # `best` exports weights too
        meta = json.loads((folder / "meta.json").read_text())
        state = {"model": {}, "plan": meta["plan"], "history": []}
        state |= {"model_config": {}, "data_config": {}, "train_config": {"seed": 0}}
        (folder / STATE_FILE).write_bytes(state_bytes(state))
    assert main(["best", str(four_rounds), "--out", str(tmp_path / "best")]) == 0
    out = capsys.readouterr().out
    assert "copier next" in out and "donor next" in out and "vs donor" in out
    assert "evidence, not a claim of causality" in out
    for name in CHANGED:
        assert out.count(f"{name} ") >= 4, name  # in each of the 4 exploits
    evidence = out[out.index("after each exploit") : out.index("best: trial")]
    assert "more" not in evidence
    assert max(len(line) for line in evidence.splitlines()) <= 100  # wrapped, not cut


def test_a_pb2_search_is_called_pb2(four_rounds):
    run = open_run(str(four_rounds))
    assert (
        search_summary(run)[0]
        == "PB2: 4 rounds, 4 exploits (epoch 2: 1, epoch 4: 1, epoch 6: 1, epoch 8: 1)"
    )


def test_an_older_manifest_names_pb2_from_the_journal(tmp_path: Path):
    scores = {1: 0.9, 0: 1.0}
    journal = [_round(2, scores, [])]
    run = fabricated_run(tmp_path / "pbt", {0: CHECKPOINTS[0], 1: CHECKPOINTS[1]}, journal, None)
    assert search_summary(open_run(str(run)))[0].startswith("PBT: 1 rounds")
    journal = [_round(2, scores, [(1, 0)]), _exploit(2, 1, 0, scores)]
    run = fabricated_run(tmp_path / "pb2", {0: CHECKPOINTS[0], 1: CHECKPOINTS[1]}, journal, None)
    assert search_summary(open_run(str(run)))[0].startswith("PB2: 1 rounds")


def test_a_gap_rule_shows_as_the_members_own_change_not_a_copy(tmp_path: Path):
    """Issue 15's try: a member whose gap rule fired looked as if it had copied itself
    ("member-01 epochs 1-6 -> member-01 epochs 7-8 -> member-01 epochs 9-8"); the rule that
    fired at the best checkpoint's own boundary even showed a stretch that never trained."""
    explored = Modification(from_epoch=1, alpha_shift=0.05)
    gap = Modification(from_epoch=7, alpha_shift=0.05, regularisation=1.5)
    again = Modification(from_epoch=9, alpha_shift=0.05, regularisation=2.25)
    first, all_three = _plan(explored), _plan(explored, gap, again)
    checkpoints = {
        0: [(4, 0, 1.0, P), (8, 0, 0.8, P), (10, 0, 0.7, P)],
        1: [(4, 0, 0.9, first), (8, 0, 0.5, all_three), (10, 0, 0.55, all_three)],
    }
    journal = [_round(4, {1: 0.9, 0: 1.0}, []), _round(8, {1: 0.5, 0: 0.8}, [])]
    run = open_run(str(fabricated_run(tmp_path, checkpoints, journal)))
    (trial,) = [t for t in run.trials if t.trial_id == "member-01"]
    (best,) = [c for c in trial.checkpoints if c.epoch == 8]
    assert search_summary(run)[1] == (
        "winner: member-01 at epoch 8: member-01 epochs 1-8 (gap rule from epoch 7)"
    )
    chain = lineage(run, trial, best)["segments"]  # as lineage.json exports it
    assert [(s["from_epoch"], s["to_epoch"], s["copied_from"]) for s in chain] == [
        (1, 6, None),
        (7, 8, None),  # the rule of epoch 8 starts at 9: not behind these weights
    ]
    assert [s["cause"] for s in chain] == ["start", "rule"]
    assert winner_modifications(run) == [
        "epochs 1-6 by member-01: modification from epoch 1: alpha_shift=0.05",
        "epochs 7-8 by member-01: gap rule from epoch 7: weight decay and noise x1.5 (x1.5 the "
        "plan's); in force: alpha_shift=0.05, regularisation=1.5",
    ]


def test_a_gap_rule_on_scaled_levers_says_the_combined_factor_against_the_plan(tmp_path: Path):
    """Issue 18: the gap rule's x1.06 on a member whose levers had weight_decay_scale 1.34 and
    noise_scale 2.28 was said to leave weight decay and noise "x1.06 the plan's"; the plan
    multiplies all three, so they were 1.42 and 2.42 x the plan's."""
    levers = {"alpha_shift": 0.05, "weight_decay_scale": 1.34, "noise_scale": 2.28}
    explored = Modification(from_epoch=1, **levers)
    gap = Modification(from_epoch=7, regularisation=1.06, **levers)
    plan = _plan(explored, gap)
    checkpoints = {0: [(4, 0, 1.0, P), (8, 0, 0.8, P)], 1: [(4, 0, 0.9, _plan(explored))]}
    checkpoints[1].append((8, 0, 0.5, plan))
    journal = [_round(4, {1: 0.9, 0: 1.0}, []), _round(8, {1: 0.5, 0: 0.8}, [])]
    run = open_run(str(fabricated_run(tmp_path, checkpoints, journal)))
    said = winner_modifications(run)[-1]
    assert said.startswith(
        "epochs 7-8 by member-01: gap rule from epoch 7: weight decay and noise x1.06 "
        "(weight decay x1.42 and noise x2.42 the plan's); in force: "
    )
    # the numbers are the plan's own: what it trains with at epoch 7 against the plan as written
    written, scaled = PLAN.values_at(7), Plan.from_dict(plan).values_at(7)
    assert f"x{scaled.weight_decay / written.weight_decay:.3g} and" in said
    assert f"x{scaled.noise / written.noise:.3g} the plan's" in said


def test_a_copy_still_shows_as_a_copy(four_rounds):
    run = open_run(str(four_rounds))  # the winner: member-02 at epoch 10 (0.45)
    assert search_summary(run)[1] == (
        "winner: member-02 at epoch 10: member-01 epochs 1-4 -> member-02 epochs 5-6 -> "
        "member-03 epochs 7-8 -> member-02 epochs 9-10"
    )
    assert winner_modifications(run) == [
        "epochs 1-4 by member-01: modification from epoch 1: alpha_shift=0.01",
        "epochs 5-6 by member-02, copied from member-01: modification from epoch 5: "
        "alpha_shift=0.05",
        "epochs 7-8 by member-03, copied from member-02: modification from epoch 7: "
        "alpha_shift=0.07",
        "epochs 9-10 by member-02, copied from member-03: modification from epoch 9: "
        "alpha_shift=0.09",
    ]


def test_a_rule_at_the_boundary_where_the_member_then_copies_is_not_a_copy(tmp_path: Path):
    """Seen in a real PB2 search: member-03's gap rule fired at epoch 4, then the round of
    epoch 4 had it copy member-02. Its own checkpoint of epoch 4 (plan: the rule from epoch 5)
    was said to be member-02's epochs 1-4, then member-03's "epochs 5-4, copied from
    member-02"."""
    explored = Modification(from_epoch=1, alpha_shift=-0.15)
    gap = Modification(from_epoch=5, alpha_shift=-0.15, regularisation=1.34)
    checkpoints = {
        0: [(4, 0, 1.0, P)],
        2: [(4, 0, 0.8, P)],
        3: [(4, 0, 1.2, _plan(explored, gap))],
    }
    scores = {2: 0.8, 0: 1.0, 3: 1.2}
    journal = [_round(4, scores, [(3, 2)]), _exploit(4, 3, 2, scores)]
    run = open_run(str(fabricated_run(tmp_path, checkpoints, journal)))
    (trial,) = [t for t in run.trials if t.trial_id == "member-03"]
    chain = lineage(run, trial, trial.checkpoints[0])["segments"]
    assert [(s["from_epoch"], s["to_epoch"], s["trial"], s["copied_from"]) for s in chain] == [
        (1, 4, "member-03", None)
    ]


@pytest.mark.parametrize(
    ("before", "after", "shown"),
    [
        (1.181, 1.184, "w 1.181→1.184"),  # equal at 3 digits: one more digit
        (0.5, 0.25, "w 0.5→0.25"),
        (True, False, "w on→off"),
        (1.0000001, 1.0000002, "w 1→1"),  # beyond 6 digits: shown as they are
    ],
)
def test_a_change_reads_as_a_change(before: Any, after: Any, shown: str):
    from tune_app.analysis.text import change_label
    from tune_app.runs.records import JournalEvent

    event = JournalEvent(
        epoch=2,
        trial="a",
        donor="b",
        val_free_loss=1.0,
        donor_val_free_loss=0.5,
        old={"w": before},
        donor_params={"w": before},
        new={"w": after},
        time=0.0,
    )
    assert change_label(event, limit=None) == shown


def test_a_copy_that_changes_no_plan_field_still_splits_the_lineage(tmp_path: Path):
    """A space of rule switches only: member 1 copies member 2 at epoch 4 and its plan gains no
    modification; the weights of epochs 1-4 are still member 2's."""
    journal = [
        _round(2, {1: 0.9, 2: 1.0, 0: 1.1}, []),
        _round(4, {2: 0.8, 0: 0.9, 1: 1.0}, [(1, 2)]),
        _exploit(4, 1, 2, {2: 0.8, 0: 0.9, 1: 1.0}),
    ]
    checkpoints = {
        0: [(e, 0, 1.2 - e / 20, P) for e in (2, 4, 6, 8, 10)],
        1: [(2, 0, 0.9, P), (4, 0, 1.0, P), (6, 1, 0.6, P), (8, 1, 0.5, P), (10, 1, 0.4, P)],
        2: [(e, 0, 1.2 - e / 20, P) for e in (2, 4, 6, 8, 10)],
    }
    run = open_run(str(fabricated_run(tmp_path, checkpoints, journal)))
    (winner,) = [t for t in run.trials if t.trial_id == "member-01"]
    chain = lineage(run, winner, winner.checkpoints[-1])
    assert chain["root_trial"] == "member-02"
    assert [
        (s["trial"], s["from_epoch"], s["to_epoch"], s["cause"]) for s in chain["segments"]
    ] == [
        ("member-02", 1, 4, "start"),
        ("member-01", 5, 10, "exploit"),
    ]
    assert "member-02 epochs 1-4 -> member-01 epochs 5-10" in "\n".join(search_summary(run))


@pytest.mark.parametrize(
    ("selection", "first_line"),
    [
        (None, "PBT: 1 rounds, 0 exploits (epoch 2: 0)"),  # a journal from before the choice
        ("truncation", "PBT: 1 rounds, 0 exploits (epoch 2: 0)"),
        ("recent", "PBT (recent selection): 1 rounds, 0 exploits (epoch 2: 0)"),
        ("improvement", "PBT (improvement selection): 1 rounds, 0 exploits (epoch 2: 0)"),
    ],
)
def test_the_summary_and_report_name_the_selection_rule(tmp_path: Path, selection, first_line):
    from tune_app.analysis.answer import _what_ran

    event = _round(2, {1: 0.9, 0: 1.0}, [])
    if selection is not None:
        event["selection"] = selection
    run = open_run(str(fabricated_run(tmp_path, {0: CHECKPOINTS[0], 1: CHECKPOINTS[1]}, [event])))
    assert search_summary(run)[0] == first_line
    assert f"ranked at each round by {selection or 'truncation'} selection" in _what_ran(
        run, [], 10
    )


def test_a_trial_with_checkpoints_but_no_params_json_still_counts(four_rounds):
    """The driver syncs params.json after a worker persists its checkpoints: after a full disk
    or a killed driver a trial folder may hold checkpoints alone (the storage-full fault test)."""
    (four_rounds / "member-02" / "params.json").unlink()
    (four_rounds / "member-01" / "params.json").unlink()
    shutil.rmtree(four_rounds / "member-01" / "checkpoint_000000")
    shutil.rmtree(four_rounds / "member-01" / "checkpoint_000001")
    run = open_run(str(four_rounds))
    assert sorted(t.location.name for t in run.trials) == ["member-00", "member-02", "member-03"]
    trial, checkpoint = find_best(run)
    assert (trial.location.name, checkpoint.epoch) == ("member-02", 10)

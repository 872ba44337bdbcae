"""Monitoring rules: plateau -> warm restart, widening gap -> more regularisation; recorded in the
plan so that a replay without the rule gives the same run."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import train_tiny

from tune_app.plan.plan import Plan, load_plan
from tune_app.plan.rules import MonitorRules

PLAN = load_plan(phase_epochs=3)


@pytest.mark.parametrize(
    ("rules", "last", "expect_restart", "expect_reg"),
    [
        (
            MonitorRules(plateau_restart=True, patience=2),
            {"epochs_since_best": 3, "gap_change": -1},
            True,
            1.0,
        ),
        (
            MonitorRules(plateau_restart=True, patience=2),
            {"epochs_since_best": 2, "gap_change": -1},
            False,
            None,
        ),
        (MonitorRules(gap_regularise=1.5), {"epochs_since_best": 0, "gap_change": 0.1}, False, 1.5),
        (
            MonitorRules(gap_regularise=1.5),
            {"epochs_since_best": 0, "gap_change": -0.1},
            False,
            None,
        ),
        (
            MonitorRules(plateau_restart=True, gap_regularise=2.0, patience=0),
            {"epochs_since_best": 1, "gap_change": 1},
            True,
            2.0,
        ),
    ],
)
def test_rules_at_a_boundary(rules, last, expect_restart, expect_reg):
    changed = rules(3, [last], PLAN)
    if expect_reg is None and not expect_restart:
        assert changed is None
        return
    mod = changed.active_modification(4)
    assert mod.from_epoch == 4
    assert (mod.lr_restart is not None) == expect_restart
    assert mod.regularisation == expect_reg
    assert changed.values_at(4).weight_decay == pytest.approx(
        PLAN.values_at(4).weight_decay * expect_reg
    )
    if expect_restart:
        assert changed.lr_at(4) == pytest.approx(rules.plateau_factor * PLAN.phases[1].lr.peak)


def test_the_gap_rule_compounds_up_to_the_bound_a_plan_may_hold():
    """Widening at every boundary: 2, 4, 8, then 10 (not 16: a plan with 16 would not load),
    then nothing left to change; every plan it makes survives a round trip through its dict."""
    rules, plan, seen = MonitorRules(gap_regularise=2.0), load_plan(phase_epochs=3), []
    for boundary in (3, 6, 9, 12):
        changed = rules(boundary, [{"gap_change": 1.0}], plan)
        assert changed is not None, boundary
        plan = Plan.from_dict(changed.to_dict())
        seen.append(plan.active_modification(boundary + 1).regularisation)
    assert seen == [2.0, 4.0, 8.0, 10.0]
    assert rules(12, [{"gap_change": 1.0}], plan) is None  # at the bound: nothing to change


def test_no_rule_after_the_last_epoch():
    assert MonitorRules(gap_regularise=2.0)(15, [{"gap_change": 1.0}], PLAN) is None


def test_rule_changes_are_in_the_checkpoints_plan_and_replay_exactly(tiny_dataset, tmp_path: Path):
    rules = MonitorRules(gap_regularise=1.5, plateau_restart=True, patience=0)
    ruled = train_tiny(PLAN, tiny_dataset, tmp_path / "a", rules=rules)
    assert any(row["plan_changed"] for row in ruled.history)
    from tune_app.training.checkpoint import load_state

    final_plan = Plan.from_dict(load_state(ruled.last_checkpoint)["plan"])
    assert final_plan.modifications, "the rules' changes are recorded in the plan"
    replay = train_tiny(final_plan, tiny_dataset, tmp_path / "b")
    assert replay.history[-1]["val_free_loss"] == ruled.history[-1]["val_free_loss"]


def test_a_rule_keeps_the_running_modification_going():
    """Restating the trial's modification at the boundary must not restart its curriculum ramp
    nor carry a one-off warm restart into the next phase."""
    from tune_app.plan.modifications import CurriculumPacing, LrRestart, Modification

    plan = PLAN.apply(
        Modification(1, curriculum=CurriculumPacing(0.4, 5), lr_restart=LrRestart(0, 2.0))
    )
    changed = MonitorRules(gap_regularise=1.5)(3, [{"gap_change": 1.0}], plan)
    for epoch in range(4, 10):
        assert changed.values_at(epoch).curriculum == pytest.approx(
            plan.values_at(epoch).curriculum
        )
        assert changed.lr_at(epoch) == pytest.approx(
            PLAN.lr_at(epoch)
        )  # the restart ended with phase 1
    assert changed.values_at(4).weight_decay == pytest.approx(1.5 * plan.values_at(4).weight_decay)

"""The seed's own levers as modifications: lr, weight decay, noise and gradient-clip scales,
applied from an epoch on, clamped to the space, neutral for the control, replayed exactly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tiny import train_tiny

from tune_app.errors import InputError
from tune_app.plan import registry
from tune_app.plan.modifications import LrRestart, Modification, modification_from_params
from tune_app.plan.plan import Plan, load_plan
from tune_app.plan.search_space import load_space, parse_space
from tune_app.runs.records import CheckpointMeta
from tune_app.runs.storage import locate
from tune_app.tune.trainable import MEMBER_KEY, trial_plan

SEED = load_plan()
SPACE = load_space(None, "modifications_full.yaml", "pbt").expand(["c0", "c1", "c2"])
LEVERS = {  # parameter -> the knob of `Settings` it multiplies
    "lr_scale": "lr",
    "weight_decay_scale": "weight_decay",
    "noise_scale": "noise",
    "grad_clip_scale": "grad_clip",
}
STEPS = 10  # optimizer steps per epoch in these checks


def _knob(plan: Plan, knob: str, epoch: int, step: int) -> float:
    return float(getattr(plan.values_at(epoch, step, STEPS), knob))


@pytest.mark.parametrize("name", list(LEVERS))
@pytest.mark.parametrize(
    ("from_epoch", "scale"),
    [
        (1, 0.5),  # from the start: phase 1's OneCycle warm-up and decay, scaled
        (151, 2.0),  # mid-phase: a cosine decay from its middle on, and every later phase
        (401, 3.0),  # the last phase, constant
    ],
)
def test_a_lever_multiplies_its_knob_from_its_epoch_on(name, from_epoch, scale):
    plan = SEED.apply(Modification(from_epoch, **{name: scale}))
    knob = LEVERS[name]
    for epoch in sorted({1, 30, 100, 150, 151, 152, 200, 201, 350, 400, 401, 500}):
        for step in (0, 3, STEPS - 1):
            before = _knob(SEED, knob, epoch, step)
            after = _knob(plan, knob, epoch, step)
            expected = before * scale if epoch >= from_epoch else before
            assert after == pytest.approx(expected, rel=1e-12), (epoch, step)
    others = [k for k in LEVERS.values() if k != knob] + ["teacher_forcing", "alpha"]
    for other in others:  # one lever moves one knob
        assert _knob(plan, other, 250, 5) == _knob(SEED, other, 250, 5)


def test_the_lr_scale_keeps_the_onecycle_shape():
    """Phase 1 warms up from 0.0005 to 0.001 over 30 % of its steps, then decays: x 0.5 it
    peaks at 0.0005 at the same step."""
    plan = SEED.apply(Modification(1, lr_scale=0.5))
    lrs = [plan.lr_at(epoch, step, STEPS) for epoch in range(1, 101) for step in range(STEPS)]
    seed = [SEED.lr_at(epoch, step, STEPS) for epoch in range(1, 101) for step in range(STEPS)]
    assert max(lrs) == pytest.approx(0.0005) and lrs.index(max(lrs)) == seed.index(max(seed))
    assert lrs[0] == pytest.approx(0.00025)


def test_the_lr_scale_scales_warm_restarts_too():
    restart = LrRestart(period=0, factor=2.0)
    plain = SEED.apply(Modification(251, lr_restart=restart))
    scaled = SEED.apply(Modification(251, lr_restart=restart, lr_scale=0.25))
    for epoch in (251, 275, 300, 301, 450):
        assert scaled.lr_at(epoch, 4, STEPS) == pytest.approx(0.25 * plain.lr_at(epoch, 4, STEPS))


def test_the_gap_rule_and_the_levers_multiply():
    plan = SEED.apply(
        Modification(101, regularisation=2.0, weight_decay_scale=0.5, noise_scale=3.0)
    )
    assert plan.values_at(120).weight_decay == pytest.approx(SEED.values_at(120).weight_decay)
    assert plan.values_at(120).noise == pytest.approx(6.0 * SEED.values_at(120).noise)


def test_the_control_is_untouched():
    """The control's parameters give no modification at all, so its plan is the seed's."""
    neutral = SPACE.neutral()
    assert {neutral[name] for name in LEVERS} == {1.0}
    assert modification_from_params(neutral, 1, 100, ["c0", "c1", "c2"]).is_identity
    assert Modification(1).is_identity and Modification(1).to_dict() == {"from_epoch": 1}
    config = {MEMBER_KEY: {"params": neutral, "control": True}}
    assert trial_plan(SEED, config, None, ["c0", "c1", "c2"]) == SEED


@pytest.mark.parametrize("name", list(LEVERS))
def test_a_lever_is_not_identity_and_round_trips_through_yaml(name):
    mod = Modification(7, **{name: 1.7})
    assert not mod.is_identity and mod.to_dict() == {"from_epoch": 7, name: 1.7}
    plan = SEED.apply(mod)
    again = Plan.from_yaml(plan.to_yaml())
    assert again == plan


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("lr_scale", 0, "modifications.1.lr_scale: must be a number in [0.001, 100]"),
        ("lr_scale", "fast", "modifications.1.lr_scale: must be a number"),
        ("grad_clip_scale", 0, "modifications.1.grad_clip_scale: must be a number in (0, 100]"),
        ("noise_scale", -0.5, "modifications.1.noise_scale: must be a number in [0, 100]"),
        ("weight_decay_scale", 101, "it multiplies the plan's weight decay"),
        ("lr_scale", float("inf"), "modifications.1.lr_scale"),
    ],
)
def test_a_plan_file_with_a_lever_out_of_range_is_refused(name, value, fragment):
    raw = {**SEED.to_dict(), "modifications": [{"from_epoch": 5, name: value}]}
    with pytest.raises(InputError) as info:
        Plan.from_dict(raw, "plan.yaml")
    assert fragment in str(info.value)


@pytest.mark.parametrize("name", list(LEVERS))
def test_every_lever_is_clamped_to_the_space(name):
    (param,) = [p for p in SPACE.params if p.name == name]
    assert param.clamp(1e6) == param.high and param.clamp(-1e6) == param.low
    rng = random.Random(0)
    value = param.high
    for _ in range(200):
        value = param.mutated(value, rng, 0.25)
        assert param.low <= value <= param.high
    # the space's bounds keep every value the plan may hold
    assert param.low in registry.SCALES[name] and param.high in registry.SCALES[name]


@pytest.mark.parametrize(
    ("name", "low", "fragment"),
    [
        ("lr_scale", 0.0, "params.lr_scale.low: out of range (got 0.0); lr_scale must be in"),
        ("grad_clip_scale", 0.0, "grad_clip_scale must be in (0, 100]"),
        ("noise_scale", -1.0, "params.noise_scale.low: out of range (got -1.0)"),
        ("weight_decay_scale", -1.0, "weight_decay_scale must be in [0, 100]"),
    ],
)
def test_a_space_with_bounds_a_plan_cannot_hold_is_refused(name, low, fragment):
    raw = {"kind": "pbt", "params": {name: {"type": "float", "low": low, "high": 2.0}}}
    with pytest.raises(InputError) as info:
        parse_space(raw, "space.yaml", "pbt")
    assert fragment in str(info.value)


def test_levers_taken_at_a_boundary_replay_exactly(tiny_dataset, tmp_path: Path):
    """A member trains 2 phases as the plan, then explores the four levers (as a PBT exploit
    does: the checkpoint's plan with the new modification from the next epoch); the plan it
    ends with, trained from scratch, gives the same numbers at every epoch, and the levers are
    in force from epoch 5 on."""
    plan = load_plan(phase_epochs=2)
    first = train_tiny(plan, tiny_dataset, tmp_path / "a", stop_after=4)
    meta = CheckpointMeta.read(locate(first.last_checkpoint))
    assert meta.epoch == 4
    levers = {
        "lr_scale": 3.0,
        "weight_decay_scale": 4.0,
        "noise_scale": 0.2,
        "grad_clip_scale": 0.5,
    }
    config = {MEMBER_KEY: {"params": {**SPACE.neutral(), **levers}}}
    explored = trial_plan(plan, config, meta, ["c0", "c1", "c2"])
    assert [m.from_epoch for m in explored.modifications] == [5]
    went_on = train_tiny(explored, tiny_dataset, tmp_path / "a", resume=first.last_checkpoint)
    replay = train_tiny(explored, tiny_dataset, tmp_path / "b")
    assert len(went_on.history) == len(replay.history) == plan.total_epochs
    assert [row["val_free_loss"] for row in replay.history] == [
        row["val_free_loss"] for row in went_on.history
    ]
    by_epoch = {int(row["epoch"]): row for row in replay.history}
    for name, knob in LEVERS.items():
        for epoch in (4, 5, 9):
            expected = _knob(plan, knob, epoch, 0) * (levers[name] if epoch >= 5 else 1.0)
            assert by_epoch[epoch][knob] == pytest.approx(expected, rel=1e-9), (knob, epoch)


def test_the_lineage_says_what_each_lever_does():
    from tune_app.analysis.answer import describe_modification

    plan = load_plan(phase_epochs=2).apply(
        Modification(5, lr_scale=3.0, weight_decay_scale=0.25, noise_scale=2.0, grad_clip_scale=0.5)
    )
    meta = CheckpointMeta(6, 3, {}, "", ("c0",), plan.to_dict(), "", {})
    assert describe_modification(meta, ["c0"]) == (
        "from epoch 5: lr x3; weight decay x0.25; noise x2; grad clip x0.5"
    )

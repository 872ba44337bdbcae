"""The plan as data: seed values, schedule shapes, round trips, overrides and bad input."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from tune_app.errors import InputError
from tune_app.plan.modifications import CurriculumPacing, LrRestart, Modification
from tune_app.plan.plan import Plan, load_plan

SEED = load_plan()


@pytest.mark.parametrize(
    ("epoch", "lr", "teacher_forcing", "weight_decay", "noise", "grad_clip", "alpha", "max_lag"),
    [
        (1, 0.0005, 0.7, 0.01, 0.05, 1.0, 0.8, 10),
        (31, 0.001, None, 0.01, 0.05, 1.0, 0.8, 10),
        (100, None, 0.6, 0.01, 0.05, 1.0, 0.8, 10),
        (101, 0.0005, 0.6, 0.008, 0.04, 0.9, 0.75, 15),
        (200, None, 0.5, 0.008, 0.04, 0.9, 0.75, 15),
        (201, 0.0001, 0.5, 0.005, 0.03, 0.8, 0.7, 15),
        (300, None, 0.4, 0.005, 0.03, 0.8, 0.7, 15),
        (301, 0.00005, 0.4, 0.003, 0.02, 0.7, 0.65, 20),
        (400, None, 0.3, 0.003, 0.02, 0.7, 0.65, 20),
        (401, 0.00001, 0.3, 0.001, 0.01, 0.6, 0.6, 20),
        (500, 0.00001, 0.3, 0.001, 0.01, 0.6, 0.6, 20),
    ],
)
def test_seed_values_at_phase_starts_and_ends(
    epoch, lr, teacher_forcing, weight_decay, noise, grad_clip, alpha, max_lag
):
    s = SEED.values_at(epoch, 0, steps_per_epoch=10)
    if lr is not None:
        assert s.lr == pytest.approx(lr, rel=1e-9)
    if teacher_forcing is not None:
        assert s.teacher_forcing == pytest.approx(teacher_forcing)
    assert (s.weight_decay, s.noise, s.grad_clip, s.alpha, s.max_lag) == pytest.approx(
        (weight_decay, noise, grad_clip, alpha, max_lag)
    )


@pytest.mark.parametrize(
    ("phase_end", "end_lr"), [(100, 0.0005), (200, 0.0001), (300, 0.00005), (400, 0.00001)]
)
def test_lr_reaches_phase_end_value_on_last_step(phase_end, end_lr):
    steps = 50
    assert SEED.lr_at(phase_end, steps - 1, steps) == pytest.approx(end_lr, rel=1e-3)


@pytest.mark.parametrize("knob", ["teacher_forcing"])
@pytest.mark.parametrize("phase", [1, 2, 3, 4])
def test_teacher_forcing_decreases_within_phase(knob, phase):
    start = (phase - 1) * 100 + 1
    values = [getattr(SEED.values_at(e), knob) for e in range(start, start + 100)]
    assert all(a > b for a, b in pairwise(values))


@pytest.mark.parametrize("phase", [2, 3, 4])
def test_lr_decreases_per_step_within_cosine_phases(phase):
    start = (phase - 1) * 100 + 1
    values = [SEED.lr_at(e, s, 4) for e in range(start, start + 100) for s in range(4)]
    assert all(a > b for a, b in pairwise(values))


def test_onecycle_warms_up_then_decays():
    values = [SEED.lr_at(e, s, 4) for e in range(1, 101) for s in range(4)]
    peak = values.index(max(values))
    assert peak == 120  # 30 % of 400 steps
    assert all(a < b for a, b in pairwise(values[: peak + 1]))
    assert all(a > b for a, b in pairwise(values[peak:]))


def test_yaml_round_trip_is_exact():
    assert Plan.from_yaml(SEED.to_yaml()) == SEED
    modified = SEED.apply(
        Modification(
            101,
            alpha_shift=-0.1,
            lr_restart=LrRestart(0, 2.0),
            curriculum=CurriculumPacing(0.5, 20),
            component_weights=(1.0, 2.0, 0.5),
            regularisation=1.5,
        )
    )
    assert Plan.from_yaml(modified.to_yaml()) == modified


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("phases.2.alpha=0.7", lambda p: p.values_at(150).alpha == 0.7),
        ("phases.5.max_lag=25", lambda p: p.values_at(450).max_lag == 25),
        ("phases.1.lr={cosine: {start: 0.002, end: 0.001}}", lambda p: p.values_at(1).lr == 0.002),
        ("name=mine", lambda p: p.name == "mine"),
        ("phases.3.epochs=10", lambda p: p.total_epochs == 410),
    ],
)
def test_overrides(override, check):
    assert check(load_plan(None, [override]))


@pytest.mark.parametrize("epochs", [1, 2, 7])
def test_phase_epochs_shortens_and_stretches(epochs):
    plan = load_plan(phase_epochs=epochs)
    assert plan.phase_ends == tuple(epochs * i for i in range(1, 6))
    for index in range(5):
        first = plan.values_at(plan.phase_start(index))
        assert first.lr == SEED.values_at(SEED.phase_start(index)).lr
        assert first.alpha == SEED.values_at(SEED.phase_start(index)).alpha
    if epochs > 1:  # the last epoch of a linear TF phase reaches its end value
        assert plan.values_at(epochs).teacher_forcing == pytest.approx(0.6)


def _seed_dict() -> dict:
    return SEED.to_dict()


def _with(path: str, value) -> dict:  # type: ignore[no-untyped-def]
    raw = _seed_dict()
    keys = path.split(".")
    node = raw
    for key in keys[:-1]:
        node = node[int(key) - 1] if isinstance(node, list) else node[key]
    node[keys[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (_with("phases.1.bogus", 1), "phases.1.bogus", "unknown key"),
        (_with("phases.2.epochs", -5), "phases.2.epochs", ">= 1"),
        (_with("phases.3.lr", 0), "phases.3.lr", "> 0"),
        (
            _with("phases.4.teacher_forcing", {"linear": {"start": 1.5, "end": 0.3}}),
            "phases.4.teacher_forcing",
            "[0, 1]",
        ),
        (_with("phases.5.alpha", -0.1), "phases.5.alpha", "[0, 1]"),
        (_with("phases.1.max_lag", 0), "phases.1.max_lag", ">= 1"),
        (_with("phases.1.noise", "lots"), "phases.1.noise", "expected a schedule"),
        (
            _with(
                "phases.1.lr",
                {"onecycle": {"start": 1e-4, "max": 1e-3, "end": 1e-4, "pct_start": 1.2}},
            ),
            "pct_start",
            "between 0 and 1",
        ),
        (
            _with("phases.1.lr", {"triangle": {"start": 1e-4}}),
            "phases.1.lr",
            "unknown schedule shape",
        ),
        ({"phases": []}, "phases", "non-empty"),
        ({"name": "x"}, "phases", "non-empty"),
        (_with("extra", 1), "extra", "unknown key"),
    ],
)
def test_bad_plans_name_the_field(raw, field, fragment):
    with pytest.raises(InputError) as info:
        Plan.from_dict(raw, "test.yaml")
    message = str(info.value)
    assert field in message and fragment in message


def test_all_errors_are_collected_in_one_message():
    raw = _with("phases.1.alpha", 3)
    raw["phases"][2]["max_lag"] = -1
    raw["phases"][4]["weird"] = True
    with pytest.raises(InputError) as info:
        Plan.from_dict(raw, "test.yaml")
    assert "3 problems" in str(info.value)


def test_malformed_yaml_is_an_input_error():
    with pytest.raises(InputError, match="not valid YAML"):
        Plan.from_yaml("phases: [\n  - epochs: 3\n bad", "x.yaml")


@pytest.mark.parametrize(
    "override",
    ["phases.9.alpha=0.5", "phases.0.alpha=0.5", "nothing", "phases.1.lr.cosine.start=1"],
)
def test_bad_overrides(override):
    with pytest.raises(InputError, match="--set"):
        load_plan(None, [override])


def test_phase_epochs_must_be_positive():
    with pytest.raises(InputError, match="--phase-epochs"):
        load_plan(phase_epochs=0)


# ------------------------------------------------------------------ modifications
def test_modification_shifts_are_clamped_and_start_at_their_epoch():
    plan = SEED.apply(Modification(201, alpha_shift=0.5, teacher_forcing_shift=-0.9))
    assert plan.values_at(200).alpha == 0.75
    assert plan.values_at(201).alpha == 1.0
    assert plan.values_at(201).teacher_forcing == 0.0


def test_later_modification_replaces_earlier_ones_from_its_epoch():
    plan = SEED.apply(Modification(101, alpha_shift=-0.1)).apply(
        Modification(201, teacher_forcing_shift=0.1)
    )
    assert plan.values_at(150).alpha == pytest.approx(0.65)
    assert plan.values_at(250).alpha == pytest.approx(0.7)  # the second one carries no alpha shift
    assert plan.values_at(250).teacher_forcing == pytest.approx(
        SEED.values_at(250).teacher_forcing + 0.1
    )
    rewound = plan.apply(Modification(151, alpha_shift=0.05))
    assert [m.from_epoch for m in rewound.modifications] == [101, 151]


def test_warm_restart_goes_back_up_and_cosines_to_phase_end():
    plan = SEED.apply(Modification(251, lr_restart=LrRestart(period=0, factor=1.0)))
    assert plan.lr_at(250) < 0.0001
    assert plan.lr_at(251) == pytest.approx(0.0001)  # phase 3's peak
    assert plan.lr_at(300, 9, 10) == pytest.approx(0.00005, rel=1e-2)
    assert plan.lr_at(301) == SEED.lr_at(301)  # one restart: later phases as planned


def test_periodic_restarts_repeat():
    plan = SEED.apply(Modification(101, lr_restart=LrRestart(period=20, factor=0.5)))
    for epoch in (101, 121, 141, 201, 221):
        assert plan.lr_at(epoch) == pytest.approx(
            0.5 * plan.phases[plan.phase_index(epoch)].lr.peak
        )
    assert plan.lr_at(130) < plan.lr_at(121)


def test_curriculum_pacing_rises_to_all_windows():
    plan = SEED.apply(Modification(1, curriculum=CurriculumPacing(start=0.25, epochs=10)))
    fractions = [plan.values_at(e).curriculum for e in range(1, 15)]
    assert fractions[0] == 0.25 and fractions[10] == 1.0
    assert all(a <= b for a, b in pairwise(fractions))
    assert math.isclose(SEED.values_at(1).curriculum, 1.0)

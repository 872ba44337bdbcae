"""Search spaces: validation, sampling, clamped mutation, and parameters -> plan modifications."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tune_app.errors import InputError
from tune_app.plan.modifications import modification_from_params
from tune_app.plan.plan import load_plan
from tune_app.plan.search_space import Param, SearchSpace, load_space, parse_space, space_changes
from tune_app.tune.pbt import population

SPACE = load_space(None, "modifications_full.yaml", "pbt").expand(["c0", "c1", "c2"])


def test_the_default_space_is_what_certified_out_of_the_full_one():
    """benchmarks/sensitivity.py (issue 22): the default keeps the parameters that certified
    >= 2 % better at a bound on some set, within the full space's bounds; the rest stay
    available in modifications_full.yaml."""
    default = load_space(None, "modifications.yaml", "pbt").expand(["c0"])
    full = {p.name: p for p in SPACE.params}
    assert {p.name for p in default.params} == {
        "lr_restart",
        "lr_restart_factor",
        "lr_restart_period",
        "teacher_forcing_shift",
        "lr_scale",
        "grad_clip_scale",
        "plateau_restart",
        "plateau_restart_factor",
    }
    for param in default.params:
        assert param.name in full
        if param.type == "float":
            assert param.low < param.high
            low, high = param.initial or (param.low, param.high)
            assert param.low <= low < high <= param.high, param.name
    by_name = {p.name: p for p in default.params}
    assert by_name["lr_scale"].low == 0.5  # x0.25 certified worse on all five sets
    assert by_name["lr_restart_factor"].low == 1.0  # a restart below the peak: worse on 4 of 5


def test_default_space_has_the_plans_modifications():
    names = {p.name for p in SPACE.params}
    assert {
        "alpha_shift",
        "teacher_forcing_shift",
        "lr_restart",
        "lr_restart_factor",
        "curriculum_start",
        "component_weight_c0",
        "component_weight_c2",
    } <= names


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 30), resample=st.floats(0.0, 1.0))
def test_every_mutation_stays_within_bounds(seed, rounds, resample):
    rng = random.Random(seed)
    values = SPACE.sample(rng)
    for _ in range(rounds):
        values = SPACE.mutate(values, rng, resample)
        for param in SPACE.params:
            if param.type in ("float", "int"):
                assert param.low <= values[param.name] <= param.high, (
                    param.name,
                    values[param.name],
                )


def test_mutation_clamps_values_pushed_out_of_bounds():
    rng = random.Random(0)
    (alpha,) = [p for p in SPACE.params if p.name == "alpha_shift"]
    assert all(alpha.low <= alpha.mutated(alpha.high, rng, 0.0) <= alpha.high for _ in range(100))
    assert alpha.clamp(5.0) == alpha.high and alpha.clamp(-5.0) == alpha.low


def test_population_starts_with_the_control():
    members = population(SPACE, 5, seed=3)
    assert members[0]["control"] and not any(m["control"] for m in members[1:])
    control = modification_from_params(members[0]["params"], 1, 100, ["c0", "c1", "c2"])
    assert control.is_identity
    assert population(SPACE, 5, seed=3) == members  # deterministic per seed


def test_params_become_a_plan_modification():
    params = {
        **SPACE.neutral(),
        "alpha_shift": -0.1,
        "lr_restart": True,
        "lr_restart_factor": 2.0,
        "lr_restart_period": 0.5,
        "curriculum_start": 0.5,
        "curriculum_epochs": 0.2,
        "component_weight_c1": 1.5,
    }
    mod = modification_from_params(params, 101, 100, ["c0", "c1", "c2"])
    assert mod.alpha_shift == -0.1
    assert (mod.lr_restart.period, mod.lr_restart.factor) == (50, 2.0)
    assert (mod.curriculum.start, mod.curriculum.epochs) == (0.5, 20)
    assert mod.component_weights == (1.0, 1.5, 1.0)
    plan = load_plan().apply(mod)
    assert plan.values_at(101).alpha == pytest.approx(0.65)
    assert plan.lr_at(101) == pytest.approx(2.0 * 0.0005)


def _space(**param) -> dict:  # type: ignore[no-untyped-def]
    return {"kind": "pbt", "params": {"alpha_shift": param}}


def _weights(**bounds) -> dict:  # type: ignore[no-untyped-def]
    body = {"type": "float", "per_component": True, "mutate": "scale", **bounds}
    return {"kind": "pbt", "params": {"component_weight": body}}


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (_space(type="float", low=1, high=0), "params.alpha_shift: needs numbers low < high"),
        (
            _space(type="float", low=0, high=1, mutate="wiggle"),
            "params.alpha_shift.mutate: unknown mutation",
        ),
        (
            _space(type="float", low=0, high=1, mutate="shift"),
            "params.alpha_shift.step: a shift needs step > 0",
        ),
        (_space(type="float", low=0, high=1, initial=[0.5, 2]), "params.alpha_shift.initial"),
        (
            _space(type="float", low=0, high=1, colour="red"),
            "params.alpha_shift.colour: unknown key",
        ),
        (_space(type="complex"), "params.alpha_shift.type: unknown type"),
        (_space(type="choice", values=[]), "params.alpha_shift.values"),
        ({"kind": "pbt", "params": {}}, "params: must be a non-empty mapping"),
        (
            {"kind": "capacity", "params": {"hidden": {"type": "bool"}}},
            "kind: this command needs a 'pbt' space",
        ),
        (
            {"kind": "pbt", "params": {"hidden": {"type": "int", "low": 16, "high": 128}}},
            "params.hidden: PBT cannot change 'hidden'",
        ),
        (
            {
                "kind": "pbt",
                "params": {"component_weight": {"type": "float", "low": 0.5, "high": 2}},
            },
            "set per_component: true for component_weight",
        ),
        # a per-component weight w_c enters the loss as sum(w_c * loss_c) / sum(w_c): a
        # negative one rewards a worse fit, 0 drops the component (all 0: no loss at all)
        (
            _weights(low=-0.5, high=2.0),
            "params.component_weight.low: out of range (got -0.5); component_weight must be > 0",
        ),
        (_weights(low=0, high=2.0), "params.component_weight.low: out of range (got 0.0)"),
        (_weights(low=-2, high=-1), "params.component_weight.high: out of range (got -1.0)"),
        (  # every value a space may draw makes a plan that loads: a shift stays in [-1, 1]
            _space(type="float", low=-0.5, high=1.5),
            "params.alpha_shift.high: out of range (got 1.5); alpha_shift must be in [-1, 1]",
        ),
        (
            _space(type="choice", values=[0.0, 2.0]),
            "params.alpha_shift.values.2: out of range (got 2.0)",
        ),
        # a bool is on or off: no bounds, and only a switch may be one
        (
            {"kind": "pbt", "params": {"lr_restart": {"type": "bool", "low": 0, "high": 1}}},
            "params.lr_restart.low: a bool has no bounds (got 0); a bool takes only type, "
            "per_component",
        ),
        (
            {"kind": "pbt", "params": {"lr_restart": {"type": "bool", "mutate": "shift"}}},
            "params.lr_restart.mutate: a bool has no mutate",
        ),
        (  # how a bool is explored, true of both explore steps (PB2 does not redraw it)
            {"kind": "pbt", "params": {"lr_restart": {"type": "bool", "step": 0.1}}},
            "(it is on or off: --scheduler pbt redraws it at random when it explores; pb2 picks "
            "it with its GP as a number in [0, 1], on from 0.5 (at random, as pbt, while the GP "
            "has no data))",
        ),
        (_space(type="choice", values=[0.1], low=0), "params.alpha_shift.low: a choice has no"),
        (_space(type="bool"), "params.alpha_shift.type: alpha_shift is a number, not on or off"),
        (
            {"kind": "pbt", "params": {"lr_restart": {"type": "float", "low": 0, "high": 1}}},
            "params.lr_restart.type: lr_restart is on or off (got 'float'); use type: bool",
        ),
    ],
)
def test_bad_spaces_name_the_field(raw, fragment):
    with pytest.raises(InputError) as info:
        parse_space(raw, "space.yaml", "pbt")
    assert fragment in str(info.value)


def test_capacity_space_names_only_capacity():
    raw = {"kind": "capacity", "params": {"alpha_shift": {"type": "float", "low": 0, "high": 1}}}
    with pytest.raises(
        InputError, match=r"params\.alpha_shift: unknown capacity parameter; use hidden"
    ):
        parse_space(raw, "space.yaml", "capacity")


def test_every_default_space_param_is_in_the_registry_and_the_control_is_neutral():
    from tune_app.plan import registry
    from tune_app.plan.rules import MonitorRules

    for param in SPACE.params:
        assert registry.lookup(param.name) is not None, param.name
    neutral = SPACE.neutral()
    assert neutral["alpha_shift"] == 0.0 and neutral["component_weight_c1"] == 1.0
    assert neutral["lr_restart"] is False and neutral["gap_regularise"] == 1.0
    assert not MonitorRules.from_params(neutral, 30).active
    assert MonitorRules.from_params({"plateau_restart": True, "plateau_restart_factor": 3}, 5) == (
        MonitorRules(plateau_restart=True, plateau_factor=3.0, patience=5)
    )


def test_space_file_errors(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        load_space(tmp_path / "missing.yaml", "modifications.yaml", "pbt")
    bad = tmp_path / "bad.yaml"
    bad.write_text("params: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        load_space(bad, "modifications.yaml", "pbt")
    good = tmp_path / "good.yaml"
    good.write_text(
        yaml.safe_dump(
            {"kind": "pbt", "params": {"alpha_shift": {"type": "float", "low": -0.1, "high": 0.1}}}
        )
    )
    assert load_space(good, "modifications.yaml", "pbt").params[0].name == "alpha_shift"


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name",
    [
        "modifications.yaml",
        "modifications_full.yaml",
        "modifications_wide_lr.yaml",
        "capacity.yaml",
    ],
)
def test_top_level_spaces_are_copies_of_the_package_data(name):
    """tune_app/search_spaces/ is the source; search_spaces/ is the users' copy of it."""
    shipped = (ROOT / "tune_app" / "search_spaces" / name).read_text()
    assert (ROOT / "search_spaces" / name).read_text() == shipped, (
        f"search_spaces/{name} differs from tune_app/search_spaces/{name}: copy the package's over"
    )


def test_spaces_load_from_a_non_editable_install(tmp_path: Path):
    import shutil
    import subprocess
    import sys

    source = tmp_path / "src"
    shutil.copytree(
        ROOT / "tune_app", source / "tune_app", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, timeout=300)
    probe = (
        "import tune_app; from tune_app.plan.search_space import load_space; "
        "print(tune_app.__file__, len(load_space(None, 'modifications.yaml', 'pbt').params), "
        "len(load_space(None, 'capacity.yaml', 'capacity').params))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    where, pbt, capacity = done.stdout.split()
    assert where.startswith(str(target)) and int(pbt) > 0 and int(capacity) > 0


# ------------------------------------------------ a space as a run's manifest records it


@pytest.mark.parametrize(
    ("name", "kind"), [("modifications.yaml", "pbt"), ("capacity.yaml", "capacity")]
)
def test_a_space_as_recorded_reads_back_the_same(name, kind):
    """What a manifest records (to_dict, through JSON) rebuilds the very space, and a space
    compares equal with its own record: --resume refuses only a real change."""
    import json

    space = load_space(None, name, kind)
    recorded = json.loads(json.dumps(space.to_dict()))
    again = SearchSpace.from_dict(recorded, "tune_app_run.json", file="m2.yaml")
    assert again.to_dict() == space.to_dict() and (again.kind, again.file) == (kind, "m2.yaml")
    assert again.quasi_random(3, seed=1) == space.quasi_random(3, seed=1)
    assert space_changes(again, space) == []


def _m2(**alpha_shift):
    body = {"type": "float", "low": -0.3, "high": 0.15, "mutate": "shift", "step": 0.05}
    return {"kind": "pbt", "params": {"alpha_shift": {**body, **alpha_shift}, **_SWITCH}}


_SWITCH = {"lr_restart": {"type": "bool"}}


@pytest.mark.parametrize(
    ("edited", "changes"),
    [
        (_m2(), []),
        (_m2(high=0.05), ["alpha_shift: high 0.15 -> 0.05"]),
        (_m2(initial=[-0.3, 0.15]), []),  # the initial range written out as it was
        (_m2(initial=[-0.1, 0.1]), ["alpha_shift: initial the bounds -> [-0.1, 0.1]"]),
        (_m2(step=0.1, factors=[0.5, 2.0]), ["alpha_shift: step 0.05 -> 0.1"]),  # factors: unused
        (
            _m2(mutate="scale"),
            [
                "alpha_shift: mutate 'shift' -> 'scale', step 0.05 -> unset, factors unset -> "
                "[0.8, 1.25]"
            ],
        ),
        (
            {"kind": "pbt", "params": {"alpha_shift": _m2()["params"]["alpha_shift"]}},
            ["lr_restart: not in the file any more (the run searches it)"],
        ),
        (
            {**_m2(), "params": {**_m2()["params"], "plateau_restart": {"type": "bool"}}},
            ["plateau_restart: new in the file (the run does not search it)"],
        ),
    ],
)
def test_space_changes_name_each_parameter_that_differs(edited, changes):
    run = parse_space(_m2(), "m2.yaml", "pbt")
    assert space_changes(run, parse_space(edited, "m2.yaml", "pbt")) == changes


def test_an_int_with_fractional_bounds_is_refused_and_never_leaves_its_bounds():
    """Issue 22's fresh user: `lr_scale: {type: int, low: 0.5, ...}` was accepted and a member
    trained with lr_scale 0 (round(0.4) = 0, int(max(0, 0.5)) = 0)."""
    raw = {
        "kind": "pbt",
        "params": {
            "lr_scale": {"type": "int", "low": 0.5, "high": 2, "mutate": "shift", "step": 1}
        },
    }
    with pytest.raises(InputError) as info:
        parse_space(raw, "space.yaml", "pbt")
    assert "params.lr_scale.low" in str(info.value) and "low: 1" in str(info.value)
    raw["params"]["lr_scale"].update(low=1, initial=[1.5, 2])
    with pytest.raises(InputError, match="initial range is whole numbers"):
        parse_space(raw, "space.yaml", "pbt")
    whole = Param(name="lr_scale", type="int", low=0.5, high=2.5)  # built by hand, unchecked
    assert [whole.clamp(v) for v in (-3, 0.4, 0.6, 2.4, 9)] == [1, 1, 1, 2, 2]


@pytest.mark.parametrize("kind", ["int", "float"])
def test_an_infinite_bound_is_refused_not_a_traceback(kind):
    """Issue 22's second fresh user: `high: .inf` on an int raised OverflowError (exit 1)."""
    raw = {"kind": "pbt", "params": {"lr_scale": {"type": kind, "low": 1, "high": float("inf")}}}
    with pytest.raises(InputError, match="needs finite bounds"):
        parse_space(raw, "space.yaml", "pbt")

"""The sensitivity study's plans and the design study's pass/fail bar (benchmarks/ is not a
package: imported from its folder)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import search_designs
import sensitivity

from tune_app.plan.plan import load_plan
from tune_app.plan.search_space import load_space

COMPONENTS = ["a", "b"]


@pytest.fixture(scope="module")
def space():
    return load_space(None, sensitivity.FULL_SPACE, "pbt").expand(COMPONENTS)


def test_every_plan_field_of_the_space_is_measured_and_no_rule(space):
    names = [p.name for p in sensitivity.measured(space)]
    assert "lr_scale" in names and "alpha_shift" in names
    assert "component_weight_a" in names and "component_weight_b" not in names
    assert "component_weight-low" in sensitivity.arms(
        load_plan(phase_epochs=4), space, COMPONENTS
    )  # the first only
    assert not {"plateau_restart", "plateau_restart_factor", "gap_regularise", "lr_restart"} & set(
        names
    )


def test_each_bound_is_a_plan_of_its_own_from_epoch_1(space):
    plan = load_plan(phase_epochs=4)
    built = sensitivity.arms(plan, space, COMPONENTS)
    # a curriculum starting from every window, or admitting all at once, is the plan itself
    same = {label for label, (p, _) in built.items() if p.fingerprint == plan.fingerprint}
    assert same == {"curriculum_start-high", "curriculum_epochs-low"}
    fingerprints = {p.fingerprint for label, (p, _) in built.items() if label not in same}
    assert len(fingerprints) == len(built) - len(same)  # every other bound: a plan of its own
    lr_low, params = built["lr_scale-low"]
    low = next(p for p in space.params if p.name == "lr_scale").low
    assert params == {"lr_scale": low}
    epoch1 = plan.lr_at(1, 0, 10)
    assert lr_low.lr_at(1, 0, 10) == pytest.approx(low * epoch1)  # in force from epoch 1
    assert lr_low.lr_at(20, 5, 10) == pytest.approx(low * plan.lr_at(20, 5, 10))


def test_lr_scales_are_plans_from_epoch_1_alone_and_with_a_restart():
    plan = load_plan(phase_epochs=4)
    built = sensitivity.lr_arms(plan, COMPONENTS, [8.0, 16.0])
    assert list(built) == [
        "lr_scale-x8",
        "lr_scale-x8+restart",
        "lr_scale-x16",
        "lr_scale-x16+restart",
    ]
    x16, params = built["lr_scale-x16"]
    assert params == {"lr_scale": 16.0}
    assert x16.lr_at(1, 0, 10) == pytest.approx(16 * plan.lr_at(1, 0, 10))
    assert built["lr_scale-x8+restart"][1]["lr_restart"] is True
    assert len({p.fingerprint for p, _ in built.values()}) == 4


@pytest.mark.parametrize("text", ["0", "4,-1", "x", ""])
def test_bad_lr_scales_exit_2(text, capsys):
    with pytest.raises(SystemExit) as stop:
        sensitivity.parse_args(["--lr-scales", text])
    assert stop.value.code == 2 and "--lr-scales" in capsys.readouterr().err


def test_a_parameter_that_needs_a_switch_gets_it_and_its_partner(space):
    params = sensitivity.bound_params(
        next(p for p in space.params if p.name == "lr_restart_period"), "high", space
    )
    factor = next(p for p in space.params if p.name == "lr_restart_factor")
    assert params["lr_restart"] is True
    assert params["lr_restart_factor"] == pytest.approx(sum(factor.initial) / 2)


@pytest.mark.parametrize(
    ("found", "passed", "failed"),
    [
        ({"ratio": 0.85, "low": 0.7, "high": 0.95}, True, False),
        ({"ratio": 0.85, "low": 0.7, "high": 1.02}, False, False),  # interval holds 1
        ({"ratio": 0.93, "low": 0.9, "high": 0.96}, False, False),  # < 10 % better
        ({"ratio": 1.2, "low": 1.05, "high": 1.4}, False, True),
        ({"ratio": None, "low": None, "high": None}, False, False),  # every seed diverged
        ({"ratio": 0.8, "low": None, "high": None}, False, False),  # one seed: no interval
    ],
)
def test_the_bar_of_a_set(found, passed, failed):
    assert search_designs.passes(found) is passed
    assert search_designs.fails(found) is failed


def test_the_certified_target_counts_sets_passed_and_worse():
    import pbt_vs_baseline

    good = {"certified": {"ratio": 0.8, "low": 0.7, "high": 0.9}}
    near = {"certified": {"ratio": 0.95, "low": 0.9, "high": 0.99}}
    bad = {"certified": {"ratio": 1.2, "low": 1.1, "high": 1.3}}
    results = {s: {"pbt": {"runs": [near, good]}} for s in ("a", "b", "c")}
    lines = pbt_vs_baseline.certified_target_lines(results)
    assert lines[1].endswith("passed on 3 of 3 (a, b, c), worse on 0 (none): met")
    results["d"] = {"pbt": {"runs": [bad]}}
    assert pbt_vs_baseline.certified_target_lines(results)[1].endswith("(d): not met")
    results = {s: {"pbt": {"runs": [near]}} for s in ("a", "b", "c")}  # better, < 10 %
    assert "passed on 0 of 3" in pbt_vs_baseline.certified_target_lines(results)[1]


def test_a_design_meets_the_bar_on_three_sets_and_no_failure():
    good = {"certified": {"ratio": 0.8, "low": 0.7, "high": 0.9}}
    bad = {"certified": {"ratio": 1.2, "low": 1.1, "high": 1.3}}
    results = {s: {"x": [good], "y": [good]} for s in ("s1", "s2", "s3")}
    results["s4"] = {"x": [good], "y": [bad]}
    lines = search_designs.summary_lines(results)
    assert "x " in lines[1] and "passed 4" in lines[1] and lines[1].endswith(": met")
    assert "failed 1 (s4)" in lines[2] and lines[2].endswith("not met")


def test_designs_cost_the_same_member_runs():
    for design in search_designs.DESIGNS.values():
        assert design.population * design.searches == search_designs.MEMBER_RUNS_PER_REPEAT
    assert search_designs.DESIGNS["half-phase"].options(4).perturb_every == 2
    assert search_designs.DESIGNS["truncation"].options(4).perturb_every is None


def test_a_bad_space_file_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        search_designs.parse_args(["--space-file", f"narrow={tmp_path / 'none.yaml'}"])
    assert exc.value.code == 2
    assert "no file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        search_designs.parse_args(["--designs", "greedy"])
    bad = tmp_path / "lr0.yaml"  # a space `tune-app search --space` refuses
    bad.write_text("kind: pbt\nparams:\n  lr_scale: {type: float, low: 0, high: 2, log: true}\n")
    for given in (f"x={bad}", f"truncation={tmp_path}"):  # refused, or a built-in's name
        with pytest.raises(SystemExit) as exc:
            search_designs.parse_args(["--space-file", given])
        assert exc.value.code == 2
    assert "lr_scale" in capsys.readouterr().err
    inert = tmp_path / "inert.yaml"  # lr_restart alone: every member trains as the control
    inert.write_text("kind: pbt\nparams:\n  lr_restart: {type: bool}\n")
    with pytest.raises(SystemExit) as exc:
        search_designs.parse_args(["--space-file", f"x={inert}"])
    assert exc.value.code == 2
    good = tmp_path / "good.yaml"
    good.write_text("kind: pbt\nparams:\n  lr_scale: {type: float, low: 0.5, high: 2}\n")
    args = search_designs.parse_args(["--space-file", f"narrow={good}"])
    assert "narrow" in args.designs and "truncation" in args.designs  # run by default


def test_the_table_of_sets_with_different_components(space):
    """The sensitivity run's combined table raised KeyError when two sets named their first
    component differently (component_weight_precipitation vs component_weight_gdp)."""
    plan = load_plan(phase_epochs=4)
    results = {}
    for name, columns in (("weather", ["precipitation", "wind"]), ("macro", ["gdp"])):
        expanded = load_space(None, sensitivity.FULL_SPACE, "pbt").expand(columns)
        built = sensitivity.arms(plan, expanded, columns)
        results[name] = {
            label: {"ratio": 0.9, "low": 0.8, "high": 0.95, "params": params}
            for label, (_, params) in built.items()
        }
    assert set(results["weather"]) == set(results["macro"])
    lines = sensitivity.table(results, list(results["macro"]))
    row = next(line for line in lines if line.startswith("component_weight low"))
    assert row.count("0.900 [0.80,0.95]*") == 2
    # fresh-22b: "teacher_forcing_shift low = -0.3" (32 characters) ran into its first cell
    tf = next(line for line in lines if line.startswith("teacher_forcing_shift low"))
    assert "-0.3  0.900" in tf, tf

"""How much each parameter of the default search space matters: certified effect sizes.

For each numeric parameter of `tune_app/search_spaces/modifications_full.yaml` (every
modification; the default space is what this study kept of it) that a plan can hold
(the boundary rules `plateau_restart_*` and `gap_regularise` act on a trial's own metrics, so no
plan holds them from epoch 1; bool switches are measured through their numbers), two plans: the
seed plan (shortened to `--phase-epochs` per phase) with that parameter at its space's low bound
and at its high bound from epoch 1, every other parameter neutral. A parameter that needs a
switch or a partner gets them: `lr_restart_factor` and `lr_restart_period` switch `lr_restart`
on with the partner at the middle of its initial range, and so do `curriculum_start` and
`curriculum_epochs`; `component_weight` is measured on the first component's weight.

On each set of `benchmarks/pbt_vs_baseline.py`, every such plan and the seed plan are trained
from scratch on the same `--seeds` fresh seeds in one Tune run, as `tune-app compare` does it,
and each is scored on the test split at its best-validation checkpoint. The effect of a bound
is the certified ratio of the test MSE (z-units), plan-with-bound / seed plan: the geometric
mean over seeds (exp of the mean per-seed log ratio) with its 95 % t interval
(`tune_app.analysis.certification`, the statistics `compare` prints). Below 1 is better.

Prints a table, a parameter's bound per row and a set per column ("*": the interval excludes 1),
and per parameter how many sets its bounds moved the test MSE either way; writes
results/benchmarks/sensitivity.json. Every argument is checked before any training.

With `--lr-scales 4,8,16` the plans are instead the learning-rate scale at each value from epoch
1, alone and with a warm restart (factor 3): how far past the default space's high bound (x4)
the learning rate still helps; written to results/benchmarks/sensitivity_lr.json.

    .venv/bin/python benchmarks/sensitivity.py [--sets co2,macro] [--phase-epochs 4] [--seeds 4]
    .venv/bin/python benchmarks/sensitivity.py --lr-scales 4,8,16 --sets macro,weather,co2 --seeds 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

from _common import RESULTS, write
from pbt_vs_baseline import add_set_args, certify, check_sets, set_spec

from tune_app.cli.args import whole
from tune_app.plan import registry
from tune_app.plan.effects import explored_plan
from tune_app.plan.plan import Plan, load_plan
from tune_app.plan.search_space import Param, SearchSpace, load_space

FULL_SPACE = "modifications_full.yaml"  # every parameter: the study decides the default's

# A parameter measured with others set: the switch it needs and its partner (at the middle of
# the partner's initial range).
PARTNERS = {
    "lr_restart_factor": ("lr_restart", "lr_restart_period"),
    "lr_restart_period": ("lr_restart", "lr_restart_factor"),
    "curriculum_start": (None, "curriculum_epochs"),
    "curriculum_epochs": (None, "curriculum_start"),
}


def measured(space: SearchSpace) -> list[Param]:
    """The parameters a plan can hold from epoch 1 (numbers, not boundary rules), in the
    space's order; of a per-component parameter, the first component's."""
    out, seen = [], set()
    for param in space.params:
        found = registry.lookup(param.name)
        if param.type == "bool" or found is None or found.target != "modification":
            continue
        if found.per_component:
            if found.name in seen:
                continue
            seen.add(found.name)
        out.append(param)
    return out


def middle(param: Param) -> float:
    """The middle of `param`'s initial range (its bounds where it has none)."""
    low, high = param.initial or (param.low, param.high)
    return (low + high) / 2


def bound_params(param: Param, bound: str, space: SearchSpace) -> dict[str, Any]:
    """The flat parameters of `param` at its `bound` ("low" or "high"), with its switch and
    partner (`PARTNERS`) set."""
    params: dict[str, Any] = {param.name: getattr(param, bound)}
    switch, partner = PARTNERS.get(param.name, (None, None))
    if switch:
        params[switch] = True
    if partner:
        params[partner] = middle(next(p for p in space.params if p.name == partner))
    return params


def arms(plan: Plan, space: SearchSpace, components: list[str]) -> dict[str, tuple[Plan, dict]]:
    """Every measured bound as a plan from epoch 1: label ("lr_scale-low") -> (plan, params)."""
    out = {}
    for param in measured(space):
        found = registry.lookup(param.name)
        name = found.name if found else param.name  # component_weight, whatever the first is
        for bound in ("low", "high"):
            params = bound_params(param, bound, space)
            out[f"{name}-{bound}"] = (explored_plan(plan, params, 1, components), params)
    return out


# `--lr-scales`: each scale alone and with the warm restart the study found to help (factor 3,
# the period at the middle of its initial range)
RESTART = {"lr_restart": True, "lr_restart_factor": 3.0, "lr_restart_period": 0.25}


def lr_arms(plan: Plan, components: list[str], scales: list[float]) -> dict[str, tuple[Plan, dict]]:
    """The plan with each learning-rate scale from epoch 1, alone and with `RESTART`:
    label ("lr_scale-x8", "lr_scale-x8+restart") -> (plan, params)."""
    out = {}
    for scale in scales:
        for suffix, extra in (("", {}), ("+restart", RESTART)):
            params = {"lr_scale": scale, **extra}
            out[f"lr_scale-x{scale:g}{suffix}"] = (
                explored_plan(plan, params, 1, components),
                params,
            )
    return out


def _scales(text: str) -> list[float]:
    """`--lr-scales`: comma-separated numbers > 0."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: comma-separated numbers, e.g. 4,8,16"
        ) from None
    if not values or any(not value > 0 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every scale must be > 0")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, every value checked before any work.

    Raises:
        SystemExit: exit 2 naming the bad value (an unknown set, a count below its minimum,
            a set whose package is not installed).
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_set_args(parser, phase_epochs=4)
    parser.add_argument(
        "--seeds",
        type=whole(2),
        default=4,
        help="fresh seeds each plan is trained on (>= 2, for an interval; default 4)",
    )
    parser.add_argument(
        "--lr-scales",
        type=_scales,
        default=None,
        metavar="X,Y,...",
        help="instead of the space's bounds: the learning-rate scale at each of these values "
        "from epoch 1, alone and with warm restarts (x3); writes sensitivity_lr.json",
    )
    args = parser.parse_args(argv)
    check_sets(parser, args.sets)
    return args


def cell(found: dict[str, Any]) -> str:
    """One bound on one set: `ratio [low, high]`, starred where the interval excludes 1."""
    if found.get("ratio") is None:
        return "diverged"
    low, high = found["low"], found["high"]
    star = "*" if low is not None and (high < 1.0 or low > 1.0) else " "
    return f"{found['ratio']:.3f} [{low:.2f},{high:.2f}]{star}"


def table(results: dict[str, dict[str, dict[str, Any]]], labels: list[str]) -> list[str]:
    """The effect table: a row per bound, a column per set."""
    sets = list(results)
    width = 22
    rows = []
    for label in labels:
        first = next(iter(results.values()))[label]
        name, bound = label.rsplit("-", 1)
        value = next(v for k, v in first["params"].items() if k.startswith(name))
        rows.append((f"{name} {bound} = {value:g}", label))
    first_width = max([len("bound"), *(len(row) for row, _ in rows)]) + 2  # a label never runs on
    lines = [f"{'bound':{first_width}}" + "".join(f"{name:<{width}}" for name in sets)]
    for row, label in rows:
        cells = "".join(f"{cell(results[s][label]):<{width}}" for s in sets)
        lines.append(f"{row:{first_width}}" + cells)
    return lines


def verdicts(results: dict[str, dict[str, dict[str, Any]]], labels: list[str]) -> list[str]:
    """Per bound: on how many sets it certified better, worse, or neither."""
    lines = []
    for label in labels:
        better = [s for s, row in results.items() if (row[label].get("high") or 2.0) < 1.0]
        worse = [s for s, row in results.items() if (row[label].get("low") or 0.0) > 1.0]
        lines.append(
            f"  {label}: better on {len(better)} ({', '.join(better) or '-'}), "
            f"worse on {len(worse)} ({', '.join(worse) or '-'}) of {len(results)}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    plan = load_plan(phase_epochs=args.phase_epochs)
    space = load_space(None, FULL_SPACE, "pbt")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    labels: list[str] = []
    settings = {"phase_epochs": args.phase_epochs, "seeds": args.seeds, "sets": args.sets}
    out = "sensitivity_lr" if args.lr_scales else "sensitivity"
    if args.lr_scales:
        settings["lr_scales"] = args.lr_scales
    with tempfile.TemporaryDirectory() as storage:
        for name in args.sets:
            spec, components = set_spec(name, plan, storage)
            built = (
                lr_arms(plan, components, args.lr_scales)
                if args.lr_scales
                else arms(plan, space.expand(components), components)
            )
            labels = list(built)
            began = time.perf_counter()
            certified = certify(
                spec, {k: p for k, (p, _) in built.items()}, args.seeds, storage, f"{name}_sens"
            )
            row = {
                label: {**certified[label], "params": params}
                for label, (_, params) in built.items()
            }
            results[name] = row
            print(
                f"{name}: {len(built) + 1} plans x {args.seeds} seeds in "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
            print("\n".join(table({name: row}, labels)), flush=True)
            write(out, {**settings, "results": results})  # a set at a time
    print()
    print(
        f"test MSE, plan with the bound / seed plan, {args.seeds} seeds, "
        f"{plan.total_epochs} epochs; [95 % t interval]; *: excludes 1"
    )
    print("\n".join(table(results, labels)))
    print("\n".join(verdicts(results, labels)))
    print(f"wrote {RESULTS / f'{out}.json'}")


if __name__ == "__main__":
    main()

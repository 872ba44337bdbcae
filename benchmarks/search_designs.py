"""Which search design's winners survive certification: selection rule, population, interval.

Each design is a PBT search setting (`tune-app search`'s `--population`, `--perturb-every`,
`--selection`, `--space`) run at the same cost: `MEMBER_RUNS_PER_REPEAT` member-runs of the plan per
repeat, so a population of 8 runs one search where a population of 4 runs two, and the better
of the two winners on validation (what a user with twice the budget would keep) is that
repeat's winner. Designs:

- `truncation`: population 4, a round at every phase boundary, ranked on the round's epoch's
  `val_free_loss` (Jaderberg et al., 2017), the default space;
- `recent`, `improvement`: the same, ranked on the mean of the last epochs' losses, or on
  FIRE-PBT's improvement-rate fitness (Dalibard & Jaderberg, 2021) (`tune_app.tune.selection`);
- `half-phase`: truncation with a round every half phase (twice the rounds);
- `population-8`: truncation with 8 members, one search;
- designs over another space file (`--space-file NAME=PATH`, e.g. the space narrowed by
  `benchmarks/sensitivity.py`), with the default's other settings or `--space-selection`.

On each set of `benchmarks/pbt_vs_baseline.py`, every design runs `--repeats` times (search
seeds 0, 1, ...); then every winner's exported plan and the seed plan are trained from scratch on
the same `--certify-seeds` fresh seeds in one Tune run (`tune-app certify`'s statistics), so each
winner gets a certified ratio: its test MSE (z-units) / the plan's, the geometric mean over seeds
with its 95 % t interval. A design *passes* a set when a repeat's winner certifies <= 0.90 with an
interval below 1 (issue 22's bar: >= 10 % better, the interval excluding 0), and *fails* it when
a winner certifies worse (interval above 1).

Prints per set and design each repeat's certified ratio, then per design the sets passed and
failed and the mean certified ratio; writes results/benchmarks/search_designs.json (designs
measured earlier with the same settings are kept, so designs can be run one call at a time).

    .venv/bin/python benchmarks/search_designs.py [--designs truncation,recent] \\
        [--sets co2,macro] [--phase-epochs 4] [--repeats 2] [--certify-seeds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import RESULTS, write
from pbt_vs_baseline import (
    PASS_RATIO,
    _names,
    add_set_args,
    certify,
    check_sets,
    fails,
    passes,
    search,
    set_spec,
)

from tune_app.cli.args import whole
from tune_app.errors import InputError
from tune_app.plan.plan import Plan, load_plan
from tune_app.plan.search_space import SearchSpace, load_space
from tune_app.runs.spec import RunSpec
from tune_app.training.data import DataConfig
from tune_app.training.model import ModelConfig
from tune_app.training.trainer import TrainConfig
from tune_app.tune.options import SearchOptions
from tune_app.tune.preflight import check_space_trains

MEMBER_RUNS_PER_REPEAT = 8  # member-runs of the whole plan per repeat: population x searches
TARGET_SETS = 3  # a design passing on this many sets, failing on none, meets issue 22's bar


@dataclass(frozen=True)
class Design:
    """A search setting: population, rounds per phase, selection rule, space file (None: the
    default space)."""

    population: int = 4
    rounds_per_phase: int = 1
    selection: str = "truncation"
    space: str | None = None

    @property
    def searches(self) -> int:
        """Searches per repeat at the design's cost (`MEMBER_RUNS_PER_REPEAT` member-runs)."""
        return max(1, MEMBER_RUNS_PER_REPEAT // self.population)

    def options(self, phase_epochs: int) -> SearchOptions:
        every = (
            None if self.rounds_per_phase == 1 else max(1, phase_epochs // self.rounds_per_phase)
        )
        return SearchOptions(
            population=self.population, perturb_every=every, selection=self.selection
        )


DESIGNS = {
    "truncation": Design(),
    "recent": Design(selection="recent"),
    "improvement": Design(selection="improvement"),
    "half-phase": Design(rounds_per_phase=2),
    "population-8": Design(population=8),
}


def _space_files(texts: list[str]) -> dict[str, str]:
    """`--space-file NAME=PATH` pairs, each file loaded and checked as `tune-app search
    --space` checks it, each name new (not a built-in design's, not given twice)."""
    out: dict[str, str] = {}
    for text in texts:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"--space-file {text!r}: give NAME=PATH")
        if name in DESIGNS or name in out:
            raise argparse.ArgumentTypeError(
                f"--space-file {text!r}: {name} is already a design; give it another name"
            )
        if not Path(path).is_file():
            raise argparse.ArgumentTypeError(f"--space-file {text!r}: no file {path}")
        try:
            load_space(path, "modifications.yaml", "pbt")
        except InputError as exc:
            raise argparse.ArgumentTypeError(f"--space-file {text!r}: {exc}") from None
        out[name] = path
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, every value checked before any work.

    Raises:
        SystemExit: exit 2 naming the bad value (an unknown design or set, a count below its
            minimum, a missing space file, a set whose package is not installed).
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--designs",
        default=None,
        help=f"comma-separated, out of {','.join(DESIGNS)} and the "
        "--space-file names (default: all of them)",
    )
    parser.add_argument(
        "--space-file",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a design named NAME: truncation over the space file PATH",
    )
    parser.add_argument(
        "--space-selection",
        default="truncation",
        choices=("truncation", "recent", "improvement"),
        help="the selection rule of the --space-file designs",
    )
    add_set_args(parser, phase_epochs=4, least=2)
    parser.add_argument(
        "--repeats",
        type=whole(1),
        default=2,
        help="repeats of each design (search seeds 0, 1, ...; default 2)",
    )
    parser.add_argument(
        "--certify-seeds",
        type=whole(2),
        default=5,
        help="fresh seeds each winner and the plan are trained on (>= 2; default 5)",
    )
    args = parser.parse_args(argv)
    try:
        files = _space_files(args.space_file)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    designs = dict(DESIGNS)
    for name, path in files.items():
        designs[name] = Design(space=path, selection=args.space_selection)
    try:
        args.designs = _names("design", designs)(args.designs or ",".join(designs))
    except argparse.ArgumentTypeError as exc:
        parser.error(f"argument --designs: {exc}")
    args.table = {name: designs[name] for name in args.designs}
    check_sets(parser, args.sets)
    for name, design in args.table.items():  # as `tune-app search` refuses it, before any work
        if design.space:
            try:
                check_space_trains(
                    load_space(design.space, "modifications.yaml", "pbt"),
                    RunSpec(
                        load_plan(phase_epochs=args.phase_epochs),
                        ModelConfig(components=1),
                        DataConfig(),
                        TrainConfig(),
                    ),
                    ["c0"],
                    design.options(args.phase_epochs).perturb_every,
                )
            except InputError as exc:
                parser.error(f"--space-file {name}={design.space}: {exc}")
    return args


def run_design(
    spec: RunSpec, design: Design, repeat: int, storage: str, name: str, phase_epochs: int
) -> tuple[dict[str, Any], Plan]:
    """One repeat of `design`: its searches (seeds repeat * searches + i), the winner the one
    with the lowest validation loss; its record and exported plan."""
    space: SearchSpace | None = None
    if design.space:
        space = load_space(design.space, "modifications.yaml", "pbt")
    found: list[tuple[dict[str, Any], Plan]] = []
    for index in range(design.searches):
        seed = repeat * design.searches + index
        seeded = RunSpec(spec.plan, spec.model, spec.data, TrainConfig(seed=seed), spec.data_path)
        found.append(
            search(
                seeded,
                design.population,
                storage,
                f"{name}_{seed}",
                "pbt",
                design.options(phase_epochs),
                space,
            )
        )
    record, plan = min(found, key=lambda pair: pair[0]["val"])
    return {**record, "searches": [f["val"] for f, _ in found]}, plan


def _ratio_text(found: dict[str, Any]) -> str:
    if found.get("ratio") is None:
        return "diverged"
    if found.get("low") is None:
        return f"{found['ratio']:.3f}"
    return f"{found['ratio']:.3f} [{found['low']:.3f}, {found['high']:.3f}]"


def summary_lines(results: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """Per design: the sets where a winner passed, where one failed, the mean certified ratio."""
    designs = list(dict.fromkeys(d for row in results.values() for d in row))
    lines = [
        f"pass: a winner certified <= {PASS_RATIO:.2f} x the plan's test MSE, its interval "
        f"below 1; the bar: >= {TARGET_SETS} sets passed, none failed"
    ]
    for design in designs:
        passed, failed, ratios = [], [], []
        for set_name, row in results.items():
            runs = row.get(design, [])
            certified = [r["certified"] for r in runs if "certified" in r]
            if any(passes(c) for c in certified):
                passed.append(set_name)
            if any(fails(c) for c in certified):
                failed.append(set_name)
            ratios += [c["ratio"] for c in certified if c.get("ratio") is not None]
        geo = math.exp(statistics.mean(math.log(r) for r in ratios)) if ratios else math.nan
        met = len(passed) >= TARGET_SETS and not failed
        lines.append(
            f"  {design:14} passed {len(passed)} ({', '.join(passed) or '-'}), failed "
            f"{len(failed)} ({', '.join(failed) or '-'}) of {len(results)}; geometric mean "
            f"certified ratio {geo:.3f} over {len(ratios)} winners: {'met' if met else 'not met'}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    plan = load_plan(phase_epochs=args.phase_epochs)
    path = RESULTS / "search_designs.json"
    settings = {
        "phase_epochs": args.phase_epochs,
        "repeats": args.repeats,
        "certify_seeds": args.certify_seeds,
    }
    earlier: dict[str, Any] = {}
    if path.exists():
        old = json.loads(path.read_text())
        if all(old.get(k) == v for k, v in settings.items()):
            earlier = old.get("results", {})
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: dict(row) for name, row in earlier.items()
    }
    with tempfile.TemporaryDirectory() as storage:
        for set_name in args.sets:
            spec, _ = set_spec(set_name, plan, storage)
            began = time.perf_counter()
            winners: dict[str, Plan] = {}
            records: dict[str, list[dict[str, Any]]] = {}
            for design_name, design in args.table.items():
                records[design_name] = []
                for repeat in range(args.repeats):
                    key = f"{design_name}-{repeat}"
                    record, winners[key] = run_design(
                        spec, design, repeat, storage, f"{set_name}_{key}", args.phase_epochs
                    )
                    records[design_name].append(record)
            searched = time.perf_counter() - began
            certified = certify(spec, winners, args.certify_seeds, storage, f"{set_name}_cert")
            row = results.setdefault(set_name, {})
            for design_name, runs in records.items():
                for repeat, record in enumerate(runs):
                    record["certified"] = certified[f"{design_name}-{repeat}"]
                row[design_name] = runs
            print(
                f"{set_name}: searches {searched:.0f} s, certification "
                f"{time.perf_counter() - began - searched:.0f} s",
                flush=True,
            )
            for design_name, runs in records.items():
                cells = "; ".join(_ratio_text(r["certified"]) for r in runs)
                print(f"  {design_name:14} certified winner/plan: {cells}", flush=True)
            write("search_designs", {**settings, "results": results})
    print()
    print("\n".join(summary_lines(results)))
    print(f"wrote {RESULTS / 'search_designs.json'}")


if __name__ == "__main__":
    main()

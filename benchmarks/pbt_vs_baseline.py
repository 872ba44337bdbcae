"""The plan versus PBT and PB2 searches over its modifications, at equal epochs.

Data sets: the built-in synthetic one; real ones that statsmodels ships offline (the `bench`
extra): weekly Mauna Loa CO2, monthly El Nino sea temperatures, five US macro series (quarterly
growth rates); and Seattle's daily weather, 4 components (precipitation, max and min temperature,
wind; shipped as a file by vega_datasets). For each: N in-process runs of the shortened seed
plan (seeds 0..N-1), then PBT and PB2 searches with population N (the control included), each
with `--search-seeds` seeds.

Prints, per set and method, mean +- std over the seeds (the sample std, ddof=1; one seed shows
its value alone, "(1 seed)"): the best free-running validation loss; on the test split, with the
weights of that best epoch, the loss under the same fixed reference objective (0.6 x MSE + 0.4 x
temporal, the ranking metric) and the MSE alone (`tune-app evaluate`'s mean mse_z), both of
forecasts in z-units of the train split; the number of exploits of each search seed; and
winner / plan: the searches' mean over the plan's (target: <= 0.90 on the validation loss on at
least 3 sets). Those ratios are the searches' own: the winner is the best of N members on the
validation split (selection, optimistic) and its weights come from one seed. So each winner is
also **certified** as `tune-app certify` does it: its exported plan and the seed plan trained
from scratch on `--certify-seeds` fresh seeds (1000, 1001, ...; the same for both, one Tune run
per set), each scored on the test split at its best-validation checkpoint; the certified ratio
is winner / plan of the test MSE as the geometric mean over seeds (exp of the mean per-seed
log ratio), with its 95 % t interval (`tune_app.analysis.certification`). It costs certify-seeds x (1 + schedulers x
search seeds) plan runs per set: 25 by default, against the rest's 4 + 4 x 4 (macro: 51 s of 291 s;
up to about as much again as the rest where training dominates; `--certify-seeds 0` skips it).
Every argument is checked before any training.

Writes results/benchmarks/pbt_vs_baseline.json in the checkout this script is in. Sets measured
earlier with the same settings are kept (so sets can be run one at a time) and printed after the
new ones; those stored before the test MSE was measured show it as "n/a", and their stds are
converted to the sample std.

    .venv/bin/python benchmarks/pbt_vs_baseline.py [--population 4] [--phase-epochs 10] \\
        [--sets co2,elnino] [--schedulers pbt,pb2] [--search-seeds 2] [--certify-seeds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from _common import RESULTS, format_spread, mean_std, write

from tune_app.cli.args import whole
from tune_app.plan.plan import Plan, load_plan
from tune_app.runs.local import train_locally
from tune_app.runs.spec import RunSpec
from tune_app.runs.writers import BestStateWriter
from tune_app.training.data import DataConfig
from tune_app.training.model import ModelConfig
from tune_app.training.synthetic import make_synthetic
from tune_app.training.trainer import TrainConfig, evaluate_free

SCHEDULERS = ("pbt", "pb2")  # the explore steps `tune-app search --scheduler` takes
TARGET_RATIO = 0.90  # issue 15: the winner's mean best val <= 0.90 x the plan's ...
TARGET_SETS = 3  # ... on at least this many sets
STD = "sample (ddof=1)"  # the std stored in the JSON; files without this key hold ddof=0 ones
SCORES = ("val", "test", "test_mse")  # best val loss, test loss, test MSE (z-units)
CERTIFY_OFFSET = 1000  # the certified runs' first seed: none of the searches' or the plan's


def _long(values: np.ndarray, columns: list[str], series: str = "s0") -> pd.DataFrame:
    frame = pd.DataFrame(values.astype(np.float32), columns=columns)
    frame.insert(0, "step", np.arange(len(frame), dtype=np.int64))
    frame.insert(0, "series_id", series)
    return frame


def co2() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.co2.load_pandas().data["co2"].ffill().bfill().to_numpy()
    return _long(data[:, None], ["co2"])


def elnino() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.elnino.load_pandas().data.drop(columns=["YEAR"]).to_numpy().reshape(-1)
    return _long(data[:, None], ["temp"])


def macro() -> pd.DataFrame:
    import statsmodels.api as sm

    data = sm.datasets.macrodata.load_pandas().data
    growth = np.diff(np.log(data[["realgdp", "realcons", "realinv"]].to_numpy()), axis=0) * 100
    levels = data[["unemp", "infl"]].to_numpy()[1:]
    return _long(np.hstack([growth, levels]), ["gdp", "cons", "inv", "unemp", "infl"])


def weather() -> pd.DataFrame:
    from vega_datasets import local_data

    data = local_data.seattle_weather()
    columns = ["precipitation", "temp_max", "temp_min", "wind"]
    return _long(data[columns].to_numpy(), columns)


@dataclass(frozen=True)
class Bench:
    make: Callable[[], pd.DataFrame]
    data: DataConfig
    hidden: int
    needs: str | None = None  # the module that ships the data (checked before any work)


SETS = {
    "synthetic": Bench(make_synthetic, DataConfig(stride=2), 32),
    "co2": Bench(co2, DataConfig(input_len=52, output_len=13, stride=4), 32, "statsmodels"),
    "elnino": Bench(elnino, DataConfig(input_len=36, output_len=12, stride=1), 32, "statsmodels"),
    "macro": Bench(macro, DataConfig(input_len=16, output_len=4, stride=1), 32, "statsmodels"),
    "weather": Bench(
        weather, DataConfig(input_len=56, output_len=14, stride=2), 32, "vega_datasets"
    ),
}


def _names(kind: str, allowed: Iterable[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names out of `allowed`, repeats dropped."""
    allowed = tuple(allowed)

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",")]
        for name in names:
            if name not in allowed:
                shown = repr(name) if name else "an empty name"
                raise argparse.ArgumentTypeError(
                    f"{shown} is no {kind}; choose from {', '.join(allowed)} "
                    f"(comma-separated, e.g. {','.join(allowed[:2])})"
                )
        return list(dict.fromkeys(names))

    return parse


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def add_set_args(parser: argparse.ArgumentParser, phase_epochs: int, least: int = 1) -> None:
    """`--sets` (out of `SETS`, default all) and `--phase-epochs` (default `phase_epochs`,
    at least `least`), as every benchmark over the five sets takes them."""
    parser.add_argument(
        "--phase-epochs",
        type=whole(least),
        default=phase_epochs,
        help=f"epochs per phase of the shortened seed plan (>= {least}; default {phase_epochs})",
    )
    parser.add_argument(
        "--sets",
        type=_names("data set", SETS),
        default=list(SETS),
        help=f"comma-separated, out of {','.join(SETS)} (default: all)",
    )


def check_sets(parser: argparse.ArgumentParser, sets: list[str]) -> None:
    """Exit 2 (`parser.error`) naming a set whose data's package is not installed."""
    for name in sets:
        module = SETS[name].needs
        if module and not _installed(module):
            parser.error(
                f"argument --sets: {name} needs {module}, which is not installed here; "
                "install the bench extra (pip install -e '.[bench]') or leave it out"
            )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, every value checked before any work.

    Args:
        argv: the arguments (None: sys.argv[1:]).

    Returns:
        population, phase_epochs, search_seeds (ints) and sets, schedulers (lists of names).

    Raises:
        SystemExit: exit 2 with one message naming the bad value and the allowed ones (an
            unknown set or scheduler, a count below its minimum, a set or scheduler whose
            package is not installed).
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--population",
        type=whole(2),
        default=4,
        help="search members, the control included (>= 2: the control and one searcher); also the plan's seeded runs",
    )
    add_set_args(parser, phase_epochs=10)
    parser.add_argument(
        "--schedulers",
        type=_names("scheduler", SCHEDULERS),
        default=list(SCHEDULERS),
        help=f"comma-separated explore steps, out of {','.join(SCHEDULERS)} (default: both)",
    )
    parser.add_argument(
        "--search-seeds",
        type=whole(1),
        default=2,
        help="seeds of each search (>= 1; >= 2 for a std)",
    )
    parser.add_argument(
        "--certify-seeds",
        type=whole(0),
        default=5,
        help="fresh seeds on which each winner's plan and the seed plan are trained and compared "
        "on the test split (0: no certified ratio; 1: no interval)",
    )
    args = parser.parse_args(argv)
    check_sets(parser, args.sets)
    if "pb2" in args.schedulers and not _installed("sklearn"):
        parser.error(
            "argument --schedulers: pb2 needs scikit-learn, which is not installed here; "
            "pip install scikit-learn, or use --schedulers pbt"
        )
    return args


def _test_scores(model: torch.nn.Module, spec: RunSpec) -> dict[str, float]:
    """The test split's free-running loss (the fixed reference objective) and MSE, both of
    forecasts in z-units of the train split."""
    scores = evaluate_free(
        model, spec.dataset().test, spec.train.rank_alpha, spec.train.rank_max_lag
    )
    return {"test": float(scores["loss"]), "test_mse": float(scores["mse"])}


def baselines(spec: RunSpec, population: int) -> list[dict[str, float]]:
    """`population` runs of the plan (seeds 0..N-1): each one's best val loss and its test
    scores with the weights of that epoch."""
    out = []
    dataset = spec.dataset()
    for seed in range(population):
        seeded = RunSpec(spec.plan, spec.model, spec.data, TrainConfig(seed=seed), spec.data_path)
        with tempfile.TemporaryDirectory() as tmp:
            best_file = Path(tmp) / "best.pth"
            best_writer = BestStateWriter(best_file, seeded.data_path)
            result = train_locally(seeded, dataset, Path(tmp), extra=[best_writer])
            best = min(row["val_free_loss"] for row in result.history)
            state = torch.load(best_file, weights_only=True)
            result.model.load_state_dict(state["model"])
            out.append({"val": best, **_test_scores(result.model, seeded)})
    return out


def search(
    spec: RunSpec,
    population: int,
    storage: str,
    name: str,
    scheduler: str,
    options: Any = None,
    space: Any = None,
) -> tuple[dict, Plan]:
    """One search with `spec`'s seed: its winner's best val loss and test scores (the exported
    best checkpoint), the control's best val loss, the exploits, rounds and winner's lineage;
    and the winner's exported plan (what `certify` trains again).

    `options` (a `SearchOptions`) and `space` (a `SearchSpace`) replace the defaults
    (`population` and `scheduler` with the rest default; the default space) where given."""
    from tune_app.analysis.evaluate import load_model
    from tune_app.plan.search_space import load_space
    from tune_app.runs.results import export_best, open_run
    from tune_app.tune.runner import Launch, SearchOptions, run_search

    space = space or load_space(None, "modifications.yaml", "pbt")
    options = options or SearchOptions(population=population, scheduler=scheduler)
    launch = Launch(name=name, storage=storage, cpus_per_trial=2 / options.population, verbose=0)
    _, location = run_search(spec, spec.open_table(), space, options, launch)
    run = open_run(location.uri)
    export = Path(storage) / f"{name}_best"
    config = export_best(run, export)
    loaded = load_model(export)
    control = [t for t in run.trials if t.member and t.member.control]
    control_best = min(
        (float(c.meta.metrics["val_free_loss"]) for c in control[0].checkpoints),
        default=float("nan"),
    )
    segments = json.loads((export / "lineage.json").read_text())["segments"]
    plan = Plan.from_yaml((export / "plan.yaml").read_text())
    return {
        "plan": plan.fingerprint,
        "val": float(config.value),
        **_test_scores(loaded.model, spec),
        "control_val": control_best,
        "exploits": len(run.journal()),
        "rounds": len(run.rounds()),
        "lineage": [
            {"epochs": [s["from_epoch"], s["to_epoch"]], "modification": s["modification"]}
            for s in segments
        ],
    }, plan


def certify(
    spec: RunSpec, winners: dict[str, Plan], seeds: int, storage: str, name: str
) -> dict[str, dict[str, Any]]:
    """Each winner's plan against the seed plan (`spec.plan`), trained from scratch on the same
    fresh seeds in one Tune run, as `tune-app certify` does it.

    Args:
        spec: the set's data, model and trainer settings, and the seed plan.
        winners: the searches' exported plans, by a key ("pbt-0": scheduler and search seed).
        seeds: how many seeds, from `CERTIFY_OFFSET`.
        storage: where the Tune run goes.
        name: its name.

    Returns:
        By key: the certified ratio (winner / plan of the test MSE: exp of the mean per-seed
        log ratio, the ratio of the geometric means), its 95 % t interval (`low`, `high`, the
        log ratios' interval transformed back; None with one seed), the verdict, and the seeds; a winner whose plan is the seed plan itself (the
        control won) has ratio 1 and verdict "the plan as written", without trials.
    """
    from tune_app.analysis.certification import compare_scores
    from tune_app.analysis.comparison import score_trials
    from tune_app.runs.results import open_run
    from tune_app.tune.compare import Arm, run_compare
    from tune_app.tune.runner import Launch

    arms = {spec.plan.fingerprint: Arm("plan", spec.plan, "the seed plan")}
    for key, plan in winners.items():
        arms.setdefault(plan.fingerprint, Arm(key, plan, f"the {key} search's winner"))
    chosen = list(range(CERTIFY_OFFSET, CERTIFY_OFFSET + seeds))
    out: dict[str, dict[str, Any]] = {}
    scores, naive = [], ("", math.nan)
    if len(arms) > 1:
        launch = Launch(name=name, storage=storage, cpus_per_trial=1.0, verbose=0)
        _, location = run_compare(spec, spec.open_table(), list(arms.values()), chosen, launch)
        scores, naive = score_trials(open_run(location.uri))
    for key, plan in winners.items():
        arm = arms[plan.fingerprint]
        if arm.label == "plan":
            out[key] = {"ratio": 1.0, "low": 1.0, "high": 1.0, "verdict": "the plan as written"}
            continue
        plain = ("plan", "the seed plan", spec.plan.fingerprint)
        mine = (arm.label, arm.source, plan.fingerprint)
        difference = compare_scores(scores, plain, mine, ("the plan", key), naive).mean
        out[key] = {
            "ratio": None if difference.mean is None else 1.0 + difference.mean,
            "low": None if difference.low is None else 1.0 + difference.low,
            "high": None if difference.high is None else 1.0 + difference.high,
            "verdict": difference.verdict,
            "seeds": list(difference.seeds),
        }
    return out


def add_certified(row: dict[str, Any], certified: dict[str, dict[str, Any]], seeds: int) -> None:
    """Put each search run's certified ratio (`certify`'s, keyed "pbt-0") into `row`, and each
    scheduler's mean of them."""
    row["certify_seeds"] = seeds
    for scheduler in SCHEDULERS:
        result = row.get(scheduler)
        if not isinstance(result, dict):
            continue
        for index, run in enumerate(result.get("runs", [])):
            if f"{scheduler}-{index}" in certified:
                run["certified"] = certified[f"{scheduler}-{index}"]
        ratios = [
            run["certified"]["ratio"]
            for run in result.get("runs", [])
            if "certified" in run and run["certified"]["ratio"] is not None  # none: all diverged
        ]
        if ratios:
            result["ratio_certified"] = statistics.mean(ratios)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """`[mean, std]` (sample std; None for one run) of each score the runs hold."""
    return {
        score: list(mean_std([run[score] for run in runs]))
        for score in SCORES
        if runs and all(score in run for run in runs)
    }


def plan_row(base: list[dict[str, float]], epochs: int, components: int) -> dict[str, Any]:
    """A set's row in the JSON as the plan's runs leave it; `add_search` adds the searches."""
    summary = summarise(base)
    return {
        "epochs": epochs,
        "components": components,
        "baseline_runs": base,
        **{f"baseline_{score}": pair for score, pair in summary.items()},
    }


def add_search(row: dict[str, Any], scheduler: str, runs: list[dict[str, Any]]) -> None:
    """Add one scheduler's search runs to a set's `row`: their scores and winner / plan."""
    summary = summarise(runs)
    row[scheduler] = {
        "runs": runs,
        **summary,
        **{
            f"ratio_{score}": pair[0] / row[f"baseline_{score}"][0]
            for score, pair in summary.items()
            if f"baseline_{score}" in row
        },
    }


def upgrade(row: dict[str, Any], population: int) -> dict[str, Any]:
    """A row written when the JSON held population stds (ddof=0) with sample stds (ddof=1):
    the searches' recomputed from their runs, the plan's (whose runs were not stored) scaled by
    sqrt(n / (n - 1)), n the population. Scores it lacks (the test MSE) stay absent."""
    row = json.loads(json.dumps(row))  # a copy
    if "baseline_runs" not in row:
        scale = math.sqrt(population / (population - 1))  # a search's population is >= 2
        for score in SCORES:
            pair = row.get(f"baseline_{score}")
            if pair is not None:
                row[f"baseline_{score}"] = [pair[0], pair[1] * scale]
    for scheduler in SCHEDULERS:
        if isinstance(row.get(scheduler), dict) and row[scheduler].get("runs"):
            row[scheduler].update(summarise(row[scheduler]["runs"]))
    return row


def merge_earlier(
    path: Path, settings: dict[str, int], results: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """`results` with the sets an earlier run with the same `settings` stored in `path`
    (the ones run now replace theirs; rows from before sample stds are `upgrade`d).

    Returns:
        The merged results (earlier sets first) and the names of the earlier sets kept.
    """
    if not path.exists():
        return results, []
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        print(f"note: {path} is unreadable ({exc}); writing it anew, without its sets")
        return results, []
    if not all(old.get(key) == value for key, value in settings.items()):
        return results, []
    earlier = old.get("results", {})
    if old.get("std") != STD:
        earlier = {name: upgrade(row, settings["population"]) for name, row in earlier.items()}
    kept = [name for name in earlier if name not in results]
    return {**earlier, **results}, kept


COLUMNS = (
    f"  {'':7} {'best val loss':<18} {'test loss':<18} {'test MSE (z)':<18} {'exploits':<10} "
    "winner/plan: val, test loss, test MSE"
)


def legend(rank_alpha: float = 0.6, rank_max_lag: int = 20) -> str:
    """What the table's columns are, in which units."""
    objective = f"{rank_alpha:g} x MSE + {1 - rank_alpha:g} x temporal, max lag {rank_max_lag}"
    return (
        "best val loss: a run's lowest free-running validation loss under the fixed reference "
        f"objective ({objective}); a search's: its winner's;\n"
        "test loss: that objective on the test split, with the weights of that best epoch;\n"
        "test MSE (z): the same test forecasts' MSE alone (tune-app evaluate's mean mse_z); "
        "all three score forecasts in z-units of the train split;\n"
        "mean +- sample std (ddof=1) over the plan's seeded runs or the search seeds; "
        "exploits: of each search seed;\n"
        "winner/plan: the searches' mean / the plan's mean (their own runs: the winner chosen on "
        "validation, so optimistic); n/a: not measured (a set stored before the test MSE was);\n"
        "certified: each winner's plan and the seed plan trained again on the same fresh seeds, "
        "1 + the mean (winner - plan) / plan of the test MSE, [95 % t interval]"
    )


def _cell(pair: list | None, width: int = 18) -> str:
    """A `[mean, std]` pair as `format_spread` shows it; a score not stored: n/a."""
    text = "n/a" if pair is None else format_spread(pair[0], pair[1])
    return f"{text:<{width}}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def plan_line(row: dict[str, Any]) -> str:
    """The table's line for the plan's seeded runs."""
    cells = "".join(_cell(row.get(f"baseline_{score}")) + " " for score in SCORES)
    return f"  {'plan':7} {cells}{'-':<10}".rstrip()


def search_line(scheduler: str, result: dict[str, Any]) -> str:
    """The table's line for one scheduler's searches."""
    cells = "".join(_cell(result.get(score)) + " " for score in SCORES)
    exploits = ", ".join(str(run.get("exploits", "?")) for run in result.get("runs", []))
    ratios = ", ".join(_ratio(result.get(f"ratio_{score}")) for score in SCORES)
    return f"  {scheduler.upper():7} {cells}{exploits or 'n/a':<10} {ratios}"


def certified_line(scheduler: str, result: dict[str, Any], seeds: int | None) -> str | None:
    """The line under a search's: each search seed's certified ratio with its interval; None
    for a set stored before the certified ratio was measured."""
    cells = []
    for run in result.get("runs", []):
        found = run.get("certified")
        if found is None:
            return None
        if found["low"] is None or found["high"] is None:
            cells.append(f"{found['ratio']:.3f} (1 seed)")
        else:
            cells.append(f"{found['ratio']:.3f} [{found['low']:.3f}, {found['high']:.3f}]")
    if not cells:
        return None
    where = f"{seeds} fresh seeds" if seeds else "fresh seeds"
    return f"  {'':7} certified {scheduler.upper()} winner/plan, test MSE on {where}: " + "; ".join(
        cells
    )


def set_header(name: str, row: dict[str, Any], population: int, search_seeds: int) -> str:
    """The line above a set's table."""
    shape = []
    if "epochs" in row:
        shape.append(f"{row['epochs']} epochs")
    if "components" in row:
        count = row["components"]
        shape.append(f"{count} component{'s' if count != 1 else ''}")
    seeds = f"{search_seeds} search seed{'s' if search_seeds != 1 else ''}"
    what = f"population {population} vs {population} seeded runs of the plan, {seeds}"
    return f"{name}: {', '.join([*shape, what])}"


def set_lines(name: str, row: dict[str, Any], population: int, search_seeds: int) -> list[str]:
    """A set's table: its header, the columns, the plan's line and each search's."""
    lines = [set_header(name, row, population, search_seeds), COLUMNS, plan_line(row)]
    for scheduler in SCHEDULERS:
        if isinstance(row.get(scheduler), dict):
            lines.append(search_line(scheduler, row[scheduler]))
            certified = certified_line(scheduler, row[scheduler], row.get("certify_seeds"))
            lines += [certified] if certified else []
    return lines


def target_lines(results: dict[str, Any]) -> list[str]:
    """Whether each scheduler met the target, on the sets it was measured on; with fewer than
    `TARGET_SETS` sets, says so instead of counting "of 1 sets"."""
    target = f"winner <= {TARGET_RATIO:.2f} x the plan's mean best val loss"
    count = len(results)
    if count >= TARGET_SETS:
        lines = [f"target: {target} on >= {TARGET_SETS} of the {count} sets"]
    else:
        run = f"{count} set{'s' if count != 1 else ''} ({', '.join(results) or 'none'})"
        lines = [
            f"target: {target} on >= {TARGET_SETS} sets; only {run} here, "
            f"too few to meet it (run at least {TARGET_SETS})"
        ]
    for scheduler in SCHEDULERS:
        measured = {
            name: row[scheduler]["ratio_val"]
            for name, row in results.items()
            if isinstance(row.get(scheduler), dict) and "ratio_val" in row[scheduler]
        }
        if not measured:
            continue
        hits = [name for name, ratio in measured.items() if ratio <= TARGET_RATIO]
        verdict = "met" if len(hits) >= TARGET_SETS else "not met"
        lines.append(
            f"  {scheduler}: <= {TARGET_RATIO:.2f} on {len(hits)} of {len(measured)} "
            f"({', '.join(hits) or 'none'}): {verdict}"
        )
    return lines


PASS_RATIO = 0.90  # issue 22: a winner certified at <= this, its interval below 1, passes a set


def passes(found: dict[str, Any]) -> bool:
    """A winner certified >= 10 % better than the plan, its 95 % interval below 1."""
    ratio, high = found.get("ratio"), found.get("high")
    return ratio is not None and high is not None and ratio <= PASS_RATIO and high < 1.0


def fails(found: dict[str, Any]) -> bool:
    """A winner certified worse than the plan (its 95 % interval above 1)."""
    low = found.get("low")
    return low is not None and low > 1.0


def certified_target_lines(results: dict[str, Any]) -> list[str]:
    """Issue 22's bar on the certified ratios: per scheduler, the sets where a search seed's
    winner certified <= `PASS_RATIO` with its interval below 1 (>= `TARGET_SETS` of them),
    and the sets where one certified worse (none)."""
    lines = [
        f"certified target: a winner <= {PASS_RATIO:.2f} x the plan's test MSE on fresh seeds, "
        f"its interval below 1, on >= {TARGET_SETS} sets; none certified worse"
    ]
    for scheduler in SCHEDULERS:
        found = {
            name: [run["certified"] for run in row[scheduler]["runs"] if "certified" in run]
            for name, row in results.items()
            if isinstance(row.get(scheduler), dict)
        }
        found = {name: runs for name, runs in found.items() if runs}
        if not found:
            continue
        hits = [name for name, runs in found.items() if any(passes(r) for r in runs)]
        worse = [name for name, runs in found.items() if any(fails(r) for r in runs)]
        met = len(hits) >= TARGET_SETS and not worse
        lines.append(
            f"  {scheduler}: passed on {len(hits)} of {len(found)} ({', '.join(hits) or 'none'}), "
            f"worse on {len(worse)} ({', '.join(worse) or 'none'}): {'met' if met else 'not met'}"
        )
    return lines


def set_spec(name: str, plan: Plan, storage: str) -> tuple[RunSpec, list[str]]:
    """Set `name`'s data written as parquet under `storage`, and the run spec over it (its
    model's hidden size and windows from `SETS`, the trainer's defaults, seed 0).

    Returns:
        The spec and the data's component names.
    """
    bench = SETS[name]
    path = Path(storage) / f"{name}.parquet"
    bench.make().to_parquet(path, index=False)
    columns = [c for c in pd.read_parquet(path).columns if c not in ("series_id", "step")]
    model = ModelConfig(components=len(columns), hidden=bench.hidden)
    return RunSpec(plan, model, bench.data, TrainConfig(), str(path)), columns


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    plan = load_plan(phase_epochs=args.phase_epochs)
    results: dict[str, dict] = {}
    print(legend(TrainConfig().rank_alpha, TrainConfig().rank_max_lag))
    with tempfile.TemporaryDirectory() as storage:
        for name in args.sets:
            spec, columns = set_spec(name, plan, storage)
            components = len(columns)
            began = time.perf_counter()
            row = plan_row(baselines(spec, args.population), plan.total_epochs, components)
            print()
            print("\n".join(set_lines(name, row, args.population, args.search_seeds)), flush=True)
            winners: dict[str, Plan] = {}
            for scheduler in args.schedulers:
                runs = []
                for seed in range(args.search_seeds):
                    seeded = RunSpec(
                        spec.plan, spec.model, spec.data, TrainConfig(seed=seed), spec.data_path
                    )
                    found, winners[f"{scheduler}-{seed}"] = search(
                        seeded, args.population, storage, f"{name}_{scheduler}_{seed}", scheduler
                    )
                    runs.append(found)
                add_search(row, scheduler, runs)
                print(search_line(scheduler, row[scheduler]), flush=True)
            if args.certify_seeds:
                started = time.perf_counter()
                certified = certify(spec, winners, args.certify_seeds, storage, f"{name}_certify")
                add_certified(row, certified, args.certify_seeds)
                row["certify_seconds"] = time.perf_counter() - started
                for scheduler in args.schedulers:
                    line = certified_line(scheduler, row[scheduler], args.certify_seeds)
                    print(line or f"  {scheduler}: not certified", flush=True)
            row["seconds"] = time.perf_counter() - began
            results[name] = row
    settings = {
        "population": args.population,
        "phase_epochs": args.phase_epochs,
        "search_seeds": args.search_seeds,
    }
    results, kept = merge_earlier(RESULTS / "pbt_vs_baseline.json", settings, results)
    if kept:
        print(
            f"\nsets measured earlier with the same settings ({RESULTS / 'pbt_vs_baseline.json'}):"
        )
        for name in kept:
            print()
            print("\n".join(set_lines(name, results[name], args.population, args.search_seeds)))
    print()
    print("\n".join(target_lines(results)))
    print("\n".join(certified_target_lines(results)))
    print(f"wrote {write('pbt_vs_baseline', {**settings, 'std': STD, 'results': results})}")


if __name__ == "__main__":
    main()

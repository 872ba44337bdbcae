"""The plan versus PBT and PB2 searches over its modifications, at equal epochs.

Data sets: the built-in synthetic one; real ones that statsmodels ships offline (the `bench`
extra): weekly Mauna Loa CO2, monthly El Nino sea temperatures, five US macro series (quarterly
growth rates); and Seattle's daily weather, 4 components (precipitation, max and min temperature,
wind; shipped as a file by vega_datasets). For each: N in-process runs of the shortened seed
plan (seeds 0..N-1), then PBT and PB2 searches with population N (the control included), each
with `--search-seeds` seeds. Prints mean +- std (the mean alone, "(1 seed)", for one seed) of
the best free-running validation loss and the test loss (same fixed reference objective), the
number of exploits, and the ratio winner / plan mean (target <= 0.90 on at least 3 of the
sets). Writes results/benchmarks/pbt_vs_baseline.json (sets measured
earlier with the same settings are kept, so sets can be run one at a time).

    .venv/bin/python benchmarks/pbt_vs_baseline.py [--population 4] [--phase-epochs 10] \
        [--sets co2,elnino] [--schedulers pbt,pb2] [--search-seeds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import RESULTS, spread, write

from tune_app.plan.plan import load_plan
from tune_app.runs.local import train_locally
from tune_app.runs.spec import RunSpec
from tune_app.runs.writers import BestStateWriter
from tune_app.training.data import DataConfig
from tune_app.training.model import ModelConfig
from tune_app.training.synthetic import make_synthetic
from tune_app.training.trainer import TrainConfig, evaluate_free


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


SETS = {
    "synthetic": Bench(make_synthetic, DataConfig(stride=2), 32),
    "co2": Bench(co2, DataConfig(input_len=52, output_len=13, stride=4), 32),
    "elnino": Bench(elnino, DataConfig(input_len=36, output_len=12, stride=1), 32),
    "macro": Bench(macro, DataConfig(input_len=16, output_len=4, stride=1), 32),
    "weather": Bench(weather, DataConfig(input_len=56, output_len=14, stride=2), 32),
}


def _test_loss(model: torch.nn.Module, spec: RunSpec) -> float:
    dataset = spec.dataset()
    return float(
        evaluate_free(model, dataset.test, spec.train.rank_alpha, spec.train.rank_max_lag)["loss"]
    )  # type: ignore[arg-type]


def baselines(spec: RunSpec, population: int) -> list[tuple[float, float]]:
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
            out.append((best, _test_loss(result.model, seeded)))
    return out


def search(spec: RunSpec, population: int, storage: str, name: str, scheduler: str) -> dict:
    from tune_app.analysis.evaluate import load_model
    from tune_app.plan.search_space import load_space
    from tune_app.runs.results import export_best, open_run
    from tune_app.tune.runner import Launch, SearchOptions, run_search

    space = load_space(None, "modifications.yaml", "pbt")
    launch = Launch(name=name, storage=storage, cpus_per_trial=2 / population, verbose=0)
    options = SearchOptions(population=population, scheduler=scheduler)
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
    return {
        "val": float(config.value),
        "test": _test_loss(loaded.model, spec),
        "control_val": control_best,
        "exploits": len(run.journal()),
        "rounds": len(run.rounds()),
        "lineage": [
            {"epochs": [s["from_epoch"], s["to_epoch"]], "modification": s["modification"]}
            for s in segments
        ],
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.pstdev(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--phase-epochs", type=int, default=10)
    parser.add_argument("--sets", default="synthetic,co2,elnino,macro,weather")
    parser.add_argument("--schedulers", default="pbt,pb2")
    parser.add_argument("--search-seeds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    plan = load_plan(phase_epochs=args.phase_epochs)
    schedulers = args.schedulers.split(",")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as storage:
        for name in args.sets.split(","):
            bench = SETS[name]
            path = Path(storage) / f"{name}.parquet"
            bench.make().to_parquet(path, index=False)
            components = len(pd.read_parquet(path).columns) - 2
            spec = RunSpec(
                plan,
                ModelConfig(components=components, hidden=bench.hidden),
                bench.data,
                TrainConfig(),
                str(path),
            )
            began = time.perf_counter()
            base = baselines(spec, args.population)
            vals, tests = [b[0] for b in base], [b[1] for b in base]
            mean_val, std_val = _mean_std(vals)
            mean_test, std_test = _mean_std(tests)
            row: dict = {
                "baseline_val": [mean_val, std_val],
                "baseline_test": [mean_test, std_test],
            }
            print(
                f"\n{name}: {plan.total_epochs} epochs, {components} components; population "
                f"{args.population} vs {args.population} seeded runs of the plan"
            )
            print(f"  plan        val {spread(vals)}   test {spread(tests)}")
            for scheduler in schedulers:
                runs = []
                for seed in range(args.search_seeds):
                    seeded = RunSpec(
                        spec.plan, spec.model, spec.data, TrainConfig(seed=seed), spec.data_path
                    )
                    runs.append(
                        search(
                            seeded,
                            args.population,
                            storage,
                            f"{name}_{scheduler}_{seed}",
                            scheduler,
                        )
                    )
                v = _mean_std([r["val"] for r in runs])
                t = _mean_std([r["test"] for r in runs])
                exploits = [r["exploits"] for r in runs]
                row[scheduler] = {
                    "runs": runs,
                    "val": list(v),
                    "test": list(t),
                    "ratio_val": v[0] / mean_val,
                    "ratio_test": t[0] / mean_test,
                }
                print(
                    f"  {scheduler.upper():4s} winner val {spread([r['val'] for r in runs])}   "
                    f"test {spread([r['test'] for r in runs])}   exploits {exploits}   "
                    f"winner/plan: val {v[0] / mean_val:.3f}, test {t[0] / mean_test:.3f}"
                )
            row["seconds"] = time.perf_counter() - began
            results[name] = row
    settings = {
        "population": args.population,
        "phase_epochs": args.phase_epochs,
        "search_seeds": args.search_seeds,
    }
    # sets measured earlier with the same settings stay; the ones run now replace theirs
    earlier = RESULTS / "pbt_vs_baseline.json"
    if earlier.exists():
        old = json.loads(earlier.read_text())
        if all(old.get(key) == value for key, value in settings.items()):
            results = {**old.get("results", {}), **results}
    print(f"\ntarget: winner <= 0.90 x the plan's mean best val on >= 3 of {len(results)} sets")
    for scheduler in schedulers:
        hits = [n for n, r in results.items() if r.get(scheduler, {}).get("ratio_val", 1) <= 0.9]
        print(f"  {scheduler}: met on {len(hits)} ({', '.join(hits) or 'none'})")
    print(f"wrote {write('pbt_vs_baseline', {**settings, 'results': results})}")


if __name__ == "__main__":
    main()

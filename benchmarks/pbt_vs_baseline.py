"""PBT over the plan's modifications versus N seeded runs of the plan, at equal epochs.

Data sets: the built-in synthetic one, and real ones that statsmodels ships offline (the `bench`
extra): weekly Mauna Loa CO2, monthly El Nino sea temperatures, and five US macro series
(quarterly growth rates). For each: N in-process runs of the shortened seed plan (seeds 0..N-1)
and one PBT search with population N (seed 0, the control included). Prints mean +- std of the
best free-running validation loss and the test loss (same fixed reference objective), the PBT
winner's, the ratio winner / baseline mean (target <= 0.9 on at least two data sets), and the
modifications the winner used. Writes results/benchmarks/pbt_vs_baseline.json.

    .venv/bin/python benchmarks/pbt_vs_baseline.py [--population 4] [--phase-epochs 10] [--sets co2,elnino]
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
from _common import write

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


def pbt(spec: RunSpec, population: int, storage: str, name: str) -> dict:
    from tune_app.analysis.evaluate import load_model
    from tune_app.plan.search_space import load_space
    from tune_app.runs.results import export_best, open_run
    from tune_app.tune.runner import Launch, SearchOptions, run_search

    space = load_space(None, "modifications.yaml", "pbt")
    launch = Launch(name=name, storage=storage, cpus_per_trial=2 / population, verbose=0)
    _, location = run_search(
        spec, spec.open_table(), space, SearchOptions(population=population), launch
    )
    run = open_run(location.uri)
    export = Path(storage) / f"{name}_best"
    config = export_best(run, export)
    loaded = load_model(export)
    control = [t for t in run.trials if t.params.get("member", {}).get("control")]
    control_best = float(control[0].metrics["val_free_loss"].min()) if control else float("nan")
    mods = [m for m in json.loads((export / "lineage.json").read_text())["segments"]]
    return {
        "val": float(config["value"]),
        "test": _test_loss(loaded.model, spec),
        "control_val": control_best,
        "lineage": [
            {"epochs": [s["from_epoch"], s["to_epoch"]], "modification": s["modification"]}
            for s in mods
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--population", type=int, default=4)
    parser.add_argument("--phase-epochs", type=int, default=10)
    parser.add_argument("--sets", default="synthetic,co2,elnino,macro")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    plan = load_plan(phase_epochs=args.phase_epochs)
    results = {}
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
            searched = pbt(spec, args.population, storage, name)
            vals, tests = [b[0] for b in base], [b[1] for b in base]
            mean_val = statistics.mean(vals)
            results[name] = {
                "baseline_val_mean": mean_val,
                "baseline_val_std": statistics.pstdev(vals),
                "baseline_test_mean": statistics.mean(tests),
                "baseline_test_std": statistics.pstdev(tests),
                "pbt": searched,
                "ratio_val": searched["val"] / mean_val,
                "ratio_test": searched["test"] / statistics.mean(tests),
                "seconds": time.perf_counter() - began,
            }
            r = results[name]
            print(
                f"\n{name}: {plan.total_epochs} epochs, population {args.population} vs {args.population} seeded runs"
            )
            print(
                f"  baseline val  {r['baseline_val_mean']:.4f} +- {r['baseline_val_std']:.4f}   "
                f"test {r['baseline_test_mean']:.4f} +- {r['baseline_test_std']:.4f}"
            )
            print(
                f"  PBT winner    {searched['val']:.4f}            test {searched['test']:.4f}   "
                f"(control in the population: {searched['control_val']:.4f})"
            )
            print(
                f"  winner / baseline mean: val {r['ratio_val']:.3f}, test {r['ratio_test']:.3f} (target <= 0.9)"
            )
            for segment in searched["lineage"]:
                print(f"  winner epochs {segment['epochs']}: {segment['modification']}")
    hits = [n for n, r in results.items() if r["ratio_val"] <= 0.9]
    print(
        f"\ntarget met (val ratio <= 0.9) on: {', '.join(hits) or 'none'} of {len(results)} data sets"
    )
    print(
        f"wrote {write('pbt_vs_baseline', {'population': args.population, 'phase_epochs': args.phase_epochs, 'results': results})}"
    )


if __name__ == "__main__":
    main()

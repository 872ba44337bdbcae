"""What a PBT search costs against the training it does.

Side by side in one run: one member's in-process training time T (the plan as written, windows
built included), then a search of N = 2 and N = 4 members on 2 slots (1 CPU each). The ideal
search wall time is Ray's start-up S plus N x T / slots; the ratio search / ideal is printed for
each N (target <= 1.15). Ray is started afresh for each search, so S is measured each time.

    .venv/bin/python benchmarks/search_efficiency.py [--phase-epochs 6] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import DEMO_DATA, write

from tune_app.plan.plan import load_plan
from tune_app.runs.local import train_locally
from tune_app.runs.spec import RunSpec
from tune_app.training.model import ModelConfig
from tune_app.training.trainer import TrainConfig

SLOTS = 2


def in_process(spec: RunSpec) -> float:
    began = time.perf_counter()
    data = spec.dataset(spec.open_table())
    with tempfile.TemporaryDirectory() as tmp:
        train_locally(spec, data, Path(tmp))
    return time.perf_counter() - began


def _worker_pids(run: str) -> set[int]:
    """The worker processes that trained any member (Tune records each result's pid)."""
    pids = set()
    for rows in Path(run).glob("*/result.json"):
        pids |= {json.loads(line)["pid"] for line in rows.read_text().splitlines() if line}
    return pids


def search(spec: RunSpec, population: int) -> tuple[float, float, int, int]:
    """(Ray start-up seconds, search wall seconds incl. start-up, exploits, worker processes)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    from tune_app.plan.search_space import load_space
    from tune_app.runs.results import open_run
    from tune_app.tune.runner import Launch, SearchOptions, run_search

    space = load_space(None, "modifications.yaml", "pbt")
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - began
        _, location = run_search(
            spec,
            spec.open_table(),
            space,
            SearchOptions(population=population),
            Launch(storage=tmp, name="bench", verbose=0, cpus_per_trial=1.0),
        )
        wall = time.perf_counter() - began
        run = open_run(location.uri)
        exploits = len(run.journal())
        pids = _worker_pids(location.path)
    ray.shutdown()
    return startup, wall, exploits, len(pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase-epochs", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    spec = RunSpec(
        load_plan(phase_epochs=args.phase_epochs),
        ModelConfig(components=3, hidden=args.hidden),
        replace(DEMO_DATA),
        TrainConfig(),
        None,
    )
    in_process(replace(spec, plan=load_plan(phase_epochs=1)))  # warm imports and caches
    member = in_process(spec)
    rows = []
    for population in (2, 4):
        startup, wall, exploits, workers = search(spec, population)
        ideal = startup + population * member / SLOTS
        rows.append(
            {
                "population": population,
                "ray_startup_s": startup,
                "search_wall_s": wall,
                "ideal_s": ideal,
                "ratio": wall / ideal,
                "exploits": exploits,
                "worker_processes": workers,
            }
        )
    epochs = spec.plan.total_epochs
    print(f"{epochs} epochs, hidden {args.hidden}, demo data, {SLOTS} slots")
    print(f"one member in-process: {member:.1f} s")
    for row in rows:
        print(
            f"N={row['population']}: search {row['search_wall_s']:.1f} s, ideal "
            f"{row['ideal_s']:.1f} s (start-up {row['ray_startup_s']:.1f} s + {row['population']} x "
            f"{member:.1f} / {SLOTS}), ratio {row['ratio']:.3f} (target <= 1.15); "
            f"{row['exploits']} exploits, {row['worker_processes']} worker processes"
        )
    path = write(
        "search_efficiency",
        {"epochs": epochs, "hidden": args.hidden, "member_in_process_s": member, "searches": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

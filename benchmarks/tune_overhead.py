"""In-process training versus the same plan, data and seed as one Ray Tune trial.

Prints the per-epoch time ratio (Tune / in-process; target <= 1.03) and the total wall time of
each including start-up (Ray start, object store, trial launch, checkpoint persistence). Rounds
alternate in-process and Tune runs in one process, so noise hits both.

    .venv/bin/python benchmarks/tune_overhead.py [--phase-epochs 20]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import DEMO_DATA, DEMO_MODEL, stamps_callback, summary, write

from tune_app.plan.plan import load_plan
from tune_app.runs.local import train_locally
from tune_app.runs.spec import RunSpec
from tune_app.training.data import open_series
from tune_app.training.trainer import TrainConfig


def in_process(spec: RunSpec) -> tuple[list[float], float]:
    stamps: list[float] = []
    began = time.perf_counter()
    table = spec.open_table()
    data = spec.dataset(table)
    with tempfile.TemporaryDirectory() as tmp:
        epoch_start = time.perf_counter()
        train_locally(spec, data, Path(tmp), extra=[stamps_callback(stamps)])
    edges = [epoch_start, *stamps]
    return [b - a for a, b in itertools.pairwise(edges)], time.perf_counter() - began


def in_tune(spec: RunSpec) -> tuple[list[float], list[float], float]:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from tune_app.runs.results import open_run
    from tune_app.tune.runner import Launch, run_baseline

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        _, location = run_baseline(
            spec, spec.open_table(), Launch(storage=tmp, name="bench", verbose=0)
        )
        wall = time.perf_counter() - began
        rows = open_run(location.uri).trials[0].rows
    # time_this_iter_s: between reports, as Tune sees it; seconds: the trainer's own epoch inside the trial
    return [float(r["time_this_iter_s"]) for r in rows], [float(r["seconds"]) for r in rows], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase-epochs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    spec = RunSpec(
        load_plan(phase_epochs=args.phase_epochs), DEMO_MODEL, DEMO_DATA, TrainConfig(), None
    )
    open_series(None, DEMO_DATA)  # warm imports and caches for both
    local, tuned, inner, walls_local, walls_tune = [], [], [], [], []
    for _ in range(args.rounds):  # alternate, so slow spells of the machine hit both
        times, wall = in_process(spec)
        local += times
        walls_local.append(wall)
        times, own, wall = in_tune(spec)
        tuned += times
        inner += own
        walls_tune.append(wall)
    ratio = statistics.median(tuned) / statistics.median(local)
    report_cost = statistics.median(t - s for t, s in zip(tuned, inner, strict=True))
    epochs = spec.plan.total_epochs
    print(f"{epochs} epochs x {args.rounds} rounds, demo model and data")
    print(
        f"in-process: {statistics.median(local) * 1000:.1f} ms/epoch; wall {', '.join(f'{w:.1f}' for w in walls_local)} s"
    )
    print(
        f"Tune trial: {statistics.median(tuned) * 1000:.1f} ms/epoch; wall {', '.join(f'{w:.1f}' for w in walls_tune)} s "
        "(the first includes starting Ray)"
    )
    print(f"  of which tune.report + checkpoint hand-over: {report_cost * 1000:.2f} ms/epoch")
    print(f"per-epoch ratio Tune/in-process: {ratio:.3f} (target <= 1.03)")
    print(f"wall ratio Tune/in-process (first round): {walls_tune[0] / walls_local[0]:.2f}")
    path = write(
        "tune_overhead",
        {
            "epochs": epochs,
            "rounds": args.rounds,
            "in_process_s_per_epoch": summary(local),
            "tune_s_per_epoch": summary(tuned),
            "report_cost_s": report_cost,
            "ratio_per_epoch": ratio,
            "wall_in_process_s": walls_local,
            "wall_tune_s": walls_tune,
            "target": 1.03,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""What a PBT search costs against the training it does.

Side by side in one run: one member's in-process training time T (the plan as written, windows
built included; measured before and after each search, the two averaged), and a search of N = 2
and N = 4 members on 2 slots (1 CPU each). The ideal
search wall time is Ray's start-up S plus N x T / slots; the ratio search / ideal is printed for
each N (target <= 1.15). Ray is started afresh for each search, so S is measured each time.

The default data is the size the issue measured: synthetic, 24 series x 400 steps, stride 1
(5,016 training windows), hidden 64, 30 epochs. What a search pays beyond the ideal is mostly
fixed: each worker process starts once (Python, torch, ray.tune, the trainable, and torch's
optimizer importing torch._dynamo on first use: ~5 s on one core), so on a small data set
(`--series 6 --stride 2`, T ~ 9 s) the ratio is dominated by it. The breakdown printed per
search: seconds until the first epoch's result ("first result"), and the sum of the members'
epoch times against N x T.

    .venv/bin/python benchmarks/search_efficiency.py [--phase-epochs 6] [--hidden 64]
        [--series 24] [--length 400] [--stride 1]

`--loaded` measures instead what a busy machine does to each (docs/shared-machine.md), side by
side in one run: one member in-process and a search of N = 2, each alone and each beside two
busy processes (`python -c "while True: pass"`, at the default priority, as another job or a
notebook would be). Each slowdown is beside / alone; the search's is compared with the member's
(target <= 1.2: a trial on Ray gets the CPU share an in-process training gets). With Ray's own
worker niceness (`RAY_worker_niceness=15` before the command) the search's slowdown was 22 x
against the member's 1.3 x on a tiny plan. Keep the plan short (the defaults then are 2-epoch
phases, 6 series, stride 2, hidden 32): the busy processes load the machine for every run on it.

    .venv/bin/python benchmarks/search_efficiency.py --loaded
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import DEMO_DATA, write

from tune_app.plan.plan import load_plan
from tune_app.runs.local import train_locally
from tune_app.runs.spec import RunSpec
from tune_app.training.model import ModelConfig
from tune_app.training.synthetic import make_synthetic
from tune_app.training.trainer import TrainConfig

SLOTS = 2


def in_process(spec: RunSpec) -> float:
    began = time.perf_counter()
    data = spec.dataset(spec.open_table())
    with tempfile.TemporaryDirectory() as tmp:
        train_locally(spec, data, Path(tmp))
    return time.perf_counter() - began


def _results(run: str) -> list[dict]:  # type: ignore[type-arg]
    """Every member's Tune result rows (each has the worker's pid and a timestamp)."""
    rows = []
    for file in Path(run).glob("*/result.json"):
        rows += [json.loads(line) for line in file.read_text().splitlines() if line]
    return rows


def _ray_cpu_seconds() -> tuple[float, float]:
    """CPU seconds so far of the local Ray's processes (children of this driver): the worker
    processes (trainers and idle workers), and Ray's services (raylet, GCS, agents)."""
    import psutil  # Ray ships it (ray/thirdparty_files, on the path once ray is imported)

    workers = services = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
            name = " ".join(child.cmdline()[:3])
        except psutil.Error:
            continue
        cpu = times.user + times.system
        if "default_worker" in name or name.startswith("ray::"):
            workers += cpu
        else:
            services += cpu
    return workers, services


def search(spec: RunSpec, population: int) -> dict[str, float]:
    """Ray start-up seconds, search wall seconds incl. start-up, exploits, worker processes,
    seconds from Ray's start to the first result, and the members' summed epoch seconds."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    from tune_app.plan.search_space import load_space
    from tune_app.runs.results import open_run
    from tune_app.tune import cluster, runner
    from tune_app.tune.runner import Launch, SearchOptions, run_search

    startup = 0.0

    def start_ray(address: str | None) -> None:
        """Ray started where the CLI starts it (inside run_search), on SLOTS CPUs, timed."""
        nonlocal startup
        began = time.perf_counter()
        cluster.start_local(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - began

    runner.init_ray = start_ray  # type: ignore[assignment]
    space = load_space(None, "modifications.yaml", "pbt")
    with tempfile.TemporaryDirectory() as tmp:
        began, began_clock, driver_cpu = time.perf_counter(), time.time(), time.process_time()
        _, location = run_search(
            spec,
            spec.open_table(),
            space,
            SearchOptions(population=population),
            Launch(storage=tmp, name="bench", verbose=0, cpus_per_trial=1.0),
        )
        wall = time.perf_counter() - began
        driver_cpu = time.process_time() - driver_cpu
        workers_cpu, ray_cpu = _ray_cpu_seconds()
        run = open_run(location.uri)
        rows = _results(location.path)
        measured = {
            "ray_startup_s": startup,
            "search_wall_s": wall,
            "exploits": len(run.journal()),
            "worker_processes": len({row["pid"] for row in rows}),
            "first_result_s": min(row["timestamp"] for row in rows) - began_clock,
            "epochs_s": sum(row["time_this_iter_s"] for row in rows),
            "driver_cpu_s": driver_cpu,
            "workers_cpu_s": workers_cpu,
            "ray_services_cpu_s": ray_cpu,
        }
    ray.shutdown()
    return measured


@contextlib.contextmanager
def busy_processes(count: int = 2) -> Iterator[None]:
    """`count` processes that spin at the default priority for the block, then are stopped."""
    spinning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for process in spinning:
            process.kill()
            process.wait()


def loaded(spec: RunSpec, population: int = 2) -> dict[str, Any]:
    """The member in-process and a search, each alone and beside two busy processes, seconds.
    The alone runs come before and after the busy ones, averaged (the machine drifts)."""
    from tune_app.tune.cluster import NICENESS_VARIABLE

    member_alone = [in_process(spec)]
    search_alone = [search(spec, population)["search_wall_s"]]
    with busy_processes(2):
        member_busy = in_process(spec)
        search_busy = search(spec, population)["search_wall_s"]
    member_alone.append(in_process(spec))
    search_alone.append(search(spec, population)["search_wall_s"])
    member = sum(member_alone) / 2
    searched = sum(search_alone) / 2
    return {
        "population": population,
        "member_alone_s": member,
        "member_busy_s": member_busy,
        "member_slowdown": member_busy / member,
        "search_alone_s": searched,
        "search_busy_s": search_busy,
        "search_slowdown": search_busy / searched,
        "slowdown_ratio": (search_busy / searched) / (member_busy / member),
        "worker_niceness": os.environ.get(NICENESS_VARIABLE, "the driver's"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--phase-epochs", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=None)
    parser.add_argument("--series", type=int, default=None)
    parser.add_argument("--length", type=int, default=400)
    parser.add_argument("--stride", type=int, default=None)
    parser.add_argument("--loaded", action="store_true", help="alone vs beside 2 busy processes")
    args = parser.parse_args()
    small = args.loaded  # the loaded variant's defaults: short, the busy runs load the machine
    for name, usual, short in (
        ("phase_epochs", 6, 2),
        ("hidden", 64, 32),
        ("series", 24, 6),
        ("stride", 1, 2),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if small else usual)
    data = replace(DEMO_DATA, stride=args.stride)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "series.parquet"
        make_synthetic(series=args.series, length=args.length).to_parquet(path)
        spec = RunSpec(
            load_plan(phase_epochs=args.phase_epochs),
            ModelConfig(components=3, hidden=args.hidden),
            data,
            TrainConfig(),
            str(path),
        )
        windows = len(spec.dataset(spec.open_table()).train)
        in_process(replace(spec, plan=load_plan(phase_epochs=1)))  # warm imports and caches
        if args.loaded:
            row = loaded(spec)
            print(
                f"{spec.plan.total_epochs} epochs, hidden {args.hidden}, {windows} train "
                f"windows, {SLOTS} slots; alone / beside 2 busy processes:\n"
                f"member in-process {row['member_alone_s']:.1f} s / {row['member_busy_s']:.1f} s "
                f"= {row['member_slowdown']:.2f} x\n"
                f"search N=2 {row['search_alone_s']:.1f} s / {row['search_busy_s']:.1f} s "
                f"= {row['search_slowdown']:.2f} x\n"
                f"search slowdown / member slowdown = {row['slowdown_ratio']:.2f} (target <= 1.2)"
            )
            print(f"wrote {write('search_efficiency_loaded', row)}")
            return
        # T is measured before and after each search and averaged: the machine's speed drifts
        # by 10 % or more over minutes, and the ratio is only as good as its denominator
        members = [in_process(spec)]
        rows = []
        for population in (2, 4):
            measured = search(spec, population)
            members.append(in_process(spec))
            member = (members[-2] + members[-1]) / 2
            ideal = measured["ray_startup_s"] + population * member / SLOTS
            wall = measured["search_wall_s"]
            rows.append(
                {
                    "population": population,
                    **measured,
                    "member_in_process_s": member,
                    "ideal_s": ideal,
                    "ratio": wall / ideal,
                }
            )
    epochs = spec.plan.total_epochs
    print(f"{epochs} epochs, hidden {args.hidden}, {windows} train windows, {SLOTS} slots")
    print(
        "one member in-process, before and after each search: "
        + ", ".join(f"{t:.1f} s" for t in members)
    )
    spread = max(members) / min(members) - 1
    if spread > 0.15:
        print(
            f"warning: T varied by {spread:.0%} between measurements: the machine was busy, so "
            "the ratios below are unreliable; run it again on an idle machine"
        )
    for row in rows:
        n, member = row["population"], row["member_in_process_s"]
        print(
            f"N={n}: search {row['search_wall_s']:.1f} s, ideal {row['ideal_s']:.1f} s "
            f"(start-up {row['ray_startup_s']:.1f} s + {n} x {member:.1f} / {SLOTS}), "
            f"ratio {row['ratio']:.3f} (target <= 1.15); {row['exploits']} exploits, "
            f"{row['worker_processes']} worker processes; first result after "
            f"{row['first_result_s']:.1f} s; members' epochs {row['epochs_s']:.1f} s "
            f"= {row['epochs_s'] / (n * member):.2f} x {n} x T; CPU s: workers "
            f"{row['workers_cpu_s']:.0f}, driver {row['driver_cpu_s']:.0f}, Ray services "
            f"{row['ray_services_cpu_s']:.0f} (of {SLOTS * row['search_wall_s']:.0f} available)"
        )
    path = write(
        "search_efficiency",
        {
            "epochs": epochs,
            "hidden": args.hidden,
            "train_windows": windows,
            "member_in_process_s": members,
            "searches": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""`make demo`: the main job on built-in synthetic data, end to end, in minutes on a laptop.

synthetic data -> the seed plan drawn -> the full 500-epoch baseline as one Ray Tune trial
(demo-size model) -> `tune-app best` export -> a small PBT search of the plan's modifications
(population 4, phases shortened to 10 epochs), its winner against the control -> where it all is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from tune_app.cli import main as cli

DEMO_MODEL = ["--hidden", "32", "--stride", "2"]


def _step(argv: list[str]) -> None:
    print(f"\n$ tune-app {' '.join(argv)}", flush=True)
    code = cli(argv)
    if code:
        raise SystemExit(code)


def run(out: Path, phase_epochs: int | None = None) -> int:
    started = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)  # the demo's own folder: a rerun starts clean
    data = str(out / "synthetic.parquet")
    shorten = ["--phase-epochs", str(phase_epochs)] if phase_epochs else []
    _step(["data", "make-synthetic", "--out", data])
    _step(["plan", "show", "--plot", str(out / "plan.png"), *shorten])
    _step(
        [
            "baseline",
            "--data",
            data,
            *DEMO_MODEL,
            *shorten,
            "--storage",
            str(out),
            "--name",
            "baseline",
        ]
    )
    _step(["best", str(out / "baseline"), "--out", str(out / "best")])
    search_shape = shorten or ["--phase-epochs", "10"]
    _step(
        [
            "search",
            "--data",
            data,
            *DEMO_MODEL,
            *search_shape,
            "--population",
            "4",
            "--cpus-per-trial",
            "0.5",
            "--storage",
            str(out),
            "--name",
            "search",
        ]
    )
    _step(["best", str(out / "search"), "--out", str(out / "search_best")])
    _step(["evaluate", str(out / "search_best"), "--data", data])
    _step(["report", str(out / "search"), "--out", str(out / "report")])
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\ndemo done in {minutes:.1f} min. Under {out}/:\n"
        f"  plan.png         the seed plan's schedules\n"
        f"  baseline/        the Ray Tune run (checkpoints at every phase boundary)\n"
        f"  best/            best_model.pth plan.yaml config.json lineage.json metrics.parquet\n"
        f"  search/          PBT over the plan's modifications (population 4, 10-epoch phases)\n"
        f"  search_best/     the winner, with plan.yaml replaying its lineage: tune-app train --replay {out}/search_best\n"
        f"  report/          report.html (self-contained) and report.md: curves, gap, components, family tree\n"
        f"  tensorboard --logdir {out}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/demo")
    parser.add_argument(
        "--phase-epochs", type=int, help="shorten the plan (default: the full 500 epochs)"
    )
    options = parser.parse_args()
    sys.exit(run(Path(options.out), options.phase_epochs))

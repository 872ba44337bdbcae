"""`make demo`: the main job on built-in synthetic data, end to end, in minutes on a laptop.

synthetic data -> the seed plan drawn -> the full 500-epoch baseline as one Ray Tune trial
(demo-size model) -> `tune-app best` export -> where everything is.
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
    minutes = (time.perf_counter() - started) / 60
    print(
        f"\ndemo done in {minutes:.1f} min. Under {out}/:\n"
        f"  plan.png         the seed plan's schedules\n"
        f"  baseline/        the Ray Tune run (checkpoints at every phase boundary)\n"
        f"  best/            best_model.pth plan.yaml config.json lineage.json metrics.parquet\n"
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

"""`make demo`: the main job on built-in synthetic data, end to end, in a few minutes on a laptop."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tune_app.cli import main as cli


def run(out: Path) -> int:
    started = time.perf_counter()
    steps = [
        ["data", "make-synthetic", "--out", str(out / "synthetic.parquet")],
        ["plan", "show", "--plot", str(out / "plan.png")],
        [
            "train",
            "--data",
            str(out / "synthetic.parquet"),
            "--phase-epochs",
            "10",
            "--stride",
            "2",
            "--hidden",
            "32",
            "--out",
            str(out / "train"),
            "--progress-every",
            "10",
        ],
    ]
    for argv in steps:
        print(f"\n$ tune-app {' '.join(argv)}", flush=True)
        code = cli(argv)
        if code:
            return code
    print(f"\ndemo done in {time.perf_counter() - started:.0f} s; everything is under {out}/")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="results/demo")
    sys.exit(run(Path(parser.parse_args().out)))

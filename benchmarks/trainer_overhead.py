"""Two measurements of the trainer, each side by side in one run.

1. Overhead: the full trainer (plan look-ups before every step, the autocorrelation loss,
   validation teacher-forced and free-running, metrics, monitors) against a bare loop over the
   same model and batches (same teacher forcing and noise, plain MSE, no validation), alternately
   in this process on the demo data. Target ratio <= 1.25.
2. Speed, before and after: epochs per second of the default model (hidden 64) on a 5,016-window
   synthetic set (24 series x 400 steps, stride 1), the code at `--before` (a git revision,
   extracted with `git archive`) and the working tree, each in its own process, alternating.
   Also the first epochs' losses of both: the forward pass is the same arithmetic, the backward
   pass's sums run in another order (`tune_app/training/gru_bptt.py`), so losses agree to float
   rounding at first and within seed-to-seed noise later. Target speed-up >= 1.6.

    .venv/bin/python benchmarks/trainer_overhead.py [--rounds 3] [--epochs 10] \
        [--before a43c440] [--speed-rounds 3] [--speed-epochs 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import DEMO_MODEL, demo_dataset, stamps_callback, summary, write

from tune_app.plan.plan import load_plan
from tune_app.runs.local import train_locally
from tune_app.runs.spec import RunSpec
from tune_app.training.model import Seq2Seq
from tune_app.training.monitors import StopAfter
from tune_app.training.trainer import TrainConfig


def bare_epochs(data, epochs: int, batch_size: int = 64) -> list[float]:  # type: ignore[no-untyped-def]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Seq2Seq(DEMO_MODEL)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    x_all, y_all = data.train.inputs, data.train.targets
    times = []
    for _ in range(epochs):
        began = time.perf_counter()
        model.train()
        for index in torch.randperm(len(x_all)).split(batch_size):
            pred = model(
                x_all[index], y_all.shape[1], target=y_all[index], teacher_forcing=0.7, noise=0.05
            )
            loss = torch.nn.functional.mse_loss(pred, y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        times.append(time.perf_counter() - began)
    return times


def full_epochs(data, epochs: int) -> list[float]:  # type: ignore[no-untyped-def]
    plan = load_plan(phase_epochs=math.ceil(epochs / 5))
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        spec = RunSpec(plan, DEMO_MODEL, data.config, TrainConfig())
        extra = [StopAfter(epochs), stamps_callback(stamps)]
        train_locally(spec, data, Path(tmp), extra=extra)
    edges = [began, *stamps]
    return [b - a for a, b in itertools.pairwise(edges)]


ROOT = Path(__file__).resolve().parent.parent
SPEED_CHILD = """
import json, sys, time
import pyarrow as pa
from tune_app.plan.plan import load_plan
from tune_app.training.data import DataConfig, build_dataset, series_from_arrow
from tune_app.training.model import ModelConfig
from tune_app.training.monitors import Callback, StopAfter
from tune_app.training.synthetic import make_synthetic
from tune_app.training.trainer import TrainConfig, train

epochs = int(sys.argv[1])
config = DataConfig(stride=1)
frame = make_synthetic(series=24, length=400)
data = build_dataset(series_from_arrow(pa.Table.from_pandas(frame), config, "synthetic"), config)
stamps = []

class Stamp(Callback):
    def on_epoch_end(self, metrics, state):
        stamps.append(time.perf_counter())

began = time.perf_counter()
result = train(load_plan(phase_epochs=epochs), data, ModelConfig(components=3, hidden=64),
               TrainConfig(), callbacks=[StopAfter(epochs), Stamp()])
seconds = [b - a for a, b in zip([began, *stamps], stamps)]
losses = [[row["train_loss"], row["val_free_loss"]] for row in result.history]
print(json.dumps({"windows": len(data.train), "seconds": seconds, "losses": losses}))
"""


def _extract(revision: str, into: Path) -> Path:
    """The package as it was at `revision`, unpacked under `into`."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "tune_app"], capture_output=True
    )
    if done.returncode != 0:
        raise SystemExit(
            f"--before {revision}: git cannot extract it ({done.stderr.decode().strip()}); this "
            "comparison needs a git clone with that commit in its history (not a tarball or a "
            "shallow clone: `git fetch --unshallow`)"
        )
    archive = done.stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def _speed_run(code_root: Path, epochs: int) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    out = subprocess.run(
        [sys.executable, "-c", SPEED_CHILD, str(epochs)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=code_root,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def speed(before: str, rounds: int, epochs: int) -> dict:  # type: ignore[type-arg]
    """Epochs/s before and after, alternating processes; the first epoch (imports, first
    allocations) is left out of the timing."""
    times: dict[str, list[float]] = {"before": [], "after": []}
    losses: dict[str, list] = {}  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"before": _extract(before, Path(tmp)), "after": ROOT}
        windows = 0
        for _ in range(rounds):
            for label, root in roots.items():
                run = _speed_run(root, epochs)
                times[label] += run["seconds"][1:]
                losses[label] = run["losses"]
                windows = run["windows"]
    b, a = summary(times["before"]), summary(times["after"])
    return {
        "before_revision": before,
        "train_windows": windows,
        "before_s_per_epoch": b,
        "after_s_per_epoch": a,
        "epochs_per_s_before": 1 / b["median"],
        "epochs_per_s_after": 1 / a["median"],
        "speedup": b["median"] / a["median"],
        "losses_before": losses["before"],
        "losses_after": losses["after"],
        "target": 1.6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--before", default="a43c440", help="git revision to compare against")
    parser.add_argument("--speed-rounds", type=int, default=3)
    parser.add_argument("--speed-epochs", type=int, default=4)
    args = parser.parse_args()
    fast = speed(args.before, args.speed_rounds, args.speed_epochs)
    data = demo_dataset()
    full, bare = [], []
    for _ in range(args.rounds):
        full += full_epochs(data, args.epochs)
        bare += bare_epochs(data, args.epochs)
    f, b = summary(full), summary(bare)
    ratio = f["median"] / b["median"]
    print(f"train windows {len(data.train)}, val windows {len(data.val)}, model {DEMO_MODEL}")
    print(
        f"full trainer: {f['median'] * 1000:.1f} ms/epoch (median of {f['n']}), {1 / f['median']:.2f} epochs/s"
    )
    print(f"bare loop:    {b['median'] * 1000:.1f} ms/epoch (median of {b['n']})")
    print(f"ratio full/bare: {ratio:.3f} (target <= 1.25)")
    print(
        f"hidden 64, {fast['train_windows']} train windows: {fast['epochs_per_s_before']:.3f} "
        f"epochs/s at {args.before}, {fast['epochs_per_s_after']:.3f} now: "
        f"speed-up {fast['speedup']:.2f} (target >= 1.6)"
    )
    for label in ("before", "after"):
        rows = ", ".join(f"{t:.6f}/{v:.6f}" for t, v in fast[f"losses_{label}"])
        print(f"  {label:6} train/val_free loss by epoch: {rows}")
    path = write(
        "trainer_overhead",
        {
            "full_s_per_epoch": f,
            "bare_s_per_epoch": b,
            "ratio": ratio,
            "epochs_per_s_full": 1 / f["median"],
            "target": 1.25,
            "speed": fast,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

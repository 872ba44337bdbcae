"""Per-epoch cost of the full trainer versus a bare loop over the same model and batches.

The full trainer does plan look-ups before every step, the autocorrelation loss, validation
(teacher-forced and free-running), metrics and monitors. The bare loop: same model, same batches,
same teacher forcing and noise, plain MSE, no validation. Both run alternately in this process
(rounds of EPOCHS epochs each), so machine noise hits both alike. Target ratio: <= 1.25.

    .venv/bin/python benchmarks/trainer_overhead.py [--rounds 3] [--epochs 10]
"""

from __future__ import annotations

import argparse
import itertools
import math
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
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
    path = write(
        "trainer_overhead",
        {
            "full_s_per_epoch": f,
            "bare_s_per_epoch": b,
            "ratio": ratio,
            "epochs_per_s_full": 1 / f["median"],
            "target": 1.25,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

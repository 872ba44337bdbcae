"""One training batch through the model's GRU encoder-decoder, forward and backward, by each way
torch offers, side by side in one process (`trainer_overhead.py` runs it and prints the column):

- `nn.GRU`: torch's modules (what `Seq2Seq` runs when given `encoded=model.encode(x)`);
- `hand-written`: `tune_app/training/gru_bptt.py`, `Seq2Seq`'s training path on the CPU;
- `cell compiled (<mode>)`: a functional GRU cell (the equations `torch.nn.GRU` documents; Cho et
  al., 2014) under `torch.compile`, the steps a Python loop around it, autograd through the
  compiled cell (one forward and one backward kernel set per step);
- `sequence compiled (<mode>)`: the same functional encoder-decoder with every step unrolled into
  one graph under `torch.compile` (one forward and one backward graph per batch).

Each compiled way in each `--modes` entry (torch.compile's `mode`), static shapes. Steady state:
the median of `--rounds` batches per way, the ways alternating so the machine's noise hits all.
Compile time: the first call's seconds (forward and backward both compile) less the steady
state's median, with inductor's caches off (`TORCHINDUCTOR_FORCE_DISABLE_CACHES=1`, which
`trainer_overhead.py` sets with a fresh cache folder), so what a new machine or container pays;
torch.compile's own start-up (its imports, on a one-line function) is `compile_startup_s`. A new
batch size (an epoch's last, smaller batch) or number of steps compiles again.

    .venv/bin/python benchmarks/gru_paths.py [--hidden 64] [--rounds 20] \
        [--modes default,max-autotune-no-cudagraphs]

prints one JSON line (milliseconds per batch, compile seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from tune_app.training.model import ModelConfig, Seq2Seq

BATCH, STEPS_IN, STEPS_OUT, COMPONENTS = 64, 48, 24, 3  # TrainConfig's batch, DataConfig's lengths
TEACHER_FORCING = 0.7  # the seed plan's first phase
MODES = ("default", "max-autotune-no-cudagraphs")


def gru_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
) -> torch.Tensor:
    """One GRU step as `torch.nn.GRU`'s documentation writes it (Cho et al., 2014; the reset
    gate applied to the hidden projection).

    Args:
        x: the step's input [B, I].
        h: the state [B, H].
        w_ih, w_hh: `weight_ih_l0` [3H, I] and `weight_hh_l0` [3H, H] (r, z, n blocks).
        b_ih, b_hh: `bias_ih_l0` and `bias_hh_l0`, [3H] each.

    Returns:
        The next state [B, H].
    """
    i_r, i_z, i_n = F.linear(x, w_ih, b_ih).chunk(3, 1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def seq2seq(
    cell: Callable[..., torch.Tensor],
    x: torch.Tensor,
    steps: int,
    target: torch.Tensor,
    use_truth: torch.Tensor,
    encoder: list[torch.Tensor],
    decoder: list[torch.Tensor],
    head: list[torch.Tensor],
) -> torch.Tensor:
    """`Seq2Seq.forward` for one GRU layer, written with `cell`: encode x [B, T, C] from a zero
    state, then decode `steps` residual predictions [B, steps, C], the next input the truth
    `target[:, t]` where `use_truth[:, t]` [B, 1] holds (teacher forcing), else the prediction.
    `encoder` and `decoder` are a GRU's four parameters, `head` the linear head's two."""
    h = x.new_zeros(x.shape[0], encoder[1].shape[1])
    for t in range(x.shape[1]):
        h = cell(x[:, t], h, *encoder)
    previous, outputs = x[:, -1], []
    for t in range(steps):
        h = cell(previous, h, *decoder)
        prediction = previous + F.linear(h, *head)
        outputs.append(prediction)
        previous = torch.where(use_truth[:, t], target[:, t], prediction)
    return torch.stack(outputs, 1)


def ways(model: Seq2Seq, modes: list[str]) -> dict[str, Callable[..., torch.Tensor]]:
    """Each way's forward pass (x, target, generator) -> predictions [B, steps, C]."""
    weights = [list(m.parameters()) for m in (model.encoder, model.decoder, model.head)]

    def functional(run: Callable[..., torch.Tensor], cell: Callable[..., torch.Tensor]):  # type: ignore[no-untyped-def]
        def forward(x, target, generator):  # type: ignore[no-untyped-def]
            draws = torch.rand((x.shape[0], target.shape[1], 1), generator=generator)
            return run(cell, x, target.shape[1], target, draws < TEACHER_FORCING, *weights)

        return forward

    found: dict[str, Callable[..., torch.Tensor]] = {
        "nn.GRU": lambda x, target, generator: model(
            x,
            target.shape[1],
            target=target,
            teacher_forcing=TEACHER_FORCING,
            generator=generator,
            encoded=model.encode(x),
        ),
        "hand-written": lambda x, target, generator: model(
            x, target.shape[1], target=target, teacher_forcing=TEACHER_FORCING, generator=generator
        ),
    }
    for mode in modes:
        cell = torch.compile(gru_cell, mode=mode, dynamic=False)
        found[f"cell compiled ({mode})"] = functional(seq2seq, cell)
    for mode in modes:
        whole = torch.compile(seq2seq, mode=mode, dynamic=False)
        found[f"sequence compiled ({mode})"] = functional(whole, gru_cell)
    return found


def train_step(forward: Callable[..., torch.Tensor], model: Seq2Seq, batch: tuple) -> None:  # type: ignore[type-arg]
    x, target, seed = batch
    prediction = forward(x, target, torch.Generator().manual_seed(seed))
    model.zero_grad(set_to_none=True)
    F.mse_loss(prediction, target).backward()


def measure(hidden: int, rounds: int, modes: list[str]) -> dict[str, Any]:
    torch.set_num_threads(1)  # as training (TrainConfig.threads)
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(components=COMPONENTS, hidden=hidden))
    model.train()
    x, target = torch.randn(BATCH, STEPS_IN, COMPONENTS), torch.randn(BATCH, STEPS_OUT, COMPONENTS)
    batch = (x, target, 0)
    began = time.perf_counter()
    torch.compile(lambda a: a + 1)(torch.zeros(2))
    startup = time.perf_counter() - began
    found = ways(model, modes)
    first: dict[str, float] = {}
    reference = found["nn.GRU"](x, target, torch.Generator().manual_seed(0)).detach()
    for name, forward in found.items():
        began = time.perf_counter()
        train_step(forward, model, batch)
        first[name] = time.perf_counter() - began
        got = forward(x, target, torch.Generator().manual_seed(0)).detach()
        torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-5, msg=name)  # one function
    seconds: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(rounds):
        for name, forward in found.items():
            began = time.perf_counter()
            train_step(forward, model, batch)
            seconds[name].append(time.perf_counter() - began)
    ms = {name: 1000 * statistics.median(values) for name, values in seconds.items()}
    compiled = [name for name in found if "compiled" in name]
    return {
        "hidden": hidden,
        "batch": BATCH,
        "steps_in": STEPS_IN,
        "steps_out": STEPS_OUT,
        "components": COMPONENTS,
        "teacher_forcing": TEACHER_FORCING,
        "threads": 1,
        "rounds": rounds,
        "ms_per_batch": ms,
        "ms_min": {name: 1000 * min(values) for name, values in seconds.items()},
        "to_hand_written": {name: ms[name] / ms["hand-written"] for name in found},
        "compile_s": {name: first[name] - ms[name] / 1000 for name in compiled},
        "compile_startup_s": startup,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--modes", default=",".join(MODES), help="torch.compile modes, commas")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # inductor's notes on max-autotune's CPU templates
    modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    print(json.dumps(measure(args.hidden, args.rounds, modes)))


if __name__ == "__main__":
    main()

"""The epoch loop. No Ray and no files here: monitors, boundary rules and whoever saves or reports
come in as callbacks (`monitors.Callback`); each epoch ends with `on_epoch_end(metrics, state)`.

Before every optimizer step the plan sets the learning rate; every epoch it sets weight decay,
teacher forcing, noise, gradient clipping, alpha, max_lag, component weights and the curriculum.
`val_free_loss` (free-running, under a fixed reference objective) is the number to rank on.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tune_app.errors import DivergedError, InputError
from tune_app.plan.plan import Plan
from tune_app.training.checkpoint import get_rng_state, set_rng_state
from tune_app.training.configs import TrainConfig
from tune_app.training.data import Dataset, Windows
from tune_app.training.loss import combined_loss
from tune_app.training.metrics import EPOCH, TRAIN_LOSS, VAL_FREE_LOSS, VAL_FREE_MSE, VAL_LOSS
from tune_app.training.model import ModelConfig, Seq2Seq
from tune_app.training.monitors import Callback, DivergenceMonitor, EpochState
from tune_app.training.resumable import open_checkpoint

__all__ = ["TrainConfig", "TrainResult", "check_resume", "evaluate_free", "train"]


@dataclass
class TrainResult:
    model: Seq2Seq
    history: list[dict[str, float]] = field(default_factory=list)
    plan: Plan | None = None  # the plan at the end, boundary rules' changes included


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global generator and `random`, so a run is repeatable.

    Args:
        seed: the run's seed (`--seed`); numpy gets it modulo 2**32.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@torch.no_grad()
def evaluate_free(
    model: Seq2Seq, windows: Windows, alpha: float, max_lag: int, batch_size: int = 2048
) -> dict[str, Any]:
    """Free-running scores of a model over every window, under one objective (no teacher
    forcing, no noise).

    Args:
        model: the model; it is put in eval mode.
        windows: the windows to score (a split of a Dataset).
        alpha: the objective's MSE weight.
        max_lag: its largest autocorrelation lag.
        batch_size: windows per forward pass.

    Returns:
        {"loss": the combined loss, "mse": the MSE (z-units), "per_component": a [C] tensor of
        each component's loss}, means over the windows.
    """
    return _validate(model, windows, alpha, max_lag, batch_size)[0]


@torch.no_grad()
def _validate(
    model: Seq2Seq,
    windows: Windows,
    alpha: float,
    max_lag: int,
    batch_size: int,
    forced: tuple[Any, int] | None = None,
) -> tuple[dict[str, Any], float]:
    """Free-running loss (reference objective `alpha`, `max_lag`) and, with `forced =
    (settings, seed)`, the training objective on the same windows under the epoch's teacher
    forcing (fixed draws), no noise. Both decode from one encoding of each batch."""
    model.eval()
    totals: dict[str, Any] = {"loss": 0.0, "mse": 0.0, "per_component": 0.0}
    forced_total, count, steps = 0.0, len(windows), windows.targets.shape[1]
    generator = None
    if forced is not None:
        generator = torch.Generator(device=windows.inputs.device).manual_seed(forced[1] + 1)
    for lo in range(0, count, batch_size):
        x, y = windows.inputs[lo : lo + batch_size], windows.targets[lo : lo + batch_size]
        share = x.shape[0] / count
        encoded = model.encode(x)
        parts = combined_loss(model(x, steps, encoded=encoded), y, alpha, max_lag)
        totals["loss"] += parts.total.item() * share
        totals["mse"] += parts.mse.item() * share
        totals["per_component"] = totals["per_component"] + parts.per_component.cpu() * share
        if forced is not None:
            settings = forced[0]
            pred = model(
                x,
                steps,
                target=y,
                teacher_forcing=settings.teacher_forcing,
                generator=generator,
                encoded=encoded,
            )
            loss = combined_loss(
                pred, y, settings.alpha, settings.max_lag, settings.component_weights
            )
            forced_total += loss.total.item() * x.shape[0] / count
    return totals, forced_total


def _admitted(order: torch.Tensor, fraction: float, batch_size: int) -> torch.Tensor:
    if fraction >= 1.0:
        return order
    keep = min(len(order), max(batch_size, math.ceil(fraction * len(order))))
    return order[:keep]


def check_resume(resume: Path, model_cfg: ModelConfig, device: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint to resume from (any kind `open_checkpoint` takes).

    Args:
        resume: a checkpoint folder, state file, best_model_combined.pth or export.
        model_cfg: the model this run asks for.
        device: where the tensors go.

    Returns:
        The checkpoint's state.

    Raises:
        InputError: another model config made it.
        CheckpointError: it cannot be read, or its weights do not fit its own config.
    """
    state = open_checkpoint(resume, map_location=device)
    saved = state.get("model_config")
    if saved != model_cfg.to_dict():
        raise InputError(
            f"checkpoint {resume}: made by a different model ({saved}); this run asks for "
            f"{model_cfg.to_dict()}. Pass the same --hidden/--layers/--cell, or start afresh"
        )
    return state


def _restore(
    resume: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_cfg: ModelConfig,
    device: str,
) -> dict[str, Any]:
    state = check_resume(resume, model_cfg, device)
    model.load_state_dict(state["model"])
    if "optimizer" in state:  # an export has none: AdamW starts afresh
        optimizer.load_state_dict(state["optimizer"])
    if "rng" in state:
        set_rng_state(state["rng"])
    return state


def _train_epoch(
    model: Seq2Seq,
    optimizer: torch.optim.Optimizer,
    windows: Windows,
    batches: Sequence[torch.Tensor],
    plan: Plan,
    epoch: int,
    steps_per_epoch: int,
) -> tuple[float, float, float]:
    """One pass over `batches` (index tensors into the train windows); the plan sets lr before
    every step (`steps_per_epoch` counts all windows, so a curriculum keeps the lr schedule).
    Returns the mean (total, mse, temporal) training loss over the admitted windows."""
    settings = plan.values_at(epoch, 0, steps_per_epoch)
    out_len = windows.targets.shape[1]
    params = list(model.parameters())
    model.train()
    sums, count = torch.zeros(3, dtype=torch.float64), 0
    for step, index in enumerate(batches):
        lr = plan.lr_at(epoch, step, steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = windows.inputs[index], windows.targets[index]
        pred = model(
            x, out_len, target=y, teacher_forcing=settings.teacher_forcing, noise=settings.noise
        )
        parts = combined_loss(pred, y, settings.alpha, settings.max_lag, settings.component_weights)
        optimizer.zero_grad(set_to_none=True)
        parts.total.backward()
        nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        sums += torch.stack(
            [parts.total.detach(), parts.mse.detach(), parts.temporal.detach()]
        ).double().cpu() * len(index)
        count += len(index)
    train_loss, mse, temporal = (sums / max(count, 1)).tolist()
    return train_loss, mse, temporal


def train(
    plan: Plan,
    data: Dataset,
    model_cfg: ModelConfig,
    config: TrainConfig = TrainConfig(),
    *,
    resume: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Run `plan` from epoch 1 (or from the checkpoint `resume`) to its end.

    Args:
        plan: the plan; `values_at(epoch, step)` sets every knob.
        data: windows, inputs (N, input_len, C) and targets (N, output_len, C), z-scored.
        model_cfg: the model; its `components` must equal C.
        config: seed, batch size, ranking objective, threads, device.
        resume: a checkpoint directory (or state.pt) to continue from.
        callbacks: in order, each epoch: `on_validation_end` (monitors add metrics), at a phase
            boundary `on_phase_end` (a rule may change the plan from the next epoch on, before
            the state is reported), `on_epoch_end(metrics, state)` (the caller saves or reports),
            `should_stop`.

    Returns:
        The model, every epoch's metrics, and the final plan.

    Raises:
        InputError: the model's component count differs from the data's, or `resume` was made
            by another model config (CheckpointError for an unreadable one).
        DivergedError: the training or validation loss became NaN or infinite, or exploded
            (`DivergenceMonitor`: over 1e6 x its first epoch's value).
    """
    if model_cfg.components != len(data.components):
        raise InputError(
            f"model config has {model_cfg.components} components, the data has {len(data.components)} "
            f"({', '.join(data.components)})"
        )
    torch.set_num_threads(config.threads)
    seed_everything(config.seed)
    device = config.device
    data = data.to(device)
    model = Seq2Seq(model_cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.lr_at(1))
    history: list[dict[str, float]] = []
    start_epoch = 1
    if resume is not None:
        state = _restore(Path(resume), model, optimizer, model_cfg, device)
        history = [dict(row) for row in state["history"]]
        start_epoch = int(state["epoch"]) + 1
    for callback in callbacks:
        callback.on_train_start(history)
    divergence = DivergenceMonitor()
    divergence.start_from(history)

    train_windows = data.train
    order = torch.argsort(train_windows.difficulty.cpu(), stable=True)
    steps_per_epoch = math.ceil(len(train_windows) / config.batch_size)

    def snapshot(epoch: int) -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": get_rng_state(),
            "epoch": epoch,
            "plan": plan.to_dict(),
            "model_config": model_cfg.to_dict(),
            "data_config": data.config.to_dict(),
            "train_config": config.to_dict(),
            "data_fingerprint": data.fingerprint,
            # the z-score statistics and component names, so later data is read as trained on
            "normalisation": data.normalisation.to_dict(),
            "history": history,
        }

    end = plan.total_epochs
    if history and any(callback.should_stop(start_epoch - 1) for callback in callbacks):
        end = start_epoch - 1  # resumed where a callback stops it (--stop-after): no epoch more
    for epoch in range(start_epoch, end + 1):
        began = time.perf_counter()
        settings = plan.values_at(epoch, 0, steps_per_epoch)
        for group in optimizer.param_groups:
            group["weight_decay"] = settings.weight_decay
        admitted = _admitted(order, settings.curriculum, config.batch_size)
        batches = admitted[torch.randperm(len(admitted))].to(device).split(config.batch_size)
        train_loss, mse, temporal = _train_epoch(
            model, optimizer, train_windows, batches, plan, epoch, steps_per_epoch
        )
        if reason := divergence.check(TRAIN_LOSS, train_loss):
            raise DivergedError(epoch, train_loss, None, reason)

        free, val_loss = _validate(
            model,
            data.val,
            config.rank_alpha,
            config.rank_max_lag,
            config.eval_batch_size,
            forced=(settings, config.seed),
        )
        metrics: dict[str, float] = {
            EPOCH: epoch,
            "phase": settings.phase,
            TRAIN_LOSS: train_loss,
            VAL_LOSS: val_loss,
            VAL_FREE_LOSS: free["loss"],
            VAL_FREE_MSE: free["mse"],
            "mse": mse,
            "temporal": temporal,
            **{f"val_c{i}": float(v) for i, v in enumerate(free["per_component"])},
            "lr": plan.lr_at(epoch, 0, steps_per_epoch),
            "teacher_forcing": settings.teacher_forcing,
            "alpha": settings.alpha,
            "max_lag": settings.max_lag,
            "weight_decay": settings.weight_decay,
            "noise": settings.noise,
            "grad_clip": settings.grad_clip,
            "curriculum": settings.curriculum,
            "train_windows": len(admitted),
        }
        if reason := divergence.check(VAL_FREE_LOSS, metrics[VAL_FREE_LOSS]):
            raise DivergedError(epoch, metrics[VAL_FREE_LOSS], None, reason)
        for callback in callbacks:
            metrics.update(callback.on_validation_end(metrics))
        metrics["seconds"] = time.perf_counter() - began
        history.append(metrics)

        is_boundary = epoch in plan.phase_ends
        changed = None
        for callback in callbacks if is_boundary else ():
            changed = callback.on_phase_end(epoch, history, plan) or changed
            plan = changed or plan
        metrics["plan_changed"] = float(changed is not None)
        due = is_boundary or bool(config.checkpoint_every and epoch % config.checkpoint_every == 0)
        ended = EpochState(epoch, plan, history, due, partial(snapshot, epoch))
        for callback in callbacks:
            callback.on_epoch_end(metrics, ended)
        if any(callback.should_stop(epoch) for callback in callbacks):
            break
    return TrainResult(model=model, history=history, plan=plan)

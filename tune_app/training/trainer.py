"""The epoch loop. No Ray here: Tune (or the CLI) passes a `report(metrics, checkpoint)` callable.

Before every optimizer step the plan sets the learning rate; every epoch it sets weight decay,
teacher forcing, noise, gradient clipping, alpha, max_lag, component weights and the curriculum.
`val_free_loss` (free-running, under a fixed reference objective) is the number to rank on.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tune_app.errors import DivergedError, InputError
from tune_app.plan.plan import Plan
from tune_app.training.checkpoint import (
    atomic_write_bytes,
    code_fingerprint,
    get_rng_state,
    load_state,
    package_versions,
    save_checkpoint,
    set_rng_state,
)
from tune_app.training.data import Dataset, Windows
from tune_app.training.loss import combined_loss
from tune_app.training.model import ModelConfig, Seq2Seq
from tune_app.training.monitors import GapMonitor, PlateauMonitor

__all__ = ["Report", "TrainConfig", "TrainResult", "evaluate_free", "train"]

Report = Callable[[dict[str, float], Path | None], None]
# at a phase boundary: (epoch, history, plan) -> the plan from the next epoch on, or None
BoundaryRule = Callable[[int, list[dict[str, float]], Plan], Plan | None]
METRICS_FILE = "metrics.parquet"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch_size: int = 64
    checkpoint_every: int = 0  # extra checkpoints every N epochs; phase boundaries always
    rank_alpha: float = 0.6  # the fixed reference objective for val_free_loss (the seed's final)
    rank_max_lag: int = 20
    plateau_epochs: int = 30
    threads: int = 1  # fixed, so a run gives the same numbers in any process
    device: str = "cpu"
    eval_batch_size: int = 2048

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


@dataclass
class TrainResult:
    model: Seq2Seq
    history: list[dict[str, float]] = field(default_factory=list)
    last_checkpoint: Path | None = None


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@torch.no_grad()
def evaluate_free(
    model: Seq2Seq, windows: Windows, alpha: float, max_lag: int, batch_size: int = 2048
) -> dict[str, Any]:
    """Free-running combined loss, MSE and per-component losses over every window."""
    model.eval()
    totals: dict[str, Any] = {"loss": 0.0, "mse": 0.0, "per_component": 0.0}
    count = len(windows)
    steps = windows.targets.shape[1]
    for lo in range(0, count, batch_size):
        x, y = windows.inputs[lo : lo + batch_size], windows.targets[lo : lo + batch_size]
        parts = combined_loss(model(x, steps), y, alpha, max_lag)
        share = x.shape[0] / count
        totals["loss"] += parts.total.item() * share
        totals["mse"] += parts.mse.item() * share
        totals["per_component"] = totals["per_component"] + parts.per_component.cpu() * share
    return totals


@torch.no_grad()
def _evaluate_forced(
    model: Seq2Seq, windows: Windows, settings: Any, seed: int, batch_size: int
) -> float:
    """The training objective on val windows, same teacher forcing (fixed draws), no noise."""
    model.eval()
    generator = torch.Generator(device=windows.inputs.device).manual_seed(seed + 1)
    total, count, steps = 0.0, len(windows), windows.targets.shape[1]
    for lo in range(0, count, batch_size):
        x, y = windows.inputs[lo : lo + batch_size], windows.targets[lo : lo + batch_size]
        pred = model(
            x, steps, target=y, teacher_forcing=settings.teacher_forcing, generator=generator
        )
        loss = combined_loss(pred, y, settings.alpha, settings.max_lag, settings.component_weights)
        total += loss.total.item() * x.shape[0] / count
    return total


def _admitted(order: torch.Tensor, fraction: float, batch_size: int) -> torch.Tensor:
    if fraction >= 1.0:
        return order
    keep = min(len(order), max(batch_size, math.ceil(fraction * len(order))))
    return order[:keep]


def check_resume(resume: Path, model_cfg: ModelConfig, device: str = "cpu") -> dict[str, Any]:
    """Load a checkpoint to resume from; refuses one that another model config made."""
    state = load_state(resume, map_location=device)
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
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    return state


def write_metrics(out_dir: Path, history: list[dict[str, float]]) -> None:
    frame = pd.DataFrame(history)
    atomic_write_bytes(out_dir / METRICS_FILE, frame.to_parquet(index=False))


def train(
    plan: Plan,
    data: Dataset,
    model_cfg: ModelConfig,
    config: TrainConfig = TrainConfig(),
    *,
    out_dir: Path,
    resume: Path | None = None,
    report: Report | None = None,
    stop_after: int | None = None,
    best_file: Path | None = None,
    on_boundary: BoundaryRule | None = None,
    meta_extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Run `plan` from epoch 1 (or from `resume`) to its end, or to `stop_after` epochs.

    Checkpoints go to `out_dir/checkpoints/epoch_NNNNN` at every phase boundary (and every
    `checkpoint_every` epochs); `best_file`, if given, holds the full state of the epoch with the
    best `val_free_loss` so far (the seed's `best_model_combined.pth`). `on_boundary` may change
    the plan from the next epoch on at each phase boundary, before that boundary's checkpoint
    records it (see rules.py); `meta_extra` is added to every checkpoint's meta.json.
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
    start_epoch, last_checkpoint = 1, None
    if resume is not None:
        state = _restore(Path(resume), model, optimizer, model_cfg, device)
        history = [dict(row) for row in state["history"]]
        start_epoch, last_checkpoint = int(state["epoch"]) + 1, Path(resume)
    plateau, gap = PlateauMonitor(config.plateau_epochs), GapMonitor()
    for row in history:
        plateau.update(row)
        gap.update(row)

    train_windows = data.train
    order = torch.argsort(train_windows.difficulty.cpu(), stable=True)
    steps_per_epoch = math.ceil(len(train_windows) / config.batch_size)
    out_len = train_windows.targets.shape[1]
    params = list(model.parameters())
    end_epoch = plan.total_epochs if stop_after is None else min(plan.total_epochs, stop_after)
    checkpoint_epochs = set(plan.phase_ends)

    def snapshot(epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": get_rng_state(),
            "epoch": epoch,
            "plan": plan.to_dict(),
            "model_config": model_cfg.to_dict(),
            "data_config": data.config.to_dict(),
            "train_config": config.to_dict(),
            "history": history,
        }
        meta = {
            "epoch": epoch,
            "phase": history[-1]["phase"],
            "metrics": history[-1],
            "data_fingerprint": data.fingerprint,
            "components": list(data.components),
            "plan": plan.to_dict(),
            "code_fingerprint": code_fingerprint(),
            "versions": package_versions(),
            **(meta_extra or {}),
        }
        return state, meta

    for epoch in range(start_epoch, end_epoch + 1):
        began = time.perf_counter()
        settings = plan.values_at(epoch, 0, steps_per_epoch)
        for group in optimizer.param_groups:
            group["weight_decay"] = settings.weight_decay
        admitted = _admitted(order, settings.curriculum, config.batch_size)
        batches = admitted[torch.randperm(len(admitted))].to(device).split(config.batch_size)
        model.train()
        sums = torch.zeros(3, dtype=torch.float64)
        for step, index in enumerate(batches):
            lr = plan.lr_at(epoch, step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = train_windows.inputs[index], train_windows.targets[index]
            pred = model(
                x, out_len, target=y, teacher_forcing=settings.teacher_forcing, noise=settings.noise
            )
            parts = combined_loss(
                pred, y, settings.alpha, settings.max_lag, settings.component_weights
            )
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            sums += torch.stack(
                [parts.total.detach(), parts.mse.detach(), parts.temporal.detach()]
            ).double().cpu() * len(index)
        train_loss, mse, temporal = (sums / len(admitted)).tolist()
        if not math.isfinite(train_loss):
            raise DivergedError(
                epoch, train_loss, str(last_checkpoint) if last_checkpoint else None
            )

        free = evaluate_free(
            model, data.val, config.rank_alpha, config.rank_max_lag, config.eval_batch_size
        )
        val_loss = _evaluate_forced(model, data.val, settings, config.seed, config.eval_batch_size)
        metrics: dict[str, float] = {
            "epoch": epoch,
            "phase": settings.phase,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_free_loss": free["loss"],
            "val_free_mse": free["mse"],
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
        if not math.isfinite(metrics["val_free_loss"]):
            raise DivergedError(
                epoch, metrics["val_free_loss"], str(last_checkpoint) if last_checkpoint else None
            )
        metrics.update(gap.update(metrics))
        metrics.update(plateau.update(metrics))
        metrics["seconds"] = time.perf_counter() - began
        history.append(metrics)

        is_boundary = epoch in checkpoint_epochs
        changed = (
            on_boundary(epoch, history, plan) if is_boundary and on_boundary is not None else None
        )
        if changed is not None:
            plan = changed
        metrics["plan_changed"] = float(changed is not None)
        checkpoint = None
        if is_boundary or (config.checkpoint_every and epoch % config.checkpoint_every == 0):
            state, meta = snapshot(epoch)
            checkpoint = save_checkpoint(
                Path(out_dir) / "checkpoints" / f"epoch_{epoch:05d}", state, meta
            )
            last_checkpoint = checkpoint
            write_metrics(Path(out_dir), history)
        if best_file is not None and metrics["epochs_since_best"] == 0:
            state, meta = snapshot(epoch)
            buffer = io.BytesIO()
            torch.save({"format": 1, **state}, buffer)
            atomic_write_bytes(Path(best_file), buffer.getvalue())
        if report is not None:
            report(metrics, checkpoint)
    if history:
        write_metrics(Path(out_dir), history)
    return TrainResult(model=model, history=history, last_checkpoint=last_checkpoint)

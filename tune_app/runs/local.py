"""In-process jobs (no Ray): `tune-app train` and the seed-compatible `tune-app continue`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from tune_app.errors import InputError
from tune_app.plan.plan import Plan
from tune_app.plan.schedules import Cosine
from tune_app.runs.reporting import ProgressPrinter, TensorBoardWriter, fan_out
from tune_app.runs.spec import RunSpec
from tune_app.training.checkpoint import atomic_write_bytes, load_state, package_versions
from tune_app.training.model import ModelConfig
from tune_app.training.trainer import Report, TrainResult, check_resume, train

__all__ = ["continue_plan", "run_continue", "run_train", "write_run_config"]


def write_run_config(
    out_dir: Path, spec: RunSpec, fingerprint: str, extra: dict[str, Any] | None = None
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        **spec.to_dict(),
        "data_fingerprint": fingerprint,
        "versions": package_versions(),
        **(extra or {}),
    }
    atomic_write_bytes(out_dir / "config.json", json.dumps(config, indent=2).encode())
    atomic_write_bytes(out_dir / "plan.yaml", spec.plan.to_yaml().encode())


def _reporters(
    out_dir: Path, total: int, progress_every: int, quiet: bool
) -> tuple[Report, TensorBoardWriter]:
    board = TensorBoardWriter(out_dir / "tensorboard")
    reporters: list[Report] = [board] if quiet else [ProgressPrinter(total, progress_every), board]
    return fan_out(reporters), board


def run_train(
    spec: RunSpec,
    out_dir: Path,
    *,
    progress_every: int = 1,
    quiet: bool = False,
    resume: Path | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train `spec` in this process. Validates data first; writes nothing on bad input."""
    table = spec.open_table()
    dataset = spec.dataset(table)
    if resume is not None:
        check_resume(resume, spec.model)  # a bad checkpoint fails here, before anything is written
    write_run_config(out_dir, spec, table.fingerprint)
    report, board = _reporters(out_dir, spec.plan.total_epochs, progress_every, quiet)
    try:
        return train(
            spec.plan,
            dataset,
            spec.model,
            spec.train,
            out_dir=out_dir,
            resume=resume,
            report=report,
            stop_after=stop_after,
            best_file=out_dir / "best_model.pth",
        )
    finally:
        board.close()


def continue_plan(plan: Plan, done: int, epochs: int, start_lr: float, min_lr: float) -> Plan:
    """The plan for `continue_training.py --epochs N --start_lr X --min_lr Y` after `done` epochs:
    the first `done` epochs as they were, then one phase of N epochs whose lr cosines from X to Y
    and whose other knobs are those of the plan's phase that holds epoch done + 1 (the last phase
    once past the plan's end)."""
    if epochs < 1:
        raise InputError(f"--epochs: must be >= 1 (got {epochs})")
    if not (start_lr > 0 and min_lr > 0):
        raise InputError(f"--start_lr/--min_lr: must be > 0 (got {start_lr}, {min_lr})")
    kept, total = [], 0
    for phase in plan.phases:
        if total >= done:
            break
        kept.append(replace(phase, epochs=min(phase.epochs, done - total)))
        total += kept[-1].epochs
    if total < done:  # the checkpoint went past its plan: stretch the last phase
        kept[-1] = replace(kept[-1], epochs=kept[-1].epochs + done - total)
    source = (
        plan.phases[plan.phase_index(done + 1)]
        if done + 1 <= plan.total_epochs
        else plan.phases[-1]
    )
    extra = replace(source, epochs=epochs, lr=Cosine(start_lr, min_lr))
    return Plan(phases=(*kept, extra), name=f"{plan.name}+continue{done + 1}-{done + epochs}")


def run_continue(
    model_path: Path,
    epochs: int,
    start_lr: float,
    min_lr: float,
    output_dir: Path,
    data_path: str | None,
    *,
    progress_every: int = 10,
) -> TrainResult:
    """Resume `model_path` for `epochs` more epochs and write `best_model_combined.pth` in `output_dir`."""
    state = load_state(model_path)
    done = int(state["epoch"])
    spec = RunSpec.from_dict(
        {
            "plan": state["plan"],
            "model": state["model_config"],
            "data": state["data_config"],
            "train": state["train_config"],
            "data_path": data_path,
        }
    )
    spec = spec.with_plan(continue_plan(spec.plan, done, epochs, start_lr, min_lr))
    table = spec.open_table()
    dataset = spec.dataset(table)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_run_config(output_dir, spec, table.fingerprint, {"continued_from": str(model_path)})
    report, board = _reporters(output_dir, spec.plan.total_epochs, progress_every, quiet=False)
    try:
        return train(
            spec.plan,
            dataset,
            ModelConfig.from_dict(state["model_config"]),
            spec.train,
            out_dir=output_dir,
            resume=Path(model_path),
            report=report,
            best_file=output_dir / "best_model_combined.pth",
        )
    finally:
        board.close()

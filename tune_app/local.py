"""In-process jobs (no Ray): `tune-app train` and the seed-compatible `tune-app continue`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tune_app.checkpoint import atomic_write_bytes, package_versions, read_meta
from tune_app.errors import InputError, Interrupted
from tune_app.model import ModelConfig
from tune_app.plan import Plan
from tune_app.reporting import ProgressPrinter, TensorBoardWriter, fan_out
from tune_app.resumable import fresh_optimizer, open_checkpoint
from tune_app.schedules import Cosine
from tune_app.spec import RunSpec
from tune_app.trainer import Report, TrainResult, check_resume, train

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


def _last_checkpoint(out_dir: Path) -> tuple[Path, int] | None:
    """The newest checkpoint a run in `out_dir` wrote, and its epoch."""
    found = sorted((out_dir / "checkpoints").glob("epoch_*"))
    return (found[-1], int(read_meta(found[-1])["epoch"])) if found else None


def _nothing_saved(out_dir: Path) -> Interrupted:
    return Interrupted(
        note=f"no checkpoint in {out_dir} yet (the first comes at the end of the first phase, "
        "or pass --checkpoint-every N); run the command again"
    )


def _reporters(
    out_dir: Path, total: int, progress_every: int, quiet: bool
) -> tuple[Report, Callable[[], None]]:
    """The run's reporters as one, and what closes them at the end."""
    board = TensorBoardWriter(out_dir / "tensorboard")
    if quiet:
        return board, board.close
    progress = ProgressPrinter(total, progress_every)

    def close() -> None:
        progress.close()
        board.close()

    return fan_out([progress, board]), close


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
        # a bad checkpoint fails here, before anything is written
        fresh = fresh_optimizer(check_resume(resume, spec.model), resume)
        if fresh:
            print(fresh)
    write_run_config(out_dir, spec, table.fingerprint)
    report, close = _reporters(out_dir, spec.plan.total_epochs, progress_every, quiet)
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
    except KeyboardInterrupt:
        last = _last_checkpoint(out_dir)
        if last is None:
            raise _nothing_saved(out_dir) from None
        raise Interrupted({"--resume": str(last[0]), "--out": str(out_dir)}) from None
    finally:
        close()


def continue_plan(plan: Plan, done: int, epochs: int, start_lr: float, min_lr: float) -> Plan:
    """The plan for `continue_training.py --epochs N --start_lr X --min_lr Y` after `done` epochs:
    the first `done` epochs as they were, then one phase of N epochs whose lr cosines from X to Y
    and whose other knobs are those of the plan's phase that holds epoch done + 1 (the last phase
    once past the plan's end)."""
    if epochs < 1:
        raise InputError(f"--epochs: must be >= 1 (got {epochs})")
    if not (start_lr > 0 and min_lr > 0):
        raise InputError(f"--start_lr/--min_lr: must be > 0 (got {start_lr}, {min_lr})")
    if min_lr > start_lr:
        # refused, not run: the cosine goes from --start_lr down to --min_lr, so a larger
        # --min_lr would make the lr rise over the continuation, which is never what it is for
        raise InputError(
            f"--min_lr {min_lr:g} is above --start_lr {start_lr:g}: the lr falls from --start_lr "
            f"to --min_lr along a cosine, so it would rise; pass --min_lr <= --start_lr "
            f"(swap them?), or equal values for a constant lr"
        )
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
    state = open_checkpoint(model_path)  # refused here, before anything is written
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
    lr = (
        f"lr falling from {start_lr:g} to {min_lr:g} (cosine)"
        if start_lr > min_lr
        else f"lr constant at {start_lr:g}"
    )
    fresh = "; fresh optimizer (an export holds weights only)" if "optimizer" not in state else ""
    print(
        f"continuing {model_path} after epoch {done}: epochs {done + 1}-{done + epochs}, {lr}{fresh}"
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_run_config(output_dir, spec, table.fingerprint, {"continued_from": str(model_path)})
    report, close = _reporters(output_dir, spec.plan.total_epochs, progress_every, quiet=False)
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
    except KeyboardInterrupt:
        last = _last_checkpoint(output_dir)
        if last is None:
            raise _nothing_saved(output_dir) from None
        path, epoch = last  # go on from there: the rest of the epochs, the cosine from its lr
        if epoch >= spec.plan.total_epochs:
            raise Interrupted(note=f"every epoch had run; the result is in {output_dir}") from None
        flags: dict[str, str | None] = {
            "--model_path": str(path),
            "--epochs": str(spec.plan.total_epochs - epoch),
            "--start_lr": f"{spec.plan.lr_at(epoch + 1):.6g}",
        }
        raise Interrupted(flags) from None
    finally:
        close()

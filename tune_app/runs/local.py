"""In-process jobs (no Ray): `tune-app train` and the seed-compatible `tune-app continue`."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tune_app.errors import CheckpointError, DivergedError, InputError, Interrupted, RunFailed
from tune_app.plan.plan import Plan
from tune_app.plan.rules import MonitorRules
from tune_app.plan.schedules import Cosine
from tune_app.runs.records import METRICS_FILE, CheckpointMeta
from tune_app.runs.reporting import ProgressPrinter, TensorBoardWriter
from tune_app.runs.spec import RunSpec
from tune_app.runs.storage import locate
from tune_app.runs.writers import BestStateWriter, CheckpointWriter, history_parquet
from tune_app.training.checkpoint import atomic_write_bytes, load_state, package_versions
from tune_app.training.data import Dataset, Normalisation, SeriesTable, check_recorded_data
from tune_app.training.model import Seq2Seq
from tune_app.training.monitors import BoundaryRule, Callback, StopAfter, monitors
from tune_app.training.resumable import fresh_optimizer, open_checkpoint
from tune_app.training.trainer import check_resume, train

__all__ = [
    "LocalResult",
    "continue_plan",
    "run_continue",
    "run_train",
    "train_locally",
    "write_run_config",
]


@dataclass
class LocalResult:
    """An in-process run: the model, every epoch's metrics, the newest checkpoint written."""

    model: Seq2Seq
    history: list[dict[str, float]]
    last_checkpoint: Path | None


def train_locally(
    spec: RunSpec,
    dataset: Dataset,
    out_dir: Path,
    *,
    resume: Path | None = None,
    extra: Sequence[Callback] = (),
    rules: MonitorRules | None = None,
) -> LocalResult:
    """Train `spec` on `dataset` in this process, saving under `out_dir`: checkpoints at phase
    boundaries (`out_dir/checkpoints/epoch_NNNNN`) and `metrics.parquet`; `extra` callbacks
    (progress, TensorBoard, a best-state file, a stop) run after the saving one.

    Raises:
        DivergedError: naming the last good checkpoint written here.
    """
    writer = CheckpointWriter(out_dir, dataset, spec.data_path)
    rule = [BoundaryRule(rules)] if rules is not None and rules.active else []
    callbacks = [*monitors(spec.train.plateau_epochs), *rule, writer, *extra]
    try:
        result = train(
            spec.plan, dataset, spec.model, spec.train, resume=resume, callbacks=callbacks
        )
    except DivergedError as exc:
        last = writer.last or resume
        raise DivergedError(exc.epoch, exc.loss, str(last) if last else None, exc.reason) from None
    if result.history:
        atomic_write_bytes(out_dir / METRICS_FILE, history_parquet(result.history))
    return LocalResult(result.model, result.history, writer.last or resume)


def write_run_config(
    out_dir: Path, spec: RunSpec, dataset: Dataset, extra: dict[str, Any] | None = None
) -> None:
    """`config.json` (the spec, the data's fingerprint, its component names and the z-score
    statistics the run trains with) and `plan.yaml` of an in-process run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {
        **spec.to_dict(),
        "data_fingerprint": dataset.fingerprint,
        "components": list(dataset.components),
        "normalisation": dataset.normalisation.to_dict(),
        "versions": package_versions(),
        **(extra or {}),
    }
    atomic_write_bytes(out_dir / "config.json", json.dumps(config, indent=2).encode())
    atomic_write_bytes(out_dir / "plan.yaml", spec.plan.to_yaml().encode())


def check_same_data(
    state: dict[str, Any], checkpoint: Path, table: SeriesTable, data: str, allow: bool
) -> None:
    """Refuse to resume `checkpoint` on data other than its own (by fingerprint, an older
    float32 one too), unless `allow`."""
    recorded = state.get("data_fingerprint")
    if allow or recorded is None or table.matches(recorded):
        return
    fingerprint = table.fingerprint
    own = state.get("data_path") or "the built-in synthetic data"
    raise InputError(
        f"checkpoint {checkpoint} was trained on {own} (fingerprint {recorded[:12]}), "
        f"but --data is {data} (fingerprint {fingerprint[:12]}); pass its own data file, "
        "or --allow-other-data to train on this one anyway"
    )


def run_train(
    spec: RunSpec,
    out_dir: Path,
    *,
    progress_every: int = 1,
    quiet: bool = False,
    resume: Path | None = None,
    stop_after: int | None = None,
    allow_other_data: bool = False,
) -> LocalResult:
    """Train `spec` in this process. Validates data first; writes nothing on bad input.
    A resumed run z-scores its data with the checkpoint's statistics (an older checkpoint
    without them: the data's own, as then)."""
    table = spec.open_table()
    normalisation = None
    if resume is not None:  # a bad checkpoint fails here, before anything is written
        state = check_resume(resume, spec.model)
        data = spec.data_path or "the built-in synthetic data"
        check_same_data(state, resume, table, data, allow_other_data)
        if fresh := fresh_optimizer(state, resume):
            print(fresh)
        normalisation = Normalisation.from_dict(state.get("normalisation"))
        if normalisation is None:
            print(_older(resume))
    dataset = spec.dataset(table, normalisation)
    write_run_config(out_dir, spec, dataset)
    try:
        return _run(
            spec, dataset, out_dir, resume, "best_model.pth", progress_every, quiet, stop_after
        )
    except KeyboardInterrupt:
        last = _last_checkpoint(out_dir)
        if last is None:
            raise _nothing_saved(out_dir) from None
        flags: dict[str, str | None] | None = {"--resume": str(last[0]), "--out": str(out_dir)}
        end = min(stop_after or spec.plan.total_epochs, spec.plan.total_epochs)
        if last[1] < end:
            raise Interrupted(flags) from None
        # after the last epoch's checkpoint, while the run wrote its final files
        raise Interrupted(
            flags,
            note=f"every epoch had run (epoch {last[1]} is in {last[0]}), but {out_dir} may "
            f"lack its {METRICS_FILE}; resuming trains no epoch more and writes it",
        ) from None
    except BrokenPipeError:
        raise  # stdout's reader left (`| head`): `main` ends quietly, no disk to blame
    except OSError as exc:  # a full disk, a folder made read-only or removed while it ran
        last = _last_checkpoint(out_dir)
        flags = None
        if last is not None:
            flags = {"--resume": str(last[0]), "--out": str(out_dir)}
        raise _write_failed(exc, out_dir, last, flags) from None


def _write_failed(
    exc: OSError,
    out_dir: Path,
    last: tuple[Path, int] | None,
    flags: dict[str, str | None] | None,
) -> RunFailed:
    """One line on what could not be written and what the run keeps: its last good checkpoint,
    and `flags` that resume from it (the CLI prints them as a command)."""
    what = _real_name(exc.filename or out_dir)
    why = exc.strerror or str(exc)
    if last is None or not flags:
        return RunFailed(
            f"could not write {what}: {why}; no checkpoint was written yet: free space (or fix "
            "the permissions) and run the command again"
        )
    return RunFailed(
        f"could not write {what}: {why}; the last good checkpoint is {last[0]} (epoch "
        f"{last[1]}): free space (or fix the permissions) first",
        flags,
    )


def _real_name(path: str | Path) -> str:
    """A path as the user will find it: `DIR/.NAME.tmp-1a2b3c4d/x` (an atomic write's
    temporary name) as `DIR/NAME/x`."""
    return re.sub(r"(^|/)\.([^/]+)\.tmp-[0-9a-f]{8}(?=/|$)", r"\1\2", str(path))


def _older(checkpoint: Path) -> str:
    """The note for a checkpoint from before checkpoints stored their statistics."""
    return (
        f"note: {checkpoint} does not record its training statistics (an older checkpoint): "
        "the data is z-scored with its own train split, as it was then"
    )


def _last_checkpoint(out_dir: Path) -> tuple[Path, int] | None:
    """The newest checkpoint a run in `out_dir` wrote, and its epoch."""
    found = sorted((out_dir / "checkpoints").glob("epoch_*"))
    return (found[-1], CheckpointMeta.read(locate(found[-1])).epoch) if found else None


def _last_saved(out_dir: Path, best_name: str) -> tuple[Path, int] | None:
    """The newest whole state a run in `out_dir` saved, and its epoch: its newest checkpoint
    folder, or its best-state file (`best_name`, written atomically at every new best epoch)
    where that is newer; `continue` writes a checkpoint folder only at its end."""
    found = [last] if (last := _last_checkpoint(out_dir)) else []
    best = out_dir / best_name
    # an unreadable one is no state to go on from
    with contextlib.suppress(CheckpointError, KeyError, TypeError, ValueError, OSError):
        if best.is_file():
            found.append((best, int(load_state(best)["epoch"])))
    return max(found, key=lambda item: item[1]) if found else None


def _nothing_saved(out_dir: Path, first: str = "") -> Interrupted:
    first = first or "at the end of the first phase, or pass --checkpoint-every N"
    return Interrupted(
        note=f"no checkpoint in {out_dir} yet (the first comes {first}); run the command again"
    )


def _run(
    spec: RunSpec,
    dataset: Dataset,
    out_dir: Path,
    resume: Path | None,
    best_name: str,
    progress_every: int,
    quiet: bool = False,
    stop_after: int | None = None,
) -> LocalResult:
    board = TensorBoardWriter(out_dir / "tensorboard")
    printer = [] if quiet else [ProgressPrinter(spec.plan.total_epochs, progress_every)]
    extra = [
        *printer,
        board,
        BestStateWriter(out_dir / best_name, spec.data_path),
        StopAfter(stop_after),
    ]
    try:
        return train_locally(spec, dataset, out_dir, resume=resume, extra=extra)
    finally:
        for bar in printer:
            bar.close()
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
    allow_other_data: bool = False,
) -> LocalResult:
    """Resume `model_path` for `epochs` more epochs and write `best_model_combined.pth` in
    `output_dir`. Without `data_path`, the checkpoint's own data file; a file whose fingerprint
    differs from the checkpoint's is refused unless `allow_other_data`."""
    state = open_checkpoint(model_path)  # refused here, before anything is written
    done = int(state["epoch"])
    if data_path is None:
        if "data_path" not in state:
            raise InputError(
                f"--model_path {model_path}: this checkpoint does not record its data file; "
                "pass --data"
            )
        data_path = state["data_path"]
        check_recorded_data(data_path, f"checkpoint {model_path}")
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
    normalisation = Normalisation.from_dict(state.get("normalisation"))
    if normalisation is not None:  # the checkpoint's columns, by name, in its order
        spec = replace(spec, data=replace(spec.data, components=normalisation.components))
    else:
        print(_older(model_path))
    table = spec.open_table()
    check_same_data(state, model_path, table, data_path or "synthetic", allow_other_data)
    dataset = spec.dataset(table, normalisation)
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
    write_run_config(output_dir, spec, dataset, {"continued_from": str(model_path)})
    try:
        return _run(
            spec, dataset, output_dir, model_path, "best_model_combined.pth", progress_every
        )
    except KeyboardInterrupt:
        last = _last_saved(output_dir, "best_model_combined.pth")
        if last is None:
            raise _nothing_saved(output_dir, "at the end of the continuation") from None
        if last[1] >= spec.plan.total_epochs:
            raise Interrupted(note=f"every epoch had run; the result is in {output_dir}") from None
        raise Interrupted(_continue_flags(spec, last)) from None
    except BrokenPipeError:
        raise  # stdout's reader left (`| head`): `main` ends quietly, no disk to blame
    except OSError as exc:  # a full disk, a folder made read-only or removed while it ran
        last = _last_saved(output_dir, "best_model_combined.pth")
        flags = _continue_flags(spec, last) if last and last[1] < spec.plan.total_epochs else None
        raise _write_failed(exc, output_dir, last, flags) from None


def _continue_flags(spec: RunSpec, last: tuple[Path, int]) -> dict[str, str | None]:
    """The `continue` flags that go on from checkpoint `last` (path, epoch): the rest of the
    epochs, the cosine from the lr it had reached."""
    path, epoch = last
    return {
        "--model_path": str(path),
        "--epochs": str(spec.plan.total_epochs - epoch),
        "--start_lr": f"{spec.plan.lr_at(epoch + 1):.6g}",
    }

"""The function trainable: trial config -> the trainer, one `tune.report` per epoch.

Data reaches workers through the object store (`tune.with_parameters`), so trials run on any node
of a cluster. Checkpoints are the trainer's phase-boundary directories, handed to Tune, which
persists them to the run's storage (local or s3://). On a restart (failure, PBT exploit, resume)
the trial continues from `tune.get_checkpoint()`, and a changed modification in its config is
applied to the plan from the next epoch on, so each checkpoint's plan is its exact lineage.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from pyarrow.fs import FileType
from ray import tune

from tune_app.errors import CheckpointError, DivergedError
from tune_app.plan.effects import explored_plan
from tune_app.plan.plan import Plan
from tune_app.plan.rules import MonitorRules
from tune_app.runs.records import (
    CAPACITY_KEY,
    INTERVAL_LOSSES,
    MEMBER_KEY,
    METRICS_FILE,
    ROUNDS_KEY,
    SPEC_KEY,
    CheckpointMeta,
    SearchMember,
    read_rounds,
    scan_checkpoints,
)
from tune_app.runs.spec import RunSpec, with_capacity
from tune_app.runs.storage import Location, locate
from tune_app.runs.writers import CheckpointWriter
from tune_app.training.checkpoint import load_state
from tune_app.training.data import Dataset, SeriesTable
from tune_app.training.metrics import DIVERGED, EPOCH, VAL_FREE_LOSS
from tune_app.training.monitors import BoundaryRule, Callback, EpochState, monitors
from tune_app.training.trainer import train
from tune_app.tune import _ray_internals
from tune_app.tune.progress import CPU_SHARE, CpuShare

__all__ = [
    "CAPACITY_KEY",
    "INTERVAL_LOSSES",
    "MEMBER_KEY",
    "ROUNDS_KEY",
    "SPEC_KEY",
    "run_trial",
    "trainable_for",
    "trial_plan",
]


def trial_plan(
    base: Plan,
    config: dict[str, Any],
    checkpoint_meta: CheckpointMeta | None,
    components: Sequence[str],
) -> Plan:
    """The plan a trial trains on: the checkpoint's plan (its lineage so far, or `base` at the
    start) with the config's modification in force from the next epoch, if the config's
    parameters differ from those the checkpoint was trained with (a PBT exploit/explore).
    A plain restart (failure, pause, resume) keeps the checkpoint's plan, rule changes included."""
    done = checkpoint_meta.epoch if checkpoint_meta else 0
    plan = Plan.from_dict(checkpoint_meta.plan) if checkpoint_meta else base
    member = SearchMember.of_config(config)
    params = member.params if member else None
    if done >= plan.total_epochs or not params:
        return plan
    if checkpoint_meta and checkpoint_meta.params == params:
        return plan
    return explored_plan(plan, params, done + 1, components)


def _trial_folder() -> Location | None:
    """This trial's folder in the run's storage (local or remote), or None outside Tune."""
    try:
        storage = _ray_internals.trial_storage()
    except Exception:
        return None
    return Location(storage.storage_filesystem, storage.trial_fs_path, storage.trial_fs_path)


def _run_folder(trial_folder: Location) -> Location:
    return Location(
        trial_folder.fs, trial_folder.path.rsplit("/", 1)[0], trial_folder.uri.rsplit("/", 1)[0]
    )


def _round_pending(epoch: int, every: int, total: int) -> bool:
    """Whether a search member resuming at `epoch` must first join that boundary's PBT round:
    the epoch is a round boundary and the run's journal has no round there yet (the driver
    stopped while members waited)."""
    folder = _trial_folder()
    if not every or not 0 < epoch < total or epoch % every or folder is None:
        return False
    try:
        rounds = read_rounds(_run_folder(folder))
    except (OSError, ValueError, TypeError):  # unreadable: the member goes on, as after a round
        return False
    return all(event.epoch != epoch for event in rounds)


def _same_member(meta: CheckpointMeta, member: SearchMember | None) -> bool:
    """Whether a checkpoint was trained by this member as it is now: same parameters and the
    same number of exploits (a member exploited twice may draw equal parameters again)."""
    params = (member.params if member else None) or None
    return meta.params == params and meta.version == (member.version if member else 0)


def _checkpoints_in(
    folder: Location | None, keep: Callable[[CheckpointMeta], bool]
) -> list[tuple[int, Location]]:
    """The checkpoint folders in `folder` whose meta passes `keep`, oldest epoch first."""
    try:
        found = scan_checkpoints(folder) if folder is not None else []
    except OSError:
        return []
    return [(meta.epoch, child) for child, meta in found if keep(meta)]


def _usable(location: Location | Path, workdir: Path, name: str) -> Path | None:
    """`location` downloaded and loaded once: the path if it is a sound checkpoint, else None."""
    local = location if isinstance(location, Path) else location.download(workdir / name)
    try:
        load_state(local)
    except CheckpointError as exc:
        print(f"tune_app: skipping checkpoint {location}: {exc}", flush=True)
        return None
    return local


def _donor_checkpoint(member: SearchMember, workdir: Path) -> Path:
    """The checkpoint a PBT exploit copied: in the donor's folder (`member.restore`), the one of
    the round's epoch that the donor wrote as the member it was then (its version)."""
    restore = member.restore or {}
    folder = _trial_folder()
    if folder is None:
        raise CheckpointError("a PBT exploit can only be restored inside a Tune trial")
    donor = _run_folder(folder).join(str(restore["trial_dir"]))
    epoch, version = int(restore["epoch"]), int(restore.get("version", 0))
    found = _checkpoints_in(donor, lambda meta: (meta.epoch, meta.version) == (epoch, version))
    for _epoch, location in reversed(found):
        if path := _usable(location, workdir, "donor"):
            return path
    raise CheckpointError(
        f"no sound checkpoint of epoch {epoch} in {donor.uri}, which a PBT exploit copies; "
        "was the donor's folder moved or damaged?"
    )


def choose_checkpoint(
    given: Path | None, member: SearchMember | None, workdir: Path
) -> Path | None:
    """Where a (re)started trial continues from: the newest sound checkpoint it trained as the
    member it is now (its own storage folder, or the one Tune hands over), else the donor's
    checkpoint of its last exploit, else nothing (a fresh start).

    Newest, not the handed-over one: a killed driver can lose the record of the last
    checkpoints a trial persisted, and restoring an older one would retrain epochs. A damaged
    checkpoint is skipped for the next older one."""
    own = _checkpoints_in(_trial_folder(), lambda meta: _same_member(meta, member))
    candidates: list[tuple[int, Location | Path, str]] = [
        (epoch, location, f"own_{epoch}") for epoch, location in own
    ]
    if given is not None:
        with contextlib.suppress(CheckpointError):
            meta = CheckpointMeta.read(locate(str(given)))
            if _same_member(meta, member):
                candidates.append((meta.epoch, given, "given"))
    for _epoch, location, name in sorted(candidates, key=lambda c: -c[0]):
        if path := _usable(location, workdir, name):
            return path
    if member is not None and member.restore:
        return _donor_checkpoint(member, workdir)
    return None


def _never_overwrite_a_checkpoint() -> None:
    """Tune numbers checkpoint folders by its own count, which a killed driver can set back;
    a trial resumed from a newer checkpoint of its own would then write over it. Move the
    index past folders that exist. (Tune keeps the index in its private StorageContext.)"""
    storage = _ray_internals.trial_storage()
    fs = storage.storage_filesystem
    while fs.get_file_info(_ray_internals.next_checkpoint_path(storage)).type != FileType.NotFound:
        _ray_internals.skip_checkpoint_index(storage)


def _interval_losses(history: Sequence[dict[str, Any]], epoch: int, every: int) -> list[float]:
    """A search member's val_free_loss over the epochs since the previous round (`every`
    epochs, fewer at the start), up to `epoch`, oldest first: what the selection rule reads
    (`tune/selection.py`). From the member's own history, so it holds the donor's epochs after
    an exploit (the weights' own past) and survives a restart or --resume."""
    return [
        float(row[VAL_FREE_LOSS]) for row in history if epoch - every < int(row[EPOCH]) <= epoch
    ]


class _TuneReport(Callback):
    """One `tune.report` per epoch; at a checkpoint epoch, the checkpoint the writer just made
    goes with it (Tune persists it to the run's storage, then the local copy is removed). At a
    round's epoch of a search (every `every` epochs), the interval's losses go with it.

    On the CPU, each report carries `cpu_share`: the CPU seconds this worker process got per
    second of wall time (1.0: a whole core all the time), over its last 30 s or more, since the
    trial started until then (`CpuShare`). The progress table reads it to tell a machine too
    busy for the trials from a slow plan (tune/progress.py)."""

    def __init__(self, writer: CheckpointWriter, on_cpu: bool, every: int = 0) -> None:
        self.writer, self.on_cpu, self.every = writer, on_cpu, every
        self.share = CpuShare(time.process_time(), time.perf_counter())

    def _with_cpu_share(self, metrics: dict[str, float]) -> dict[str, float]:
        share = self.share.add(time.process_time(), time.perf_counter())
        return {**metrics, CPU_SHARE: round(share, 3)} if self.on_cpu else metrics

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        metrics = self._with_cpu_share(metrics)
        if self.every and state.epoch % self.every == 0:
            losses = _interval_losses(state.history, state.epoch, self.every)
            metrics = {**metrics, INTERVAL_LOSSES: losses}  # type: ignore[dict-item]
        if not state.checkpoint_due or self.writer.last is None:
            tune.report(metrics)
            return
        _never_overwrite_a_checkpoint()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(self.writer.last)))
        shutil.rmtree(self.writer.last, ignore_errors=True)  # persisted to storage by now


def _device(spec: RunSpec) -> str:
    gpus = tune.get_context().get_trial_resources().required_resources.get("GPU", 0)
    return "cuda" if gpus and torch.cuda.is_available() else "cpu"


_DATASETS: dict[str, Dataset] = {}  # per worker process: members taking turns share windows


def _cached_dataset(spec: RunSpec, table: SeriesTable) -> Dataset:
    """The windows for `spec`, built once per worker process and data (fingerprint + config)."""
    key = json.dumps([table.fingerprint, spec.data.to_dict(), spec.model.components])
    if key not in _DATASETS:
        _DATASETS.clear()  # one data set at a time: a capacity trial may change input_len
        _DATASETS[key] = spec.dataset(table)
    return _DATASETS[key]


def run_trial(config: dict[str, Any], table: SeriesTable) -> None:
    spec = with_capacity(RunSpec.from_dict(config[SPEC_KEY]), config.get(CAPACITY_KEY))
    spec = replace(spec, train=replace(spec.train, device=_device(spec)))
    dataset = _cached_dataset(spec, table)
    workdir = Path(tempfile.mkdtemp(prefix="tune_app_trial_"))
    try:
        member = SearchMember.of_config(config)
        params = (member.params if member else None) or None
        checkpoint = tune.get_checkpoint()
        given = (
            Path(checkpoint.to_directory(str(workdir / "resume")))
            if checkpoint is not None
            else None
        )
        resume = choose_checkpoint(given, member, workdir)
        meta = CheckpointMeta.read(locate(str(resume))) if resume is not None else None
        plan = trial_plan(spec.plan, config, meta, table.components)
        every = int((config.get(ROUNDS_KEY) or {}).get("every", 0))
        if (
            resume is not None
            and meta is not None
            and _round_pending(meta.epoch, every, plan.total_epochs)
        ):
            # the scheduler pauses it there; the copy becomes Tune's latest checkpoint
            _never_overwrite_a_checkpoint()
            rows = pd.read_parquet(resume / METRICS_FILE, columns=[EPOCH, VAL_FREE_LOSS])
            losses = _interval_losses(rows.to_dict("records"), meta.epoch, every)  # type: ignore[arg-type]
            tune.report(
                {**meta.metrics, "rejoined_round": 1.0, INTERVAL_LOSSES: losses},
                checkpoint=tune.Checkpoint.from_directory(str(resume)),
            )
        rules = MonitorRules.from_params(params or {}, spec.train.plateau_epochs)
        version = member.version if member else 0
        writer = CheckpointWriter(workdir / "out", dataset, spec.data_path, params, version)
        callbacks = [
            *monitors(spec.train.plateau_epochs),
            *([BoundaryRule(rules)] if rules.active else []),
            writer,
            _TuneReport(writer, on_cpu=spec.train.device == "cpu", every=every),
        ]
        try:
            train(plan, dataset, spec.model, spec.train, resume=resume, callbacks=callbacks)
        except DivergedError as exc:
            # a diverged trial ends here, reported as such; PBT never picks it as a donor
            print(f"tune_app: {exc}", flush=True)
            tune.report({EPOCH: exc.epoch, DIVERGED: 1.0, VAL_FREE_LOSS: math.inf, "done": True})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def trainable_for(table: SeriesTable, cpus: float, gpus: float) -> Callable[..., Any]:
    """The trainable with the data in the object store and the per-trial resources."""
    return tune.with_resources(
        tune.with_parameters(run_trial, table=table), {"cpu": cpus, "gpu": gpus}
    )

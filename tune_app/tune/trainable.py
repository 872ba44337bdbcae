"""The function trainable: trial config -> the trainer, one `tune.report` per epoch.

Data reaches workers through the object store (`tune.with_parameters`), so trials run on any node
of a cluster. Checkpoints are the trainer's phase-boundary directories, handed to Tune, which
persists them to the run's storage (local or s3://). On a restart (failure, PBT exploit, resume)
the trial continues from `tune.get_checkpoint()`, and a changed modification in its config is
applied to the plan from the next epoch on, so each checkpoint's plan is its exact lineage.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from pyarrow.fs import FileType
from ray import tune

from tune_app.errors import CheckpointError, DivergedError
from tune_app.plan.modifications import modification_from_params
from tune_app.plan.plan import Plan
from tune_app.plan.rules import MonitorRules
from tune_app.runs.records import (
    CAPACITY_KEY,
    MEMBER_KEY,
    SPEC_KEY,
    CheckpointMeta,
    SearchMember,
    scan_checkpoints,
)
from tune_app.runs.spec import RunSpec
from tune_app.runs.storage import Location, locate
from tune_app.runs.writers import CheckpointWriter
from tune_app.training.checkpoint import load_state
from tune_app.training.data import SeriesTable
from tune_app.training.model import ModelConfig
from tune_app.training.monitors import BoundaryRule, Callback, EpochState, monitors
from tune_app.training.trainer import train
from tune_app.tune import _ray_internals

__all__ = [
    "CAPACITY_KEY",
    "MEMBER_KEY",
    "SPEC_KEY",
    "run_trial",
    "trainable_for",
    "trial_plan",
    "with_capacity",
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
    phase_epochs = plan.phases[plan.phase_index(done + 1)].epochs
    wanted = modification_from_params(params, done + 1, phase_epochs, components)
    current = plan.active_modification(done + 1)
    if current is None:
        return plan if wanted.is_identity else plan.apply(wanted)
    return plan if replace(current, from_epoch=done + 1) == wanted else plan.apply(wanted)


def with_capacity(spec: RunSpec, capacity: dict[str, Any] | None) -> RunSpec:
    """The spec with a capacity search's choices: model fields, and the input window length."""
    if not capacity:
        return spec
    model_fields = {k: v for k, v in capacity.items() if k in ModelConfig.__dataclass_fields__}
    data_fields = {k: v for k, v in capacity.items() if k in ("input_len", "output_len")}
    model = ModelConfig.from_dict({**spec.model.to_dict(), **model_fields})
    return replace(spec, model=model, data=replace(spec.data, **data_fields))


def _own_checkpoints(params: dict[str, Any] | None) -> list[tuple[int, Location]]:
    """This trial's checkpoints in its own storage folder that were trained with `params`,
    oldest first. (After an exploit, the older ones carry other parameters and are skipped.)"""
    try:
        storage = _ray_internals.trial_storage()
        folder = Location(storage.storage_filesystem, storage.trial_fs_path, storage.trial_fs_path)
        found = scan_checkpoints(folder)
    except OSError:
        return []
    return [(meta.epoch, child) for child, meta in found if meta.params == params]


def _usable(location: Location | Path, workdir: Path, name: str) -> Path | None:
    """`location` downloaded and loaded once: the path if it is a sound checkpoint, else None."""
    local = location if isinstance(location, Path) else location.download(workdir / name)
    try:
        load_state(local)
    except CheckpointError as exc:
        print(f"tune_app: skipping checkpoint {location}: {exc}", flush=True)
        return None
    return local


def choose_checkpoint(
    given: Path | None, params: dict[str, Any] | None, workdir: Path
) -> Path | None:
    """Where a (re)started trial continues from.

    - A newer checkpoint of its own than the one Tune hands over: a killed driver can lose the
      record of the last checkpoints a trial persisted; restoring the older one would retrain.
    - If the handed-over checkpoint is truncated or unsafe, the newest sound one before it.
    After an exploit the handed-over checkpoint is the donor's (other params): used as it is."""
    meta = None
    if given is not None:
        with contextlib.suppress(CheckpointError):
            meta = CheckpointMeta.read(locate(str(given)))
    if meta is not None and meta.params != params:
        return given if _usable(given, workdir, "given") else None  # type: ignore[arg-type]
    epoch = meta.epoch if meta else 0
    own = _own_checkpoints(params)
    for own_epoch, location in reversed(own):
        if own_epoch > epoch and (path := _usable(location, workdir, f"own_{own_epoch}")):
            return path
    if given is not None and _usable(given, workdir, "given"):
        return given
    for own_epoch, location in reversed(own):
        if own_epoch < epoch and (path := _usable(location, workdir, f"own_{own_epoch}")):
            return path
    return None


def _never_overwrite_a_checkpoint() -> None:
    """Tune numbers checkpoint folders by its own count, which a killed driver can set back;
    a trial resumed from a newer checkpoint of its own would then write over it. Move the
    index past folders that exist. (Tune keeps the index in its private StorageContext.)"""
    storage = _ray_internals.trial_storage()
    fs = storage.storage_filesystem
    while fs.get_file_info(_ray_internals.next_checkpoint_path(storage)).type != FileType.NotFound:
        _ray_internals.skip_checkpoint_index(storage)


class _TuneReport(Callback):
    """One `tune.report` per epoch; at a checkpoint epoch, the checkpoint the writer just made
    goes with it (Tune persists it to the run's storage, then the local copy is removed)."""

    def __init__(self, writer: CheckpointWriter) -> None:
        self.writer = writer

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        if not state.checkpoint_due or self.writer.last is None:
            tune.report(metrics)
            return
        _never_overwrite_a_checkpoint()
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(self.writer.last)))
        shutil.rmtree(self.writer.last, ignore_errors=True)  # persisted to storage by now


def _device(spec: RunSpec) -> str:
    gpus = tune.get_context().get_trial_resources().required_resources.get("GPU", 0)
    return "cuda" if gpus and torch.cuda.is_available() else "cpu"


def run_trial(config: dict[str, Any], table: SeriesTable) -> None:
    spec = with_capacity(RunSpec.from_dict(config[SPEC_KEY]), config.get(CAPACITY_KEY))
    spec = replace(spec, train=replace(spec.train, device=_device(spec)))
    dataset = spec.dataset(table)
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
        resume = choose_checkpoint(given, params, workdir)
        meta = CheckpointMeta.read(locate(str(resume))) if resume is not None else None
        plan = trial_plan(spec.plan, config, meta, table.components)
        rules = MonitorRules.from_params(params or {}, spec.train.plateau_epochs)
        writer = CheckpointWriter(workdir / "out", dataset, spec.data_path, params)
        callbacks = [
            *monitors(spec.train.plateau_epochs),
            *([BoundaryRule(rules)] if rules.active else []),
            writer,
            _TuneReport(writer),
        ]
        try:
            train(plan, dataset, spec.model, spec.train, resume=resume, callbacks=callbacks)
        except DivergedError as exc:
            # a diverged trial ends here, reported as such; PBT never picks it as a donor
            tune.report(
                {"epoch": exc.epoch, "diverged": 1.0, "val_free_loss": math.inf, "done": True}
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def trainable_for(table: SeriesTable, cpus: float, gpus: float) -> Callable[..., Any]:
    """The trainable with the data in the object store and the per-trial resources."""
    return tune.with_resources(
        tune.with_parameters(run_trial, table=table), {"cpu": cpus, "gpu": gpus}
    )

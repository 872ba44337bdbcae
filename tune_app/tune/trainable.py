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
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from pyarrow.fs import FileType
from ray import tune

from tune_app.checkpoint import META_FILE, CheckpointError, load_state, read_meta
from tune_app.data import Dataset, SeriesTable
from tune_app.errors import DivergedError
from tune_app.model import ModelConfig
from tune_app.modification import modification_from_params
from tune_app.plan import Plan
from tune_app.rules import MonitorRules
from tune_app.spec import RunSpec
from tune_app.storage import JOURNAL, Location
from tune_app.trainer import train

__all__ = [
    "CAPACITY_KEY",
    "MEMBER_KEY",
    "ROUNDS_KEY",
    "SPEC_KEY",
    "run_trial",
    "trainable_for",
    "trial_plan",
    "with_capacity",
]

SPEC_KEY = "spec"
CAPACITY_KEY = "capacity"  # a capacity search's {hidden, layers, dropout, cell, input_len}
MEMBER_KEY = "member"  # a search's {"index", "control", "params", "version", "restore"}
ROUNDS_KEY = "rounds"  # a search's {"every": epochs between PBT rounds}


def trial_plan(
    base: Plan,
    config: dict[str, Any],
    checkpoint_meta: dict[str, Any] | None,
    components: Sequence[str],
) -> Plan:
    """The plan a trial trains on: the checkpoint's plan (its lineage so far, or `base` at the
    start) with the config's modification in force from the next epoch, if the config's
    parameters differ from those the checkpoint was trained with (a PBT exploit/explore).
    A plain restart (failure, pause, resume) keeps the checkpoint's plan, rule changes included."""
    done = int(checkpoint_meta["epoch"]) if checkpoint_meta else 0
    plan = Plan.from_dict(checkpoint_meta["plan"]) if checkpoint_meta else base
    params = config.get(MEMBER_KEY, {}).get("params")
    if done >= plan.total_epochs or not params:
        return plan
    if checkpoint_meta and checkpoint_meta.get("params") == params:
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


def _trial_folder() -> Location | None:
    """This trial's folder in the run's storage (local or remote), or None outside Tune."""
    try:
        storage = tune.get_context().get_storage()
        return Location(storage.storage_filesystem, storage.trial_fs_path, storage.trial_fs_path)
    except Exception:
        return None


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
    journal = _run_folder(folder).join(JOURNAL)
    try:
        text = journal.read_text() if journal.exists() else ""
    except OSError:
        return False
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "round" and int(event.get("epoch", -1)) == epoch:
                return False
    return True


def _same_member(meta: dict[str, Any], member: dict[str, Any]) -> bool:
    """Whether a checkpoint was trained by this member as it is now: same parameters and the
    same number of exploits (a member exploited twice may draw equal parameters again)."""
    return meta.get("params") == (member.get("params") or None) and int(
        meta.get("version", 0)
    ) == int(member.get("version", 0))


def _checkpoints_in(
    folder: Location | None, keep: Callable[[dict[str, Any]], bool]
) -> list[tuple[int, Location]]:
    """The checkpoint folders in `folder` whose meta passes `keep`, oldest epoch first;
    half-written ones (no readable meta.json) are never mistaken for checkpoints."""
    try:
        children = folder.children() if folder is not None else []
    except OSError:
        return []
    found = []
    for child in children:
        meta_file = child.join(META_FILE)
        if not child.name.startswith("checkpoint_") or not meta_file.exists():
            continue
        try:
            meta = json.loads(meta_file.read_text())
        except ValueError:
            continue
        if keep(meta):
            found.append((int(meta["epoch"]), child))
    return sorted(found, key=lambda item: (item[0], item[1].name))


def _own_checkpoints(member: dict[str, Any]) -> list[tuple[int, Location]]:
    """This trial's checkpoints in its own storage folder trained as the member is now,
    oldest first. (After an exploit, the older ones belong to its former self.)"""
    return _checkpoints_in(_trial_folder(), lambda meta: _same_member(meta, member))


def _usable(location: Location | Path, workdir: Path, name: str) -> Path | None:
    """`location` downloaded and loaded once: the path if it is a sound checkpoint, else None."""
    local = location if isinstance(location, Path) else location.download(workdir / name)
    try:
        load_state(local)
    except CheckpointError as exc:
        print(f"tune_app: skipping checkpoint {location}: {exc}", flush=True)
        return None
    return local


def _donor_checkpoint(member: dict[str, Any], workdir: Path) -> Path:
    """The checkpoint a PBT exploit copied: in the donor's folder (`member.restore`), the one of
    the round's epoch that the donor wrote as the member it was then (its version)."""
    restore = member["restore"]
    folder = _trial_folder()
    if folder is None:
        raise CheckpointError("a PBT exploit can only be restored inside a Tune trial")
    donor = _run_folder(folder).join(str(restore["trial_dir"]))
    wanted = {"epoch": int(restore["epoch"]), "version": int(restore.get("version", 0))}
    for _epoch, location in reversed(_checkpoints_in(donor, lambda meta: _at(meta) == wanted)):
        if path := _usable(location, workdir, "donor"):
            return path
    raise CheckpointError(
        f"no sound checkpoint of epoch {wanted['epoch']} in {donor.uri}, which a PBT exploit "
        "copies; was the donor's folder moved or damaged?"
    )


def _at(meta: dict[str, Any]) -> dict[str, int]:
    return {"epoch": int(meta["epoch"]), "version": int(meta.get("version", 0))}


def choose_checkpoint(given: Path | None, member: dict[str, Any], workdir: Path) -> Path | None:
    """Where a (re)started trial continues from: the newest sound checkpoint it trained as the
    member it is now (its own storage folder, or the one Tune hands over), else the donor's
    checkpoint of its last exploit, else nothing (a fresh start).

    Newest, not the handed-over one: a killed driver can lose the record of the last
    checkpoints a trial persisted, and restoring an older one would retrain epochs. A damaged
    checkpoint is skipped for the next older one."""
    candidates: list[tuple[int, Location | Path, str]] = [
        (epoch, location, f"own_{epoch}") for epoch, location in _own_checkpoints(member)
    ]
    if given is not None:
        with contextlib.suppress(CheckpointError):
            meta = read_meta(given)
            if _same_member(meta, member):
                candidates.append((int(meta["epoch"]), given, "given"))
    for _epoch, location, name in sorted(candidates, key=lambda c: -c[0]):
        if path := _usable(location, workdir, name):
            return path
    if member.get("restore"):
        return _donor_checkpoint(member, workdir)
    return None


def _never_overwrite_a_checkpoint() -> None:
    """Tune numbers checkpoint folders by its own count, which a killed driver can set back;
    a trial resumed from a newer checkpoint of its own would then write over it. Move the
    index past folders that exist. (Tune keeps the index in its private StorageContext.)"""
    try:
        storage = tune.get_context().get_storage()

        def next_folder() -> str:  # Tune adds 1 to the index, then writes there
            name = storage._make_checkpoint_dir_name(storage.current_checkpoint_index + 1)
            return f"{storage.trial_fs_path}/{name}"

        while storage.storage_filesystem.get_file_info(next_folder()).type != FileType.NotFound:
            storage.current_checkpoint_index += 1
    except AttributeError:
        pass


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
        member = dict(config.get(MEMBER_KEY) or {})
        params = member.get("params") or None
        checkpoint = tune.get_checkpoint()
        given = (
            Path(checkpoint.to_directory(str(workdir / "resume")))
            if checkpoint is not None
            else None
        )
        resume = choose_checkpoint(given, member, workdir)
        meta = read_meta(resume) if resume is not None else None
        plan = trial_plan(spec.plan, config, meta, table.components)
        every = int((config.get(ROUNDS_KEY) or {}).get("every", 0))
        if meta is not None and _round_pending(int(meta["epoch"]), every, plan.total_epochs):
            # the scheduler pauses it there; the copy becomes Tune's latest (donor) checkpoint
            _never_overwrite_a_checkpoint()
            tune.report(
                {**meta["metrics"], "rejoined_round": 1.0},
                checkpoint=tune.Checkpoint.from_directory(str(resume)),
            )

        def report(metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
            if checkpoint_dir is None:
                tune.report(metrics)
                return
            _never_overwrite_a_checkpoint()
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # persisted to storage by now

        rules = MonitorRules.from_params(params or {}, spec.train.plateau_epochs)
        try:
            train(
                plan,
                dataset,
                spec.model,
                spec.train,
                out_dir=workdir / "out",
                resume=resume,
                report=report,
                on_boundary=rules if rules.active else None,
                meta_extra={"params": params, "version": int(member.get("version", 0))}
                if params
                else None,
            )
        except DivergedError as exc:
            # a diverged trial ends here, reported as such; PBT never picks it as a donor
            print(f"tune_app: {exc}", flush=True)
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

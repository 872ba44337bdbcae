"""Reading runs back without Ray: trials, their metrics and checkpoints, the best one, its export.

A run directory (local or s3://) holds `tune_app_run.json` and one folder per trial with Tune's
`params.json` and `checkpoint_*/` (our state.pt, meta.json and metrics.parquet). Every table,
summary and plot takes a trial's per-epoch metrics from one source: the history in its newest
checkpoint (`metrics.parquet`), complete even where Tune's `result.json` was cut short by an
exploit. Tune's `result.json` is read only for the trial's id and whether it diverged.
Works on a run that is still going: it reads what has been written so far.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from tune_app.errors import CheckpointError, InputError
from tune_app.plan.effects import changes_training
from tune_app.plan.plan import Plan
from tune_app.runs.records import (
    BEST_MODEL_CONFIG,
    EXPORT_CONFIG,
    EXPORT_LINEAGE,
    EXPORT_PLAN,
    EXPORT_WEIGHTS,
    METRICS_FILE,
    TRIAL_PARAMS,
    CheckpointMeta,
    ExportConfig,
    JournalEvent,
    Normalisation,
    RoundEvent,
    RunManifest,
    SearchMember,
    read_journal,
    read_rounds,
    scan_checkpoints,
)
from tune_app.runs.spec import RunSpec, with_capacity
from tune_app.runs.staging import staged_folder
from tune_app.runs.storage import Location, locate
from tune_app.training.checkpoint import (
    STATE_FILE,
    atomic_write_bytes,
    load_state,
    package_versions,
)
from tune_app.training.metrics import (
    BEST_VAL_FREE_LOSS,
    DIVERGED,
    EPOCH,
    RANK_METRIC,
    RANK_MODE,
    VAL_FREE_LOSS,
)

__all__ = [
    "Run",
    "TrialRecord",
    "export_best",
    "export_capacity",
    "export_checkpoint",
    "find_best",
    "open_run",
    "replay_spec",
    "trial_table",
]


@dataclass
class CheckpointRecord:
    location: Location
    meta: CheckpointMeta

    @property
    def epoch(self) -> int:
        return self.meta.epoch


@dataclass
class TrialRecord:
    trial_id: str
    location: Location
    params: dict[str, Any]  # the trial's Tune config
    diverged: bool = False
    checkpoints: list[CheckpointRecord] = field(default_factory=list)

    @property
    def member(self) -> SearchMember | None:
        return SearchMember.of_config(self.params)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """One row per epoch behind the trial's newest checkpoint (its donors' epochs included)."""
        for checkpoint in reversed(self.checkpoints):
            file = checkpoint.location.join(METRICS_FILE)
            try:
                return pd.read_parquet(io.BytesIO(file.read_bytes()))
            except (OSError, ValueError):
                continue  # half-written or from an older format: the one before
        return pd.DataFrame()


@dataclass
class Run:
    location: Location
    manifest: RunManifest
    trials: list[TrialRecord]

    @property
    def kind(self) -> str:
        return self.manifest.kind

    def journal(self) -> list[JournalEvent]:
        """The exploits, each with `effective`: whether its explored parameters train any
        differently from the donor's, on the donor's plan at that round (plan/effects.py)."""
        return [replace(e, effective=self._effective(e)) for e in read_journal(self.location)]

    def _effective(self, event: JournalEvent) -> bool | None:
        if not event.donor_params:
            return None  # an older journal: the donor's own parameters were not written
        donor = next((t for t in self.trials if t.trial_id == event.donor), None)
        found = [c for c in (donor.checkpoints if donor else []) if c.epoch == event.epoch]
        raw = found[-1].meta.plan if found else self.manifest.spec.get("plan")
        if not raw:
            return None
        patience = int((self.manifest.spec.get("train") or {}).get("plateau_epochs", 30))
        return changes_training(
            Plan.from_dict(raw),
            event.donor_params,
            event.new,
            event.epoch + 1,
            self.manifest.components,
            patience,
        )

    def rounds(self) -> list[RoundEvent]:
        """The journal's PBT rounds: epoch, ranking, exploits, members left alone and why."""
        return read_rounds(self.location)


def _trial_status(location: Location) -> tuple[str, bool]:
    """The trial's id and whether it diverged, from Tune's result.json (never its metrics)."""
    file = location.join("result.json")
    rows = []
    if file.exists():
        for line in file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                break  # a line still being written
    trial_id = str(rows[0]["trial_id"]) if rows else location.name
    return trial_id, any(row.get(DIVERGED) for row in rows)


def _read_trial(location: Location) -> TrialRecord | None:
    """A trial folder: Tune's params.json or at least one checkpoint. The driver syncs
    params.json into storage later than a worker persists its checkpoints, so after a killed
    driver or a full disk a trial may hold checkpoints and no params.json; it still counts."""
    params_file = location.join(TRIAL_PARAMS)
    checkpoints = [CheckpointRecord(child, meta) for child, meta in scan_checkpoints(location)]
    if not params_file.exists() and not checkpoints:
        return None
    trial_id, diverged = _trial_status(location)
    try:
        params = json.loads(params_file.read_text()) if params_file.exists() else {}
    except ValueError:
        params = {}  # cut short (a full disk, a killed driver): the trial's results still count
    return TrialRecord(trial_id, location, params, diverged, checkpoints)


def open_run(uri: str) -> Run:
    """Read a run. Raises InputError when `uri` is not a tune_app run."""
    location = locate(uri)
    if not location.is_dir():
        raise InputError(
            f"RUN {uri}: no such run directory; give the folder the run command made: its "
            "storage and name (by default results/NAME)"
        )
    manifest = RunManifest.read(location)
    trials = [
        t for t in (_read_trial(child) for child in location.children() if child.is_dir()) if t
    ]
    return Run(location, manifest, trials)


def find_best(
    run: Run, metric: str = RANK_METRIC, mode: str = RANK_MODE
) -> tuple[TrialRecord, CheckpointRecord]:
    """The trial and checkpoint with the best `metric` at a checkpoint."""
    if mode not in ("min", "max"):
        raise InputError(f"--mode {mode!r}: use min or max")
    best: tuple[float, TrialRecord, CheckpointRecord] | None = None
    sign = 1.0 if mode == "min" else -1.0
    for trial in run.trials:
        for checkpoint in trial.checkpoints:
            value = checkpoint.meta.metrics.get(metric)
            if value is None:
                raise InputError(
                    f"--metric {metric!r}: checkpoints do not record it; e.g. val_free_loss, val_free_mse"
                )
            if not math.isfinite(value):
                continue
            if best is None or sign * value < sign * best[0]:
                best = (value, trial, checkpoint)
    if best is None:
        state = (
            "no trial has reported yet"
            if not run.trials
            else "no trial has written a checkpoint yet"
        )
        raise InputError(f"RUN {run.location.uri}: {state}; checkpoints come at phase boundaries")
    return best[1], best[2]


def lineage(run: Run, trial: TrialRecord, checkpoint: CheckpointRecord) -> dict[str, Any]:
    """The chain of segments that produced a checkpoint, back to epoch 1: which trial trained
    which epochs under which modification, and why each segment began.

    The checkpoint's plan carries every modification of the chain (an exploiting trial inherits
    its donor's plan); the PBT journal says who the donor was at each exploit. A segment begins
    at each modification and at each exploit (an explore that changes no plan field, only a
    rule's switch, still copied another member's weights), for one of three reasons, its
    `cause`: "exploit" (the trial copied
    `copied_from`'s checkpoint at the epoch before and explored), "plan" (the run's own plan
    carries it) or "rule" (the trial's boundary rule, e.g. the gap rule, changed its own plan:
    the same trial trains on, nothing is copied). The first segment's cause is "start".
    A modification from after the checkpoint's epoch (a rule that fired at that very boundary)
    played no part in its weights and is left out."""
    plan = Plan.from_dict(checkpoint.meta.plan)
    journal = run.journal()
    planned = (run.manifest.spec.get("plan") or {}).get("modifications") or []
    segments: list[dict[str, Any]] = []
    owner, end = trial.trial_id, checkpoint.epoch
    while True:
        # where this segment began: the latest modification of the chain's plan, or the latest
        # exploit of the trial that owns these epochs (an explore may change no plan field:
        # only a rule's switch, or values clamped back to the donor's)
        start = max(
            [
                1,
                *(m.from_epoch for m in plan.modifications if 1 < m.from_epoch <= end),
                *(e.epoch + 1 for e in journal if e.trial == owner and e.epoch + 1 <= end),
            ]
        )
        mod = plan.active_modification(start)
        event = next((e for e in journal if e.trial == owner and e.epoch == start - 1), None)
        if start == 1:
            cause = "start"
        elif event is not None:
            cause = "exploit"
        elif mod is not None and mod.to_dict() in planned:
            cause = "plan"
        else:
            cause = "rule"
        segments.append(
            {
                "from_epoch": start,
                "to_epoch": end,
                "trial": owner,
                "modification": mod.to_dict() if mod else None,
                "cause": cause,
                "copied_from": event.donor if event else None,
                "event": event.to_dict() if event else None,
            }
        )
        if start == 1:
            break
        if event:
            owner = event.donor
        end = start - 1
    segments.reverse()
    return {
        "trial": trial.trial_id,
        "epoch": checkpoint.epoch,
        "root_trial": owner,
        "segments": segments,
    }


def export_best(
    run: Run, out: Path, metric: str = RANK_METRIC, mode: str = RANK_MODE
) -> ExportConfig:
    """Write best_model.pth, plan.yaml, config.json, lineage.json, metrics.parquet into `out`."""
    trial, checkpoint = find_best(run, metric, mode)
    return export_checkpoint(run, trial, checkpoint, out, metric)


def export_capacity(
    location: Location, spec: RunSpec, capacity: dict[str, Any] | None, metrics: dict[str, Any]
) -> Location:
    """Write a capacity run's `best_model_config.json`, which baseline and search take as
    --model-config: the best trial's model and input window, its best val_free_loss and id.

    Args:
        location: the capacity run's folder.
        spec: the run's spec, which the trial's choices change.
        capacity: the best trial's choices (its `CAPACITY_KEY` config; None: the spec's own).
        metrics: the best trial's last reported metrics.

    Returns:
        The file written.
    """
    chosen = with_capacity(spec, capacity)
    out = location.join(BEST_MODEL_CONFIG)
    out.write_bytes(
        json.dumps(
            {
                "model": chosen.model.to_dict(),
                "data": {"input_len": chosen.data.input_len},
                VAL_FREE_LOSS: metrics.get(BEST_VAL_FREE_LOSS),
                "trial": metrics.get("trial_id"),
            },
            indent=2,
        ).encode()
    )
    return out


def export_checkpoint(
    run: Run,
    trial: TrialRecord,
    checkpoint: CheckpointRecord,
    out: Path,
    metric: str = RANK_METRIC,
) -> ExportConfig:
    """Export one checkpoint of a run (see `export_best`), whole or not at all.

    Raises:
        CheckpointError: the checkpoint lost its state.pt.
        RunFailed: the disk was full or not writable; `out` was left as it was.
        Interrupted: Ctrl-C; `out` was left as it was.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = checkpoint.location.download(Path(tmp) / "checkpoint")
        if not (local / STATE_FILE).is_file():
            raise CheckpointError(
                f"RUN {run.location.uri}: its best checkpoint by {metric}, {checkpoint.location.uri} "
                f"(trial {trial.trial_id}, epoch {checkpoint.epoch}), has no {STATE_FILE} (cut short "
                f"or damaged); move that folder out of the run and run `tune-app best` again to "
                "export the next best"
            )
        state = load_state(local)
    buffer = io.BytesIO()
    torch.save(state["model"], buffer)
    plan = Plan.from_dict(state["plan"])
    meta = checkpoint.meta
    config = ExportConfig(
        run=run.location.uri,
        kind=run.kind,
        trial=trial.trial_id,
        checkpoint=checkpoint.location.uri,
        epoch=checkpoint.epoch,
        metric=metric,
        value=meta.metrics[metric],
        metrics=meta.metrics,
        model=state["model_config"],
        data=state["data_config"],
        train=state["train_config"],
        seed=state["train_config"]["seed"],
        data_fingerprint=meta.data_fingerprint,
        data_path=run.manifest.spec.get("data_path"),
        components=meta.components,
        code_fingerprint=meta.code_fingerprint,
        versions=package_versions(),
        replay=f"tune-app train --replay {out}",
        normalisation=Normalisation.from_dict(state.get("normalisation")) or meta.normalisation,
    )
    chain = json.dumps(lineage(run, trial, checkpoint), indent=2).encode()
    # all or nothing: a full disk or Ctrl-C leaves `out` as it was (runs/staging.py)
    with staged_folder(out, "the export") as staged:
        atomic_write_bytes(staged / EXPORT_WEIGHTS, buffer.getvalue())
        atomic_write_bytes(staged / EXPORT_PLAN, plan.to_yaml().encode())
        atomic_write_bytes(staged / EXPORT_CONFIG, config.to_json())
        atomic_write_bytes(staged / EXPORT_LINEAGE, chain)
        # every epoch behind these weights, from the checkpoint itself (donors' epochs
        # included): complete even where Tune's result.json was cut short
        history = pd.DataFrame(state["history"]).to_parquet(index=False)
        atomic_write_bytes(staged / METRICS_FILE, history)
    return config


def replay_spec(export_dir: Path) -> tuple[RunSpec, int]:
    """The RunSpec and epoch that replay an export of `tune-app best` in one sequential run."""
    config_file, plan_file = export_dir / EXPORT_CONFIG, export_dir / EXPORT_PLAN
    if not config_file.is_file() or not plan_file.is_file():
        raise InputError(
            f"--replay {export_dir}: not a `tune-app best` export (config.json and plan.yaml needed)"
        )
    config = ExportConfig.from_dict(json.loads(config_file.read_text()))
    plan = Plan.from_yaml(plan_file.read_text(), str(plan_file))
    spec = RunSpec.from_dict(
        {
            "plan": plan.to_dict(),
            "model": config.model,
            "data": config.data,
            "train": {**config.train, "device": "cpu"},
            "data_path": config.data_path,
        }
    )
    return spec, config.epoch


def trial_table(run: Run, metric: str = RANK_METRIC) -> list[dict[str, Any]]:
    """One row per trial: id, folder name (`member-02`, `trial-03`), whether it is the control,
    its best metric and epoch, its member's params; from each trial's checkpoint history (see
    the module docstring)."""
    rows = []
    for trial in run.trials:
        frame = trial.metrics
        member = trial.member
        best = frame[metric].min() if metric in frame and len(frame) else math.nan
        rows.append(
            {
                "trial": trial.trial_id,
                "folder": trial.location.name,
                "control": bool(member and member.control),
                "epochs": int(frame[EPOCH].max()) if EPOCH in frame and len(frame) else 0,
                f"best_{metric}": float(best),
                "diverged": trial.diverged,
                "params": member.params if member else {},
            }
        )
    return sorted(rows, key=lambda r: (math.isnan(r[f"best_{metric}"]), r[f"best_{metric}"]))

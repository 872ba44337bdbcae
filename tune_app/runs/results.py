"""Reading runs back without Ray: trials, their metrics and checkpoints, the best one, its export.

A run directory (local or s3://) holds `tune_app_run.json` and one folder per trial with Tune's
`params.json`, `result.json` (one line per epoch) and `checkpoint_*/` (our state.pt + meta.json).
Works on a run that is still going: it reads what has been written so far.
"""

from __future__ import annotations

import io
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from tune_app.errors import InputError
from tune_app.plan.plan import Plan
from tune_app.runs.spec import RunSpec
from tune_app.runs.storage import MANIFEST, Location, locate
from tune_app.training.checkpoint import META_FILE, atomic_write_bytes, load_state, package_versions

__all__ = [
    "Run",
    "TrialRecord",
    "export_best",
    "export_checkpoint",
    "find_best",
    "open_run",
    "replay_spec",
]

JOURNAL = "pbt_journal.jsonl"


@dataclass
class CheckpointRecord:
    location: Location
    meta: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.meta["epoch"])


@dataclass
class TrialRecord:
    trial_id: str
    location: Location
    params: dict[str, Any]
    rows: list[dict[str, Any]]
    checkpoints: list[CheckpointRecord] = field(default_factory=list)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per reported epoch: the scalar metrics (Tune's nested `config` left out)."""
        rows = [
            {k: v for k, v in row.items() if not isinstance(v, dict | list)} for row in self.rows
        ]
        return pd.DataFrame(rows)

    @property
    def diverged(self) -> bool:
        return any(row.get("diverged") for row in self.rows)


@dataclass
class Run:
    location: Location
    manifest: dict[str, Any]
    trials: list[TrialRecord]

    @property
    def kind(self) -> str:
        return str(self.manifest.get("kind", "unknown"))

    def journal(self) -> list[dict[str, Any]]:
        file = self.location.join(JOURNAL)
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def _read_rows(location: Location) -> list[dict[str, Any]]:
    file = location.join("result.json")
    if not file.exists():
        return []
    rows = []
    for line in file.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            break  # a line still being written
    return rows


def _read_trial(location: Location) -> TrialRecord | None:
    params_file = location.join("params.json")
    if not params_file.exists():
        return None
    rows = _read_rows(location)
    trial_id = str(rows[0]["trial_id"]) if rows else location.name
    checkpoints = []
    for child in location.children():
        if child.name.startswith("checkpoint_") and child.join(META_FILE).exists():
            try:
                meta = json.loads(child.join(META_FILE).read_text())
            except ValueError:
                continue  # half-written: never mistaken for a checkpoint
            checkpoints.append(CheckpointRecord(child, meta))
    checkpoints.sort(key=lambda c: c.epoch)
    try:
        params = json.loads(params_file.read_text())
    except ValueError:
        params = {}  # cut short (a full disk, a killed driver): the trial's results still count
    return TrialRecord(trial_id, location, params, rows, checkpoints)


def open_run(uri: str) -> Run:
    """Read a run. Raises InputError when `uri` is not a tune_app run."""
    location = locate(uri)
    if not location.is_dir():
        raise InputError(
            f"RUN {uri}: no such run directory; runs live under --storage (default results/)"
        )
    manifest_file = location.join(MANIFEST)
    if not manifest_file.exists():
        raise InputError(
            f"RUN {uri}: not a tune_app run (no {MANIFEST}); pass the folder a run command made"
        )
    manifest = json.loads(manifest_file.read_text())
    trials = [
        t for t in (_read_trial(child) for child in location.children() if child.is_dir()) if t
    ]
    return Run(location, manifest, trials)


def find_best(
    run: Run, metric: str = "val_free_loss", mode: str = "min"
) -> tuple[TrialRecord, CheckpointRecord]:
    """The trial and checkpoint with the best `metric` at a checkpoint."""
    if mode not in ("min", "max"):
        raise InputError(f"--mode {mode!r}: use min or max")
    best: tuple[float, TrialRecord, CheckpointRecord] | None = None
    sign = 1.0 if mode == "min" else -1.0
    for trial in run.trials:
        for checkpoint in trial.checkpoints:
            value = checkpoint.meta.get("metrics", {}).get(metric)
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
    which epochs under which modification, and whose checkpoint it copied at each boundary.

    The checkpoint's plan carries every modification of the chain (an exploiting trial inherits
    its donor's plan); the PBT journal says who the donor was at each exploit."""
    plan = Plan.from_dict(checkpoint.meta["plan"])
    journal = run.journal()
    starts = [1, *[m.from_epoch for m in plan.modifications if m.from_epoch > 1]]
    segments: list[dict[str, Any]] = []
    owner = trial.trial_id
    for index in reversed(range(len(starts))):
        start = starts[index]
        end = starts[index + 1] - 1 if index + 1 < len(starts) else checkpoint.epoch
        mod = plan.active_modification(start)
        event = next(
            (e for e in journal if e["trial"] == owner and int(e["epoch"]) == start - 1), None
        )
        segments.append(
            {
                "from_epoch": start,
                "to_epoch": end,
                "trial": owner,
                "modification": mod.to_dict() if mod else None,
                "copied_from": event["donor"] if event else None,
                "event": event,
            }
        )
        if event:
            owner = event["donor"]
    segments.reverse()
    return {
        "trial": trial.trial_id,
        "epoch": checkpoint.epoch,
        "root_trial": owner,
        "segments": segments,
    }


def export_best(
    run: Run, out: Path, metric: str = "val_free_loss", mode: str = "min"
) -> dict[str, Any]:
    """Write best_model.pth, plan.yaml, config.json, lineage.json, metrics.parquet into `out`."""
    trial, checkpoint = find_best(run, metric, mode)
    return export_checkpoint(run, trial, checkpoint, out, metric)


def export_checkpoint(
    run: Run,
    trial: TrialRecord,
    checkpoint: CheckpointRecord,
    out: Path,
    metric: str = "val_free_loss",
) -> dict[str, Any]:
    """Export one checkpoint of a run (see `export_best`)."""
    with tempfile.TemporaryDirectory() as tmp:
        state = load_state(checkpoint.location.download(Path(tmp) / "checkpoint"))
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state["model"], buffer)
    atomic_write_bytes(out / "best_model.pth", buffer.getvalue())
    plan = Plan.from_dict(state["plan"])
    atomic_write_bytes(out / "plan.yaml", plan.to_yaml().encode())
    config = {
        "run": run.location.uri,
        "kind": run.kind,
        "trial": trial.trial_id,
        "checkpoint": checkpoint.location.uri,
        "epoch": checkpoint.epoch,
        "metric": metric,
        "value": checkpoint.meta["metrics"][metric],
        "metrics": checkpoint.meta["metrics"],
        "model": state["model_config"],
        "data": state["data_config"],
        "train": state["train_config"],
        "seed": state["train_config"]["seed"],
        "data_fingerprint": checkpoint.meta["data_fingerprint"],
        "data_path": run.manifest.get("spec", {}).get("data_path"),
        "components": checkpoint.meta.get("components"),
        "code_fingerprint": checkpoint.meta.get("code_fingerprint"),
        "versions": package_versions(),
        "replay": f"tune-app train --replay {out}",
    }
    atomic_write_bytes(out / "config.json", json.dumps(config, indent=2, default=float).encode())
    atomic_write_bytes(
        out / "lineage.json", json.dumps(lineage(run, trial, checkpoint), indent=2).encode()
    )
    # every epoch behind these weights, from the checkpoint itself (donors' epochs included):
    # complete even where Tune's result.json was cut short
    atomic_write_bytes(
        out / "metrics.parquet", pd.DataFrame(state["history"]).to_parquet(index=False)
    )
    return config


def replay_spec(export_dir: Path) -> tuple[RunSpec, int]:
    """The RunSpec and epoch that replay an export of `tune-app best` in one sequential run."""
    config_file, plan_file = export_dir / "config.json", export_dir / "plan.yaml"
    if not config_file.is_file() or not plan_file.is_file():
        raise InputError(
            f"--replay {export_dir}: not a `tune-app best` export (config.json and plan.yaml needed)"
        )
    config = json.loads(config_file.read_text())
    plan = Plan.from_yaml(plan_file.read_text(), str(plan_file))
    spec = RunSpec.from_dict(
        {
            "plan": plan.to_dict(),
            "model": config["model"],
            "data": config["data"],
            "train": {**config["train"], "device": "cpu"},
            "data_path": config.get("data_path"),
        }
    )
    return spec, int(config["epoch"])


def trial_table(run: Run, metric: str = "val_free_loss") -> list[dict[str, Any]]:
    """One row per trial: id, whether it is the control, its best metric and epoch, its members' params."""
    rows = []
    for trial in run.trials:
        frame = trial.metrics
        member = trial.params.get("member", {})
        best = frame[metric].min() if metric in frame and len(frame) else math.nan
        rows.append(
            {
                "trial": trial.trial_id,
                "control": bool(member.get("control")),
                "epochs": int(frame["epoch"].max()) if "epoch" in frame and len(frame) else 0,
                f"best_{metric}": float(best),
                "diverged": trial.diverged,
                "params": member.get("params", {}),
            }
        )
    return sorted(rows, key=lambda r: (math.isnan(r[f"best_{metric}"]), r[f"best_{metric}"]))

"""What a run came to, read back without Ray: the winner against the control on validation
and test (in z-unit MSE), the exploits behind the winner and the modifications in force. The
report opens with this.

Per-epoch metrics come from each trial's checkpoint history (`TrialRecord.metrics`, the same
source `tune-app best` exports as metrics.parquet: complete where Tune's result.json was cut
short by an exploit, and with the donors' epochs behind the weights).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tune_app.errors import InputError
from tune_app.plan.plan import Plan
from tune_app.runs.records import ARM_KEY, CheckpointMeta, JournalEvent
from tune_app.runs.results import CheckpointRecord, Run, TrialRecord, find_best, lineage

__all__ = [
    "Contender",
    "best_checkpoint",
    "component_names",
    "describe_modification",
    "member_label",
    "params_in_force",
    "search_method",
    "search_selection",
    "winner_and_control",
    "winner_lineage",
]


def member_label(trial: TrialRecord) -> str:
    """`member-02` (`member-00 (control)`) for a search member, `B-1003` for a compare trial
    (its plan's label and seed), else the trial's folder name (`trial-03`, as the README and the
    progress table name it; never Ray's id `3170e_00000`)."""
    member = trial.member
    arm = trial.params.get(ARM_KEY)
    if member is None and isinstance(arm, dict) and "label" in arm:
        return f"{arm['label']}-{arm.get('seed', '')}"
    if member is None:
        return trial.location.name
    label = f"member-{member.index:02d}"
    return f"{label} (control)" if member.control else label


def search_method(run: Run) -> str:
    """A search's explore step as the user chose it: "PB2" or "PBT", from the run's manifest
    (`--scheduler`); a manifest from before the choice was recorded: PB2 if the journal names
    it for any exploit (its first explores are PBT's until PB2 has data), else PBT."""
    if run.manifest.scheduler:
        return run.manifest.scheduler.upper()
    return "PB2" if any("pb2" in event.explore for event in run.journal()) else "PBT"


def search_selection(run: Run) -> str:
    """What a search's rounds ranked members on (`--selection`), as its journal says for each
    round (else its manifest): "truncation", "recent", "improvement"; several joined by ", "
    (never by one run); "truncation" for a run from before the choice existed."""
    rules = {event.selection for event in run.rounds()}
    return ", ".join(sorted(rules)) if rules else run.manifest.selection or "truncation"


def component_names(run: Run) -> list[str]:
    """The data's component columns: from the run manifest, else from a checkpoint."""
    if run.manifest.components:
        return [str(n) for n in run.manifest.components]
    for trial in run.trials:
        for checkpoint in trial.checkpoints:
            if checkpoint.meta.components:
                return [str(n) for n in checkpoint.meta.components]
    return []


def params_in_force(trial: TrialRecord) -> dict[str, Any]:
    """The search parameters the trial ended with: its newest checkpoint's (after an exploit
    they are the explored ones), else those it started with."""
    for checkpoint in reversed(trial.checkpoints):
        if checkpoint.meta.params:
            return dict(checkpoint.meta.params)
    member = trial.member
    return dict(member.params) if member else {}


def describe_modification(meta: CheckpointMeta, components: list[str]) -> str:
    """The modification in force at a checkpoint, in words: `from epoch 3: alpha_shift +0.065,
    lr restart every 2 epochs x1.4, ...`; `none (the plan as written)` without one."""
    plan = Plan.from_dict(meta.plan)
    active = plan.active_modification(meta.epoch)
    if active is None or active.is_identity:
        return "none (the plan as written)"
    raw = active.to_dict()
    parts = []
    for key, value in raw.items():
        if key == "from_epoch":
            continue
        if key == "lr_restart":
            every = f"every {value['period']} epoch(s)" if value["period"] else "once"
            parts.append(f"lr restart {every} x{value['factor']:.3g}")
        elif key == "curriculum":
            parts.append(f"curriculum from {value['start']:.2f} over {value['epochs']} epochs")
        elif key == "component_weights":
            names = components or [f"c{i}" for i in range(len(value))]
            weights = ", ".join(f"{n} {w:.2f}" for n, w in zip(names, value, strict=False))
            parts.append(f"component weights {weights}")
        elif key == "regularisation":
            parts.append(f"weight decay and noise x{value:.3g}")
        elif key.endswith("_scale"):
            parts.append(f"{key.removesuffix('_scale').replace('_', ' ')} x{value:.3g}")
        else:
            parts.append(f"{key} {value:+.3g}" if isinstance(value, float) else f"{key} {value}")
    return f"from epoch {raw['from_epoch']}: " + "; ".join(parts)


@dataclass
class Contender:
    """A trial's best checkpoint and its scores: val_free_loss (the rank metric) and the mean
    z-unit MSE of its free-running forecasts on the validation and test splits (None when the
    data could not be read)."""

    label: str
    trial: TrialRecord
    checkpoint: CheckpointRecord
    val_mse_z: float | None = None
    test_mse_z: float | None = None
    naive_test_mse_z: float | None = None  # the best naive forecast on test

    @property
    def val_free_loss(self) -> float:
        return float(self.checkpoint.meta.metrics["val_free_loss"])


def best_checkpoint(trial: TrialRecord) -> CheckpointRecord | None:
    """The trial's checkpoint with the lowest finite val_free_loss, None without one."""
    scored = [
        c for c in trial.checkpoints if math.isfinite(c.meta.metrics.get("val_free_loss", math.nan))
    ]
    return min(scored, key=lambda c: c.meta.metrics["val_free_loss"], default=None)


def _score(contender: Contender, data_path: str | None) -> str | None:
    """Fill in the z-unit MSEs; returns why not, if they could not be computed."""
    from tune_app.analysis.evaluate import dataset_for, evaluate, load_model

    with tempfile.TemporaryDirectory() as tmp:
        local = contender.checkpoint.location.download(Path(tmp) / "checkpoint")
        try:
            loaded = load_model(local)
            dataset = dataset_for(loaded, data_path)
        except InputError as exc:
            return str(exc)
        recorded = contender.checkpoint.meta.data_fingerprint
        if recorded and recorded != dataset.fingerprint:
            return (
                f"the data at {data_path or 'the built-in synthetic data'} is not the data "
                "this run trained on (its fingerprint differs)"
            )
        val = evaluate(loaded, dataset, "val")
        test = evaluate(loaded, dataset, "test")
    contender.val_mse_z = val["scores"]["model"]["mean"]["mse_z"]
    contender.test_mse_z = test["scores"]["model"]["mean"]["mse_z"]
    contender.naive_test_mse_z = test["headline"]["best_naive_mse_z"]
    return None


def winner_and_control(run: Run) -> tuple[Contender | None, Contender | None, str | None]:
    """The run's best checkpoint (as `tune-app best` picks it) and the control's best, scored
    on validation and test. Returns (winner, control or None, why scores are missing or None)."""
    try:
        trial, checkpoint = find_best(run)
    except InputError:
        return None, None, None
    winner = Contender(member_label(trial), trial, checkpoint)
    control = None
    for other in run.trials:
        if other.member is not None and other.member.control:
            best = best_checkpoint(other)
            if best is not None:
                control = Contender(member_label(other), other, best)
    data_path = run.manifest.spec.get("data_path")
    problem = None
    for contender in (winner, control):
        if contender is not None and problem is None:
            problem = _score(contender, data_path)
    return winner, control, problem


def winner_lineage(run: Run, winner: Contender) -> list[JournalEvent]:
    """The exploits behind the winner's weights, oldest first: epoch, who copied whom."""
    try:
        chain = lineage(run, winner.trial, winner.checkpoint)
    except (KeyError, ValueError):
        return []
    return [JournalEvent(**s["event"]) for s in chain["segments"] if s.get("event")]

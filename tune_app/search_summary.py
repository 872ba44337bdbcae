"""The few lines `tune-app search` ends with: rounds, exploits, the winner's lineage, the control."""

from __future__ import annotations

import math
from typing import Any

from tune_app.results import Run, TrialRecord, find_best, lineage

__all__ = ["member_index", "search_summary"]


def member_index(trial: TrialRecord) -> Any:
    """The member number a trial was started as (0 is the control)."""
    return (trial.params.get("member") or {}).get("index", trial.trial_id)


def _best_at_checkpoints(trial: TrialRecord) -> float:
    values = [c.meta.get("metrics", {}).get("val_free_loss") for c in trial.checkpoints]
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return min(finite, default=math.inf)


def search_summary(run: Run) -> list[str]:
    """Human-readable lines on how a PBT search went.

    Args:
        run: a search run (`open_run`).

    Returns:
        Lines: the rounds and their exploits, the winner's lineage (who trained which epochs),
        and the winner's best free-running validation loss against the control's.
    """
    rounds = run.rounds()
    per_round = ", ".join(f"epoch {r['epoch']}: {len(r.get('exploits', []))}" for r in rounds)
    exploits = sum(len(r.get("exploits", [])) for r in rounds)
    lines = [f"PBT: {len(rounds)} rounds, {exploits} exploits ({per_round or 'no round ran'})"]
    if not any(t.checkpoints for t in run.trials):
        return [*lines, "no member wrote a checkpoint"]
    trial, checkpoint = find_best(run)
    members = {t.trial_id: member_index(t) for t in run.trials}
    chain = lineage(run, trial, checkpoint)["segments"]
    path = " -> ".join(
        f"member {members.get(s['trial'], s['trial'])} epochs {s['from_epoch']}-{s['to_epoch']}"
        for s in chain
    )
    lines.append(f"winner: member {members[trial.trial_id]} at epoch {checkpoint.epoch}: {path}")
    winner = float(checkpoint.meta["metrics"]["val_free_loss"])
    controls = [t for t in run.trials if (t.params.get("member") or {}).get("control")]
    control = _best_at_checkpoints(controls[0]) if controls else math.inf
    if math.isfinite(control) and control > 0:
        lines.append(
            f"winner val_free_loss {winner:.6g} = {winner / control:.3f} x the control's best "
            f"({control:.6g}, the plan as written)"
        )
    return lines

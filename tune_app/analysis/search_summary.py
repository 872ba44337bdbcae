"""The few lines `tune-app search` ends with: rounds, exploits, the winner's lineage, the control."""

from __future__ import annotations

import math

import pandas as pd

from tune_app.analysis.report_search import change_label, short_value
from tune_app.analysis.run_summary import best_checkpoint, member_label
from tune_app.runs.results import Run, find_best, lineage

__all__ = ["exploit_effects", "search_summary", "winner_modifications"]


def search_summary(run: Run) -> list[str]:
    """Human-readable lines on how a PBT search went.

    Args:
        run: a search run (`open_run`).

    Returns:
        Lines: the rounds and their exploits, the winner's lineage (who trained which epochs,
        members named as the report names them: `member-02`, `member-00 (control)`), and the
        winner's best free-running validation loss against the control's.
    """
    rounds = run.rounds()
    per_round = ", ".join(f"epoch {r.epoch}: {len(r.exploits)}" for r in rounds)
    exploits = sum(len(r.exploits) for r in rounds)
    lines = [f"PBT: {len(rounds)} rounds, {exploits} exploits ({per_round or 'no round ran'})"]
    if not any(t.checkpoints for t in run.trials):
        return [*lines, "no member wrote a checkpoint"]
    trial, checkpoint = find_best(run)
    labels = {t.trial_id: member_label(t) for t in run.trials}
    chain = lineage(run, trial, checkpoint)["segments"]
    path = " -> ".join(
        f"{labels.get(s['trial'], s['trial'])} epochs {s['from_epoch']}-{s['to_epoch']}"
        for s in chain
    )
    lines.append(f"winner: {labels[trial.trial_id]} at epoch {checkpoint.epoch}: {path}")
    winner = float(checkpoint.meta.metrics["val_free_loss"])
    controls = [t for t in run.trials if t.member is not None and t.member.control]
    control = best_checkpoint(controls[0]) if controls else None
    best = control.meta.metrics["val_free_loss"] if control is not None else 0.0
    if best > 0:
        lines.append(
            f"winner val_free_loss {winner:.6g} = {winner / best:.3f} x the control's best "
            f"({best:.6g}, the plan as written)"
        )
    return lines


def winner_modifications(run: Run) -> list[str]:
    """For the search's winner: each stretch of its lineage, who trained it, the epoch its
    modification started, and the parameters in force that differ from the plan as written.

    Args:
        run: a search run.

    Returns:
        One line per lineage segment, oldest first (empty without checkpoints).
    """
    if not any(t.checkpoints for t in run.trials):
        return []
    trial, checkpoint = find_best(run)
    labels = {t.trial_id: member_label(t) for t in run.trials}
    lines = []
    for segment in lineage(run, trial, checkpoint)["segments"]:
        modification = segment["modification"] or {}
        changed = {
            k: v for k, v in modification.items() if k != "from_epoch" and v not in (None, 0, 1, {})
        }
        shown = ", ".join(f"{k}={short_value(v)}" for k, v in sorted(changed.items()))
        copied = (
            f", copied from {labels.get(segment['copied_from'])}" if segment["copied_from"] else ""
        )
        since = modification.get("from_epoch", segment["from_epoch"])
        what = f"modification from epoch {since}: {shown}" if shown else "the plan as written"
        lines.append(
            f"epochs {segment['from_epoch']}-{segment['to_epoch']} by "
            f"{labels.get(segment['trial'], segment['trial'])}{copied}: {what}"
        )
    return lines


def exploit_effects(run: Run) -> pd.DataFrame:
    """What followed each exploit: the donor's score at the round, the copier's score at the
    next round (or its last checkpoint), the change, and the parameters the explore changed.
    Evidence for which modification helped, not a claim of causality: the weights, the phase
    and every other parameter moved too.

    Returns:
        One row per exploit: epoch, member, copied, score then (the donor's val_free_loss),
        score next (at the next round), change, parameters changed (largest first).
    """
    labels = {t.trial_id: member_label(t) for t in run.trials}
    scores: dict[tuple[str, int], float] = {
        (r["trial"], event.epoch): float(r["val_free_loss"])
        for event in run.rounds()
        for r in event.ranking
    }
    finals = {
        t.trial_id: (
            t.checkpoints[-1].epoch,
            float(t.checkpoints[-1].meta.metrics["val_free_loss"]),
        )
        for t in run.trials
        if t.checkpoints
    }
    rows = []
    for event in run.journal():
        later = sorted(e for (trial, e) in scores if trial == event.trial and e > event.epoch)
        if later:
            epoch_next: int | None = later[0]
            after = scores[(event.trial, later[0])]
        else:
            epoch_next, after = finals.get(event.trial, (None, math.nan))
        before = float(event.donor_val_free_loss or math.nan)
        rows.append(
            {
                "epoch": event.epoch,
                "member": labels.get(event.trial, event.trial),
                "copied": labels.get(event.donor, event.donor),
                "score then": before,
                "score next": after,
                "at epoch": epoch_next,
                "change": after - before,
                "parameters changed": change_label(event, limit=3),
            }
        )
    return pd.DataFrame(rows)

"""The few lines `tune-app search` ends with: rounds, exploits, the winner's lineage, the control."""

from __future__ import annotations

from tune_app.analysis.run_summary import best_checkpoint, member_label
from tune_app.runs.results import Run, find_best, lineage

__all__ = ["search_summary"]


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

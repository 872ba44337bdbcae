"""The report's opening, in words: what the run was and what it came to, in a few sentences
and a table (the numbers from `outcome.py`).

A search's report opens with its certificate (`tune-app certify`: the control's plan against the
winner's, trained on fresh seeds, on the test split), or says how to get one, before any
validation number: the search's own validation figures chose the winner, so they are labelled
selection scores (optimistic).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tune_app.analysis.certificate import (
    SELECTION,
    ablation_lines,
    certificate_lines,
    not_certified,
)
from tune_app.analysis.outcome import (
    Contender,
    member_label,
    search_method,
    search_selection,
    winner_and_control,
    winner_lineage,
)
from tune_app.plan.plan import Plan
from tune_app.runs.records import CAPACITY_KEY, Certificate, CheckpointMeta, CompareResult
from tune_app.runs.results import Run
from tune_app.training.metrics import RANK_METRIC

__all__ = ["answer", "describe_modification"]


def _change(new: float | None, old: float | None) -> str:
    if new is None or old is None or old == 0:
        return ""
    return f" ({(new - old) / abs(old):+.1%})"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _what_ran(run: Run, components: list[str], total: int | None) -> str:
    spec = run.manifest.spec
    plan = spec.get("plan", {})
    data = spec.get("data_path") or "the built-in synthetic data"
    trials = len(run.trials)
    method = search_method(run) if run.kind == "search" else ""
    rule = search_selection(run) if run.kind == "search" else ""
    who = {
        "search": f"{method} search of {trials} members (member-00 is the control: the plan "
        f"as written), ranked at each round by {rule} selection",
        "capacity": f"capacity search of {trials} trials (Optuna + ASHA)",
        "baseline": "baseline: the plan as written, one trial",
        "compare": f"comparison of {len(run.manifest.arms)} plans in {trials} trials, each plan "
        f"from scratch on {run.manifest.seeds} seeds",
    }.get(run.kind, f"{run.kind} run of {trials} trial(s)")
    phases = len(plan.get("phases", []))
    epochs = f"{total} epochs in {phases} phases" if total else "epochs unknown"
    named = ", ".join(components) if components else "unknown"
    return f"{who}; plan {plan.get('name', '?')}, {epochs}; data: {data} (components: {named})."


def _scores_line(winner: Contender, control: Contender | None) -> str:
    if control is None or control.trial is winner.trial:
        head = (
            f"Best: {winner.label} at epoch {winner.checkpoint.epoch}, {RANK_METRIC} "
            f"{winner.val_free_loss:.4g}"
        )
        if control is not None:
            head += " (the control itself won: no modification beat the plan as written)"
        return (
            f"{head}; mse_z (mean z-unit MSE, free-running) validation "
            f"{_number(winner.val_mse_z)}{', a ' + SELECTION + ' score' if control else ''}, test "
            f"{_number(winner.test_mse_z)}."
        )
    naive = (
        f" (the best naive forecast: {winner.naive_test_mse_z:.4g})"
        if winner.naive_test_mse_z is not None
        else ""
    )
    return (
        f"Winner {winner.label} (its best, epoch {winner.checkpoint.epoch}) against the control "
        f"{control.label.removesuffix(' (control)')} (its best, epoch {control.checkpoint.epoch}): "
        f"validation mse_z, a {SELECTION} score (the search chose the winner by its validation "
        f"scores): {_number(winner.val_mse_z)} vs {_number(control.val_mse_z)}"
        f"{_change(winner.val_mse_z, control.val_mse_z)}; "
        f"test mse_z {_number(winner.test_mse_z)} vs {_number(control.test_mse_z)}"
        f"{_change(winner.test_mse_z, control.test_mse_z)}{naive}; "
        f"{RANK_METRIC} (the rank metric, {SELECTION}) {winner.val_free_loss:.4g} vs "
        f"{control.val_free_loss:.4g}{_change(winner.val_free_loss, control.val_free_loss)}."
    )


def _exploits_line(run: Run, winner: Contender, labels: dict[str, str]) -> str:
    events = winner_lineage(run, winner)
    if not events:
        return "Exploits behind the winner: none; it trained on its own from epoch 1."
    steps = [
        f"epoch {e.epoch}: {labels.get(e.trial, e.trial)} copied {labels.get(e.donor, e.donor)}"
        for e in events
    ]
    return f"Exploits behind the winner ({len(events)}): " + "; ".join(steps) + "."


def _table(winner: Contender, control: Contender | None) -> pd.DataFrame:
    search = control is not None
    val = " (selection)" if search else ""
    rows = []
    for role, who in (("winner", winner), ("control", control)):
        if who is None or (role == "control" and who.trial is winner.trial):
            continue
        rows.append(
            {
                "": role,
                "member": who.label,
                "epoch": who.checkpoint.epoch,
                f"{RANK_METRIC}{val}": who.val_free_loss,
                f"val mse_z{val}": who.val_mse_z,
                "test mse_z": who.test_mse_z,
                "best naive test mse_z": who.naive_test_mse_z,
            }
        )
    return pd.DataFrame(rows)


def describe_modification(meta: CheckpointMeta, components: list[str]) -> str:
    """The modification in force at a checkpoint, in words.

    Args:
        meta: the checkpoint's meta.json (its plan and epoch).
        components: the data's component names, for per-component weights (`c0`, ... if empty).

    Returns:
        `from epoch 3: alpha_shift +0.065; lr restart every 2 epoch(s) x1.4; ...`, or `none
        (the plan as written)` without one.
    """
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


def answer(
    run: Run, components: list[str], total: int | None
) -> tuple[list[str], pd.DataFrame | None]:
    """What the report opens with.

    Args:
        run: any run (`open_run`), finished or still going.
        components: the data's component names (`outcome.component_names`).
        total: the plan's epochs (None: unknown).

    Returns:
        The opening sentences (a search's certificate first, or how to get one; a compare
        run's verdicts; what ran; the winner against the control; the exploits behind the
        winner; its capacity or its modifications) and the winner-vs-control table (None
        before any checkpoint).
    """
    lines = []
    if run.kind == "search":
        certificate = Certificate.read(run.location)
        if certificate is None:
            lines.append(not_certified(run.location.uri))
        else:
            lines += [*certificate_lines(certificate), *ablation_lines(certificate)]
    if run.kind == "compare":
        result = CompareResult.read(run.location)
        for comparison in result.comparisons if result else ():
            lines.append(
                f"Compared on {len(comparison.seeds)} seeds (test mse_z, each trial at its "
                f"best-validation checkpoint): {comparison.mean.text}; A: {comparison.a_source}; "
                f"B: {comparison.b_source}."
            )
        if result is None:
            lines.append("The comparison is written when every trial has ended.")
    lines.append(_what_ran(run, components, total))
    winner, control, problem = winner_and_control(run)
    if winner is None:
        lines.append("No checkpoint yet: the first comes at the first phase boundary.")
        return lines, None
    labels = {t.trial_id: member_label(t) for t in run.trials}
    lines.append(_scores_line(winner, control))
    if problem:
        lines.append(f"Validation and test mse_z could not be computed: {problem}")
    if run.kind == "search":
        lines.append(_exploits_line(run, winner, labels))
    capacity: dict[str, Any] = winner.trial.params.get(CAPACITY_KEY) or {}
    if capacity:
        chosen = ", ".join(f"{k}={v}" for k, v in capacity.items())
        lines.append(f"Capacity of the winner: {chosen}.")
    else:
        mods = describe_modification(winner.checkpoint.meta, components)
        lines.append(f"Modifications in force: {mods}.")
    return lines, _table(winner, control)

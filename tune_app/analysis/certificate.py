"""A search's certificate in words, for `certify`, `best`, the search summary and the report.

The search's own scores chose its winner (the best of N members on one validation split, one
seed), so they are optimistic: "selection" scores. The certificate (`tune-app certify RUN`,
records.Certificate) is the answer to act on: the control's plan and the winner's plan trained
from scratch on seeds the search did not use, compared on the test split.
"""

from __future__ import annotations

import math

import pandas as pd

from tune_app.analysis.certification import numbers
from tune_app.runs.records import Certificate, Comparison
from tune_app.runs.results import CheckpointRecord, Run, TrialRecord, lineage

__all__ = [
    "CONTROL",
    "NAMES",
    "SELECTION",
    "WINNER",
    "ablation_lines",
    "certificate_lines",
    "certificate_table",
    "not_certified",
    "rule_epochs",
    "seed_range",
]

CONTROL, WINNER = "control", "winner"  # the arms' labels in a certify run
NAMES = {CONTROL: "the control's plan", WINNER: "the winner's plan"}
SELECTION = "selection (optimistic)"  # how validation figures of the search itself are labelled


def seed_range(seeds: tuple[int, ...] | list[int]) -> str:
    """`seeds 1000-1004` (consecutive) or `seeds 3, 7` (a list), `seed 1000` alone."""
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def rule_epochs(run: Run, trial: TrialRecord, checkpoint: CheckpointRecord) -> list[int]:
    """The epochs from which a boundary rule's modification is in force in the checkpoint's
    plan (its lineage's segments whose cause is "rule"), for `plan.ablation`."""
    return [
        int(segment["from_epoch"])
        for segment in lineage(run, trial, checkpoint)["segments"]
        if segment["cause"] == "rule"
    ]


def not_certified(run_uri: str) -> str:
    """What a search without a certificate says, with how to get one."""
    return (
        "Not certified: the search's own scores chose the winner (the best of its members on "
        "one validation split, one seed), so they are optimistic. To know whether the winner's "
        f"plan beats the plan as written, run `tune-app certify {run_uri}`: both plans trained "
        "from scratch on 5 seeds the search did not use, compared on the test split."
    )


def _lead(comparison: Comparison) -> str:
    """The certificate's first sentence: "Certified" only where the winner's plan beats the
    control's (the interval wholly below 0, or the control failing on more seeds); "Not
    certified" where the interval includes 0, the winner's plan is worse, or there is none."""
    on = (
        f"on {len(comparison.seeds)} fresh {seed_range(comparison.seeds)}"
        if comparison.seeds
        else "on no seed where either plan has a score"
    )
    how = "test mse_z, each trial at its best-validation checkpoint"
    verdict = comparison.mean.verdict
    if verdict == "better":
        head = f"Certified {on}: the winner's plan beats the plan as written"
    elif verdict == "worse":
        head = f"Not certified {on}: the winner's plan is worse than the plan as written"
    elif verdict == "one seed":
        head = f"Not certified {on}: one seed gives no interval"
    elif verdict == "no result":
        head = "Not certified: no seed where both plans have a score"
    else:
        head = f"Not certified {on}: no difference beyond seed noise"
    return f"{head} ({how}): {comparison.mean.text}."


def certificate_lines(certificate: Certificate) -> list[str]:
    """The certificate's verdict, first the mean, then each component that differs from it.

    Args:
        certificate: a search run's certificate.

    Returns:
        Sentences: the verdict on the mean test mse_z, and one per component whose verdict
        differs from the mean's (a plan that helps one component and hurts another says so).
    """
    comparison = certificate.comparison
    if comparison is None:
        return [f"Certificate: {certificate.note}"]
    lines = [_lead(comparison)]
    differing = [c for c in comparison.components if c.verdict != comparison.mean.verdict]
    if len(comparison.components) > 1 and differing:
        lines.append(
            "Per component, where it differs from the mean: "
            + "; ".join(f"{c.score}: {c.text}" for c in differing)
            + "."
        )
    if comparison.left_out:
        lines.append("Left out: " + "; ".join(comparison.left_out) + ".")
    return lines


def ablation_lines(certificate: Certificate) -> list[str]:
    """What the ablations say: which family of modifications carried the gain.

    Returns:
        One line per family removed: the change of the test mse_z against the full winner's
        plan (positive: worse without it), then a summary line; empty without ablations.
    """
    if not certificate.ablations:
        return []
    lines: list[str] = []
    carried: list[str] = []
    neutral: list[str] = []
    helped: list[str] = []
    for comparison in certificate.ablations:
        family = comparison.b.removeprefix("no-").replace("-", " ")
        verdict = {"worse": "worse without it", "better": "better without it"}.get(
            comparison.mean.verdict, f"{comparison.mean.verdict} beyond seed noise"
        )
        names = ("the full plan", "the plan without it")
        lines.append(f"Without {family}: {numbers(comparison.mean, names)}: {verdict}.")
        {"worse": carried, "better": helped}.get(comparison.mean.verdict, neutral).append(family)
    summary = [
        f"carried the gain (removing it made the plan worse): {', '.join(carried)}"
        if carried
        else "no family carried the gain on its own",
    ]
    if helped:
        summary.append(f"removing it made the plan better: {', '.join(helped)}")
    if neutral:
        summary.append(f"no difference beyond seed noise: {', '.join(neutral)}")
    return [*lines, "Ablation: " + "; ".join(summary) + "."]


def certificate_table(certificate: Certificate) -> pd.DataFrame | None:
    """A row per seed: both plans' test mse_z (each at its best-validation checkpoint, or why
    it has none), the relative difference (winner - control) / control and the log ratio
    log(winner / control) the interval is computed on; None without a comparison."""
    comparison = certificate.comparison
    if comparison is None:
        return None
    logs = comparison.mean.log_ratios or (None,) * len(comparison.mean.differences)
    rows = [
        {
            "seed": a.seed,
            "control's plan: test mse_z": a.mse_z if a.mse_z is not None else a.status,
            "winner's plan: test mse_z": b.mse_z if b.mse_z is not None else b.status,
            "(winner - control) / control": "-" if d is None else f"{d * 100:+.1f} %",
            "log(winner / control)": "-"
            if d is None
            else f"{(log if log is not None else math.log1p(d)):+.4f}",
            "best-validation epochs": f"{a.epoch}, {b.epoch}",
        }
        for a, b, d, log in zip(
            comparison.a_scores, comparison.b_scores, comparison.mean.differences, logs, strict=True
        )
    ]
    return pd.DataFrame(rows)

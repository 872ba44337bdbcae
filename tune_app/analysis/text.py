"""A run's outcome in words: the lines `tune-app search` ends with and `tune-app best`
prints (rounds, exploits, the winner's lineage, the control, the evidence of which modification
helped), which the report shows too, and how a parameter value and an exploit's change
read. The numbers come from `outcome.py`; nothing here draws (the terminal's
summary never loads matplotlib). The report's opening sentences are `answer.py`'s.
"""

from __future__ import annotations

import math
import textwrap
from typing import Any

import pandas as pd

from tune_app.analysis.certificate import SELECTION, certificate_lines, not_certified
from tune_app.analysis.outcome import (
    best_checkpoint,
    exploit_outcomes,
    member_label,
    search_method,
    search_selection,
    winner_and_control,
)
from tune_app.plan.modifications import Modification
from tune_app.runs.records import Certificate, JournalEvent
from tune_app.runs.results import Run, find_best, lineage
from tune_app.training.metrics import RANK_METRIC, VAL_FREE_LOSS

__all__ = [
    "EFFECTS_EXPLAINED",
    "change_label",
    "exploit_effects",
    "readable_effects",
    "search_summary",
    "short_value",
    "winner_modifications",
]

CHANGES_SHOWN = 2


def short_value(value: Any) -> str:
    """A parameter value as a table shows it.

    Args:
        value: a bool, number, None, or a list or mapping of them (a modification's component
            weights, its lr restart).

    Returns:
        on/off, 3 significant digits, '-' for None; a list or a mapping item by item.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(short_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} {short_value(v)}" for k, v in value.items()) + "}"
    return "-" if value is None else str(value)


def _distinct(before: Any, after: Any) -> str:
    """`before→after` as `short_value` shows them, with as many more digits (up to 6) as two
    different numbers need to read differently: `1.18→1.18` becomes `1.181→1.184`."""
    a, b = short_value(before), short_value(after)
    digits = 4
    while a == b and digits <= 6 and isinstance(before, float) and isinstance(after, float):
        a, b = f"{before:.{digits}g}", f"{after:.{digits}g}"
        digits += 1
    return f"{a}→{b}"


def _changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(name, before, after) for each parameter that differs, largest relative change first."""

    def size(old: Any, new: Any) -> float:
        if isinstance(old, bool) or isinstance(new, bool):
            return 10.0  # a switch is a big change
        if isinstance(old, int | float) and isinstance(new, int | float):
            return abs(new - old) / max(abs(old), abs(new), 1e-12)
        return 1.0

    changed = [(k, before.get(k), after[k]) for k in after if before.get(k) != after[k]]
    return sorted(changed, key=lambda c: -size(c[1], c[2]))


def change_label(event: JournalEvent, limit: int | None = CHANGES_SHOWN) -> str:
    """What an exploit changed: the explored parameters against the donor's (an older journal
    has only the copier's own, `old`), largest relative change first.

    Args:
        event: an exploit line of the journal.
        limit: how many changes to name before `+N more`; None: every one.

    Returns:
        `alpha_shift 0.04→0.07, lr_restart on→off, +9 more`; `no effective change (...)` where
        they train exactly as the donor's did (`JournalEvent.effective`: a restart to 1x the
        peak a phase starts at, a plateau rule that cannot fire before the plan ends); `no
        parameter changed`.
    """
    changes = _changes(event.donor_params or event.old, event.new)
    limit = len(changes) if limit is None else limit
    shown = [f"{k} {_distinct(a, b)}" for k, a, b in changes[:limit]]
    if len(changes) > limit:
        shown.append(f"+{len(changes) - limit} more")
    if not shown:
        return "no parameter changed"
    if event.effective is False:
        return f"no effective change ({', '.join(shown)})"
    return ", ".join(shown)


EFFECTS_EXPLAINED = (
    "After each exploit the copier (the explored parameters on the donor's weights) and the "
    "donor (its own parameters on the same weights) both trained on to the next round (after "
    f"the last round: to the end); 'copier next' and 'donor next' are their {VAL_FREE_LOSS} at "
    "that same epoch, and 'vs donor' = copier next - donor next: negative when the explored "
    "parameters did better than the donor going on unchanged; n/a where the donor was itself "
    "copied over before then or has no score there. This is evidence, not a claim of "
    "causality: one pair of runs per exploit, every changed parameter at once, and no measure "
    "of the noise between runs."
)


def _rule_change(before: dict[str, Any] | None, after: dict[str, Any]) -> tuple[str, str]:
    """(name, what it did) for a segment a boundary rule started: `before` and `after` are the
    modifications in force before and from then on (as `Modification.to_dict`)."""
    before = before or {}
    names, parts = [], []
    old, new = float(before.get("regularisation", 1.0)), float(after.get("regularisation", 1.0))
    if new != old:
        names.append("gap")
        parts.append(f"weight decay and noise x{new / old:.3g} ({_against_plan(after)} the plan's)")
    restart = after.get("lr_restart")
    if restart and restart.get("period") == 0 and restart != before.get("lr_restart"):
        names.append("plateau")
        parts.append(f"lr warm restart to {restart['factor']:.3g} x the phase's peak")
    if not names:
        return "boundary rule", "the modification restated"
    name = " and ".join(names) + (" rules" if len(names) > 1 else " rule")
    return name, "; ".join(parts)


def _against_plan(modification: dict[str, Any]) -> str:
    """What the plan's weight decay and noise are multiplied by under `modification` (as
    `Modification.to_dict`): the gap rule's factor times the levers weight_decay_scale and
    noise_scale, as `Plan.values_at` applies them; `x1.5`, or `weight decay x1.42 and noise
    x2.42` where the two differ."""
    mod = Modification.from_dict(modification, "lineage modification")
    decay, noise = f"{mod.weight_decay_factor:.3g}", f"{mod.noise_factor:.3g}"
    return f"x{decay}" if decay == noise else f"weight decay x{decay} and noise x{noise}"


def _in_force(modification: dict[str, Any] | None) -> str:
    changed = {k: v for k, v in (modification or {}).items() if k != "from_epoch"}
    return ", ".join(f"{k}={short_value(v)}" for k, v in sorted(changed.items()))


def search_summary(run: Run) -> list[str]:
    """Human-readable lines on how a search went, named by its explore step (PBT or PB2).

    Args:
        run: a search run (`open_run`).

    Returns:
        Lines: the explore step (with the selection rule, unless truncation) and the rounds
        with their exploits; the winner's lineage (who
        trained which epochs, `->` at each copy, a member's own rules in brackets; members named
        as the report names them: `member-02`, `member-00 (control)`); the winner's best
        free-running validation loss against the control's (a selection score: it chose the
        winner, so it is optimistic); both one's mse_z on validation and on test; and the
        certificate's verdict (`tune-app certify`), or how to get one.
    """
    rounds = run.rounds()
    per_round = ", ".join(f"epoch {r.epoch}: {len(r.exploits)}" for r in rounds)
    exploits = sum(len(r.exploits) for r in rounds)
    method = search_method(run)
    if (rule := search_selection(run)) != "truncation":  # said where it is not the default
        method += f" ({rule} selection)"
    lines = [f"{method}: {len(rounds)} rounds, {exploits} exploits ({per_round or 'no round ran'})"]
    if not any(t.checkpoints for t in run.trials):
        return [*lines, "no member wrote a checkpoint"]
    trial, checkpoint = find_best(run)
    labels = {t.trial_id: member_label(t) for t in run.trials}
    stretches: list[dict[str, Any]] = []  # one per trial in turn: a rule does not start one
    previous = None
    for segment in lineage(run, trial, checkpoint)["segments"]:
        if stretches and segment["cause"] in ("rule", "plan"):
            stretches[-1]["to"] = segment["to_epoch"]
            name = (
                _rule_change(previous, segment["modification"] or {})[0]
                if segment["cause"] == "rule"
                else "the plan's modification"
            )
            stretches[-1]["notes"].append(f"{name} from epoch {segment['from_epoch']}")
        else:
            who = labels.get(segment["trial"], segment["trial"])
            stretches.append(
                {"who": who, "from": segment["from_epoch"], "to": segment["to_epoch"], "notes": []}
            )
        previous = segment["modification"]
    path = " -> ".join(
        f"{s['who']} epochs {s['from']}-{s['to']}"
        + (f" ({', '.join(s['notes'])})" if s["notes"] else "")
        for s in stretches
    )
    lines.append(f"winner: {labels[trial.trial_id]} at epoch {checkpoint.epoch}: {path}")
    winner = float(checkpoint.meta.metrics[RANK_METRIC])
    controls = [t for t in run.trials if t.member is not None and t.member.control]
    control = best_checkpoint(controls[0]) if controls else None
    best = control.meta.metrics[RANK_METRIC] if control is not None else 0.0
    if best > 0:
        lines.append(
            f"{SELECTION}: winner {RANK_METRIC} {winner:.6g} = {winner / best:.3f} x the "
            f"control's best ({best:.6g}, the plan as written)"
        )
    lines.append(_mse_line(run))
    certificate = Certificate.read(run.location)
    said = certificate_lines(certificate) if certificate else [not_certified(run.location.uri)]
    return [
        *lines,
        *(
            part
            for line in said
            for part in textwrap.wrap(line, 110, subsequent_indent="  ", break_on_hyphens=False)
        ),
    ]


def _mse_line(run: Run) -> str:
    """The winner's test mse_z next to its validation one (a selection score), and the
    control's, each at its best checkpoint."""
    winner, control, problem = winner_and_control(run)
    if winner is None or problem or winner.test_mse_z is None:
        return f"winner mse_z on test: could not be computed ({problem or 'no checkpoint'})"
    line = (
        f"winner mse_z: test {winner.test_mse_z:.4g}, validation {winner.val_mse_z:.4g} (selection)"
    )
    if control is not None and control.trial is not winner.trial and control.test_mse_z:
        line += (
            f"; the control's: test {control.test_mse_z:.4g}, validation "
            f"{control.val_mse_z:.4g}; winner / control on test "
            f"{winner.test_mse_z / control.test_mse_z:.3f}"
        )
    return line


def winner_modifications(run: Run) -> list[str]:
    """For the search's winner: each stretch of its lineage, who trained it, what started it
    (a copy of another member's checkpoint, or the member's own boundary rule, such as the
    gap rule), and the parameters in force that differ from the plan as written.

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
    previous = None
    for segment in lineage(run, trial, checkpoint)["segments"]:
        modification = segment["modification"] or {}
        shown = _in_force(modification)
        since = modification.get("from_epoch", segment["from_epoch"])
        who = labels.get(segment["trial"], segment["trial"])
        stretch = f"epochs {segment['from_epoch']}-{segment['to_epoch']} by {who}"
        if segment["cause"] == "rule":
            name, what = _rule_change(previous, modification)
            lines.append(f"{stretch}: {name} from epoch {since}: {what}; in force: {shown}")
        else:
            copied = (
                f", copied from {labels.get(segment['copied_from'], segment['copied_from'])}"
                if segment["copied_from"]
                else ""
            )
            what = f"modification from epoch {since}: {shown}" if shown else "the plan as written"
            lines.append(f"{stretch}{copied}: {what}")
        previous = modification
    return lines


def exploit_effects(run: Run) -> pd.DataFrame:
    """What followed each exploit, like against like: the copier (the explored parameters on
    the donor's weights) against the donor (its own parameters on the same weights), both at
    the next round after the exploit, or, after the last round, both at the copier's last
    checkpoint. Evidence for which modification helped, not a claim of causality (see
    `EFFECTS_EXPLAINED`).

    Args:
        run: a search run.

    Returns:
        One row per exploit, oldest first: epoch, member (the copier), copied (the donor),
        donor at exploit (the score both started from), next epoch, copier next, donor next
        (NaN where the donor was copied over before then or has no score there), vs donor
        (copier next - donor next: negative when the explored parameters did better), and
        every parameter the explore step changed (largest change first).
    """
    labels = {t.trial_id: member_label(t) for t in run.trials}
    rows = []
    for found in exploit_outcomes(run):
        event = found.event
        rows.append(
            {
                "epoch": event.epoch,
                "member": labels.get(event.trial, event.trial),
                "copied": labels.get(event.donor, event.donor),
                "donor at exploit": (
                    math.nan if event.donor_val_free_loss is None else event.donor_val_free_loss
                ),
                "next epoch": found.epoch,
                "copier next": found.copier,
                "donor next": found.donor,
                "vs donor": found.copier - found.donor,
                "parameters changed": change_label(event, limit=None),
            }
        )
    return pd.DataFrame(rows)


def readable_effects(effects: pd.DataFrame) -> pd.DataFrame:
    """`exploit_effects` as text to print.

    Args:
        effects: `exploit_effects`'s table.

    Returns:
        The same table, its scores to 4 significant digits (`vs donor` signed) and `n/a`
        where there is no number.
    """

    def number(value: Any, signed: bool = False) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "n/a"
        if isinstance(value, int):
            return str(value)
        return f"{value:+.4g}" if signed else f"{value:.4g}"

    out = effects.astype(object).copy()
    for column in ("donor at exploit", "copier next", "donor next", "vs donor"):
        out[column] = [number(v, signed=column == "vs donor") for v in effects[column]]
    out["next epoch"] = [
        "n/a" if v is None or v != v else str(int(v)) for v in effects["next epoch"]
    ]
    return out

"""The search-only parts of the report: the family tree of a PBT or PB2 search, the exploit
table and the modifications table (one column per member, split so it fits a page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from tune_app.analysis.run_summary import member_label, params_in_force
from tune_app.runs.records import JournalEvent
from tune_app.runs.results import TrialRecord

__all__ = [
    "change_label",
    "exploit_table",
    "family_tree",
    "modification_tables",
    "short_value",
]

MEMBERS_PER_TABLE = 6
CHANGES_SHOWN = 2


def short_value(value: Any) -> str:
    """A parameter value as a table shows it: on/off, 3 significant digits, '-'; a list or a
    mapping (a modification's component weights, its lr restart) item by item."""
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
    has only the copier's own, `old`), largest change first: `alpha_shift 0.04→0.07,
    lr_restart on→off, +9 more` (every one with `limit=None`); `no effective change (...)`
    where they train exactly as the donor's did (`JournalEvent.effective`: a restart to 1x the
    peak a phase starts at, a plateau rule that cannot fire before the plan ends)."""
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


def exploit_table(events: list[JournalEvent], labels: dict[str, str]) -> pd.DataFrame:
    """One row per exploit: epoch, who copied whom, both losses, what was explored."""
    return pd.DataFrame(
        [
            {
                "epoch": e.epoch,
                "member": labels.get(e.trial, e.trial),
                "copied": labels.get(e.donor, e.donor),
                "its val_free_loss": e.val_free_loss,
                "donor's": e.donor_val_free_loss,
                "change (explored vs donor)": change_label(e, limit=4),
            }
            for e in events
        ]
    )


def family_tree(
    trials: list[TrialRecord],
    events: list[JournalEvent],
    winner: str | None,
    path: Path,
    method: str = "PBT",
) -> Path:
    """One lane per member (epochs it trained), an arrow at each exploit from the donor's lane
    to the copier's, labelled with the change; the winner's lane drawn thick; titled with the
    search's `method` (PBT or PB2)."""
    ordered = sorted(trials, key=member_label)
    lane = {t.trial_id: i for i, t in enumerate(ordered)}
    fig, ax = plt.subplots(figsize=(11, 0.9 * len(ordered) + 1.6))
    last_epoch = 1
    for trial in ordered:
        frame = trial.metrics
        if "epoch" not in frame or not len(frame):
            continue
        first, last = int(frame["epoch"].min()), int(frame["epoch"].max())
        last_epoch = max(last_epoch, last)
        control = "(control)" in member_label(trial)
        ax.plot(
            [first, last],
            [lane[trial.trial_id]] * 2,
            color="tab:green" if control else "tab:blue",
            lw=5 if trial.trial_id == winner else 2,
            solid_capstyle="round",
            zorder=3,  # over the labels' boxes: a label never hides a lane
        )
    for event in events:
        if event.trial not in lane or event.donor not in lane:
            continue
        epoch, source, target = float(event.epoch), lane[event.donor], lane[event.trial]
        ax.annotate(
            "",
            xy=(epoch + 0.15, target),
            xytext=(epoch, source),
            arrowprops={"arrowstyle": "-|>", "color": "tab:red", "lw": 1.5},
        )
        ax.text(
            epoch + 0.2,
            (source + target) / 2,
            # the largest change only (the report's table lists them all): exploits one round
            # apart sit two epochs apart, and longer labels ran into each other
            f"epoch {event.epoch}: {change_label(event, limit=1)}",
            fontsize=8,
            color="tab:red",
            va="center",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    ax.set_yticks(range(len(ordered)), [member_label(t) for t in ordered], fontsize=10)
    ax.set_ylim(-0.6, len(ordered) - 0.4)
    ax.set_xlim(0.5, last_epoch + 0.5)
    ax.invert_yaxis()
    ax.set_xlabel("epoch")
    ax.set_title(
        f"{method} family tree: a lane per member (thick: the winner); red arrows go from the "
        "donor to the member that copied it",
        fontsize=10,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def modification_tables(ranked: list[tuple[TrialRecord, float]]) -> list[pd.DataFrame]:
    """The parameters in force at each member's end, one column per member (best first), split
    into tables of at most `MEMBERS_PER_TABLE` members so each fits a page."""
    columns: dict[str, dict[str, str]] = {}
    for rank, (trial, best) in enumerate(ranked, start=1):
        params = params_in_force(trial)
        column = {"rank": str(rank), "best val_free_loss": f"{best:.5g}"}
        column.update({name: short_value(value) for name, value in params.items()})
        columns[member_label(trial)] = column
    names = list(columns)
    tables = []
    for start in range(0, len(names), MEMBERS_PER_TABLE):
        chunk = {n: columns[n] for n in names[start : start + MEMBERS_PER_TABLE]}
        frame = pd.DataFrame(chunk).fillna("-")
        frame.index.name = "parameter"
        tables.append(frame.reset_index())
    return tables

"""`tune-app report RUN --out DIR`: one self-contained HTML page and a Markdown twin.

It opens with its answer (`answer.py`): for a search, its certificate (`tune-app certify`: the
control's plan against the winner's on fresh seeds, test split) or how to get one, before any
validation number; then run kind, data, epochs; the winner against the control on validation
(labelled a selection score: the search chose the winner by it, so it is optimistic) and test in
z-unit MSE, the exploits behind it, the modifications in force. Then: trials, learning curves
(train / val / free-running) with plateaus marked, the train/val gap, per-component validation
losses (by component name), the schedules each trial used against the seed plan, and by kind:
the family tree, the evidence of which modification helped and the modifications in force (a
PBT or PB2 search), Optuna's parameter importances (capacity). This module lays the page out:
the numbers are `outcome.py`'s, the words `text.py`'s and `answer.py`'s, the images
`figures.py`'s. Works on a run still in progress: it shows what has been written.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tune_app.analysis import figures
from tune_app.analysis.answer import answer
from tune_app.analysis.certificate import certificate_table
from tune_app.analysis.importances import parameter_importances
from tune_app.analysis.outcome import (
    TrialMetrics,
    component_names,
    member_label,
    params_in_force,
    plateaus,
    search_method,
    trial_metrics,
)
from tune_app.analysis.text import (
    EFFECTS_EXPLAINED,
    change_label,
    exploit_effects,
    readable_effects,
    short_value,
    winner_modifications,
)
from tune_app.plan.plan import Plan
from tune_app.runs.records import Certificate, JournalEvent
from tune_app.runs.results import Run, TrialRecord
from tune_app.runs.staging import staged_folder
from tune_app.training.checkpoint import atomic_write_bytes
from tune_app.training.metrics import TRAIN_LOSS, VAL_FREE_LOSS, VAL_LOSS
from tune_app.training.trainer import TrainConfig

__all__ = ["Section", "build_sections", "write_report"]

MAX_PANELS = 12
MEMBERS_PER_TABLE = 6


@dataclass
class Section:
    """One section of the page: a title, a paragraph, the answer's bullets, images, tables."""

    title: str
    text: str = ""
    images: list[Path] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)


def _trials_section(entries: list[TrialMetrics], total: int | None) -> Section:
    rows, running = [], 0
    for rank, entry in enumerate(entries, start=1):
        diverged = entry.trial.diverged
        finished = total is not None and entry.epochs >= total
        running += not (finished or diverged)
        rows.append(
            {
                "rank": rank,
                "member": entry.label,
                "epochs": f"{entry.epochs}/{total or '?'}",
                f"best {VAL_FREE_LOSS}": entry.best,
                "state": "diverged" if diverged else "finished" if finished else "running",
            }
        )
    text = f"{len(entries)} trial(s), {total or '?'} planned epochs each, best first."
    if running:
        text += f" {running} not finished yet (the report shows what has been written so far)."
    return Section("Trials", text, tables=[pd.DataFrame(rows)] if rows else [])


def _exploit_table(events: list[JournalEvent], labels: dict[str, str]) -> pd.DataFrame:
    """One row per exploit: epoch, who copied whom, both losses, what was explored."""
    return pd.DataFrame(
        [
            {
                "epoch": e.epoch,
                "member": labels.get(e.trial, e.trial),
                "copied": labels.get(e.donor, e.donor),
                f"its {VAL_FREE_LOSS}": e.val_free_loss,
                "donor's": e.donor_val_free_loss,
                "change (explored vs donor)": change_label(e, limit=4),
            }
            for e in events
        ]
    )


def _modification_tables(ranked: list[tuple[TrialRecord, float]]) -> list[pd.DataFrame]:
    """The parameters in force at each member's end, one column per member (best first), split
    into tables of at most `MEMBERS_PER_TABLE` members so each fits a page; `ranked` holds
    (member, its best val_free_loss), best first."""
    columns: dict[str, dict[str, str]] = {}
    for rank, (trial, best) in enumerate(ranked, start=1):
        params = params_in_force(trial)
        column = {"rank": str(rank), f"best {VAL_FREE_LOSS}": f"{best:.5g}"}
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


def build_sections(run: Run, out: Path) -> list[Section]:
    """The page's sections, in order, with their images drawn into `out`.

    Args:
        run: any run (`open_run`), finished or still going.
        out: the folder the images are written to.

    Returns:
        Summary and Trials always; the curves, gap, components and schedules once a trial
        has reported an epoch; by kind, a search's family tree, evidence and modifications,
        a capacity search's parameter importances.

    Raises:
        InputError: the run's recorded search space is not a valid one.
    """
    entries = trial_metrics(run)
    spec = run.manifest.spec
    seed = Plan.from_dict(spec["plan"]) if spec.get("plan") else None
    total = seed.total_epochs if seed else None
    names = component_names(run)
    plateau_epochs = TrainConfig.from_dict(spec.get("train") or {}).plateau_epochs
    lines, contest = answer(run, names, total)
    certificate = Certificate.read(run.location) if run.kind == "search" else None
    certified = certificate_table(certificate) if certificate else None
    tables = [t for t in (certified, contest) if t is not None]
    sections = [
        Section("Summary", bullets=lines, tables=tables),
        _trials_section(entries, total),
    ]
    shown = [e for e in entries if e.epochs > 0][:MAX_PANELS]
    if not shown:
        sections.append(Section("Learning curves", "No trial has reported an epoch yet."))
        return sections
    spans = [
        {"member": e.label, "from": a, "to": b, "epochs": b - a + 1}
        for e in shown
        for a, b in plateaus(e.frame, plateau_epochs)
    ]
    sections += [
        Section(
            "Learning curves",
            f"Train, validation (teacher-forced) and free-running validation loss per trial; "
            f"plateaus longer than {plateau_epochs} epochs are shaded.",
            [figures.curves(shown, out / "curves.png", plateau_epochs)],
            [pd.DataFrame(spans)] if spans else [],
        ),
        Section(
            "Train/val gap",
            f"{VAL_LOSS} - {TRAIN_LOSS}: the plan says it should shrink in later epochs.",
            [figures.gap(shown, out / "gap.png")],
        ),
        Section(
            "Per-component validation losses",
            "Free-running, under the fixed reference objective, one line per component.",
            [figures.components(shown, names, out / "components.png")],
        ),
        Section(
            "Schedules used",
            "What each trial actually trained with, against the seed plan (dashed).",
            [figures.schedules(shown, seed, out / "schedules.png")],
        ),
    ]
    if run.kind == "search":
        events = run.journal()
        labels = {e.trial.trial_id: e.label for e in entries}
        winner = next((e.trial.trial_id for e in entries if e.epochs), None)
        method = search_method(run)
        sections.append(
            Section(
                f"{method} family tree",
                f"{len(events)} exploit(s): the member copied the donor's checkpoint and "
                f"explored its parameters from there ({method}'s explore step).",
                [figures.family_tree(run.trials, events, winner, out / "family_tree.png", method)],
                [_exploit_table(events, labels)] if events else [],
            )
        )
        effects = exploit_effects(run)
        if len(effects):
            sections.append(
                Section(
                    "Which modification helped",
                    f"{EFFECTS_EXPLAINED} Below the table: the winner's lineage, each stretch "
                    "with what started it (a copy, or the member's own boundary rule) and the "
                    "modification in force.",
                    tables=[readable_effects(effects)],
                    bullets=winner_modifications(run),
                )
            )
        ranked = [(e.trial, e.best) for e in entries]
        sections.append(
            Section(
                "Modifications ranked",
                "The parameters in force at each member's end, one column per member, best "
                "first; the control runs the plan as written.",
                tables=_modification_tables(ranked),
            )
        )
    if run.kind == "capacity":
        table = parameter_importances(run, entries)
        image = figures.importances(table, out / "importances.png") if table is not None else None
        sections.append(
            Section(
                "Parameter importances",
                "" if image else "Needs at least two trials with results.",
                [image] if image else [],
                [table] if table is not None else [],
            )
        )
    return sections


def _float(value: float) -> str:
    return f"{value:.6g}"


def _html(sections: list[Section], title: str) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em;"
        "line-height:1.4}table{border-collapse:collapse;font-size:13px;margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;white-space:nowrap}"
        "td:last-child{white-space:normal}img{max-width:100%}"
        ".wide{overflow-x:auto}.answer{background:#f4f7fb;padding:0.5em 1em;"
        "border-left:4px solid #3b73b9}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.bullets:
            items = "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets)
            parts.append(f"<ul class='answer'>{items}</ul>")
        for image in section.images:
            data = base64.b64encode(image.read_bytes()).decode()
            parts.append(
                f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{data}'>"
            )
        for table in section.tables:
            rendered = table.to_html(index=False, float_format=_float, na_rep="-")
            parts.append(f"<div class='wide'>{rendered}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(sections: list[Section], title: str) -> str:
    parts = [f"# {title}", ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        if section.text:
            parts += [section.text, ""]
        parts += [f"- {b}" for b in section.bullets]
        parts += [f"![{section.title}]({image.name})" for image in section.images]
        for table in section.tables:
            parts += ["", _markdown_table(table)]
        parts.append("")
    return "\n".join(parts)


def _markdown_table(table: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else _float(value)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def write_report(run: Run, out: Path) -> tuple[Path, Path]:
    """Write report.html (self-contained) and report.md (its images beside it) into `out`,
    whole or not at all (`runs.staging.staged_folder`: a full disk or Ctrl-C leaves `out` as
    it was).

    Args:
        run: any run (`open_run`), finished or still going.
        out: the folder to write (replaced whole if it exists).

    Returns:
        The paths of report.html and report.md.

    Raises:
        InputError: the run's recorded search space is not a valid one.
        OSError: the folder could not be written (nothing of it was).
    """
    title = f"tune_app report: {run.location.name} ({run.kind})"
    with staged_folder(out, "the report") as staged:
        sections = build_sections(run, staged)
        atomic_write_bytes(staged / "report.html", _html(sections, title).encode())
        atomic_write_bytes(staged / "report.md", _markdown(sections, title).encode())
    return out / "report.html", out / "report.md"

"""`tune-app report RUN --out DIR`: one self-contained HTML page and a Markdown twin.

It opens with its answer: for a search, its certificate (`tune-app certify`: the control's plan
against the winner's on fresh seeds, test split) or how to get one, before any validation number;
then run kind, data, epochs; the winner against the control on validation (labelled a selection
score: the search chose the winner by it, so it is optimistic) and test in z-unit MSE, the
exploits behind it, the modifications in force. Then: trials,
learning curves (train / val / free-running) with plateaus marked, the train/val gap,
per-component validation losses (by component name), the schedules each trial used against the
seed plan, and by kind: the family tree and the modifications (a PBT or PB2 search), Optuna's
parameter importances (capacity). Per-epoch numbers come from the trials' checkpoints
(`TrialRecord.metrics`).
Works on a run still in progress: it shows what has been written. Figures are drawn at most
~900 px wide, to read on a laptop screen.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from tune_app.analysis.certificate import certificate_table
from tune_app.analysis.report_answer import answer
from tune_app.analysis.report_search import exploit_table, family_tree, modification_tables
from tune_app.analysis.run_summary import component_names, member_label, search_method
from tune_app.analysis.search_summary import (
    EFFECTS_EXPLAINED,
    exploit_effects,
    readable_effects,
    winner_modifications,
)
from tune_app.plan.plan import Plan
from tune_app.runs.records import CAPACITY_KEY, Certificate
from tune_app.runs.results import Run, TrialRecord
from tune_app.runs.staging import staged_folder
from tune_app.training.checkpoint import atomic_write_bytes

__all__ = ["plateaus", "write_report"]

MAX_PANELS = 12
DPI = 80
WIDTH = 11.0  # inches: 880 px at DPI


@dataclass
class Section:
    title: str
    text: str = ""
    images: list[Path] = field(default_factory=list)
    tables: list[pd.DataFrame] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)


@dataclass
class Entry:
    """A trial as the report shows it: its label and its per-epoch metrics."""

    trial: TrialRecord
    label: str
    frame: pd.DataFrame

    @property
    def best(self) -> float:
        if "val_free_loss" not in self.frame or not len(self.frame):
            return math.nan
        return float(self.frame["val_free_loss"].min())

    @property
    def epochs(self) -> int:
        return int(self.frame["epoch"].max()) if "epoch" in self.frame and len(self.frame) else 0


def plateaus(frame: pd.DataFrame, longer_than: int = 30) -> list[tuple[int, int]]:
    """(first, last) epochs of each stretch without a new best val_free_loss longer than `longer_than`."""
    spans, best, since = [], math.inf, None
    for epoch, value in zip(frame["epoch"], frame["val_free_loss"], strict=True):
        if value < best:
            if since is not None and epoch - 1 - since >= longer_than:
                spans.append((since + 1, int(epoch) - 1))
            best, since = value, int(epoch)
    if since is not None and len(frame) and int(frame["epoch"].iloc[-1]) - since > longer_than:
        spans.append((since + 1, int(frame["epoch"].iloc[-1])))
    return spans


def _label(trial: TrialRecord) -> str:
    capacity = trial.params.get(CAPACITY_KEY)
    if capacity:
        return f"{member_label(trial)} " + ",".join(f"{k}={v}" for k, v in capacity.items())
    return member_label(trial)


def _grid(count: int) -> tuple[Any, list[Any]]:
    cols = min(2, max(1, count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, 3.0 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


def _save(fig: Any, path: Path) -> Path:
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _curves(entries: list[Entry], out: Path, plateau_epochs: int) -> Path:
    fig, axes = _grid(len(entries))
    for ax, entry in zip(axes, entries, strict=True):
        frame = entry.frame
        for column in ("train_loss", "val_loss", "val_free_loss"):
            if column in frame:
                ax.plot(frame["epoch"], frame[column], label=column, lw=1.2)
        for first, last in plateaus(frame, plateau_epochs):
            ax.axvspan(first, last, color="orange", alpha=0.2, label=f"plateau > {plateau_epochs}")
        ax.set_yscale("log")
        ax.set_title(entry.label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if axes:
        handles, labels = axes[0].get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axes[0].legend(unique.values(), unique.keys(), fontsize=8)
    return _save(fig, out / "curves.png")


def _gap(entries: list[Entry], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for entry in entries:
        if "gap" in entry.frame:
            ax.plot(entry.frame["epoch"], entry.frame["gap"], lw=1.2, label=entry.label)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title("train/val gap (val_loss - train_loss)")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


def _components(entries: list[Entry], names: list[str], out: Path) -> Path:
    fig, axes = _grid(len(entries))
    for ax, entry in zip(axes, entries, strict=True):
        frame = entry.frame
        columns = sorted(
            (c for c in frame.columns if c.startswith("val_c") and c[5:].isdigit()),
            key=lambda c: int(c[5:]),
        )
        for column in columns:
            index = int(column[5:])
            name = names[index] if index < len(names) else column
            ax.plot(frame["epoch"], frame[column], lw=1.2, label=name)
        ax.set_yscale("log")
        ax.set_title(entry.label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out / "components.png")


def _schedules(entries: list[Entry], seed: Plan | None, out: Path) -> Path:
    knobs = ["lr", "teacher_forcing", "alpha", "curriculum"]
    fig, axes = plt.subplots(2, 2, figsize=(WIDTH, 5.6))
    for ax, knob in zip(axes.flat, knobs, strict=True):
        if seed is not None:
            epochs = range(1, seed.total_epochs + 1)
            ax.plot(
                list(epochs),
                [getattr(seed.values_at(e), knob) for e in epochs],
                "k--",
                lw=1.5,
                label="seed plan",
            )
        for entry in entries:
            if knob in entry.frame:
                ax.plot(entry.frame["epoch"], entry.frame[knob], lw=1.2, label=entry.label)
        ax.set_title(knob)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if knob == "lr":
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    return _save(fig, out / "schedules.png")


def _importances(entries: list[Entry], out: Path) -> tuple[pd.DataFrame | None, Path | None]:
    import optuna

    from tune_app.plan.search_space import load_space, to_optuna

    space = load_space(None, "capacity.yaml", "capacity")
    distributions = to_optuna(space)
    trials = []
    for entry in entries:
        capacity = entry.trial.params.get(CAPACITY_KEY)
        if capacity and math.isfinite(entry.best):
            params = {k: v for k, v in capacity.items() if k in distributions}
            trials.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    value=entry.best,
                )
            )
    if len(trials) < 2:
        return None, None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    study.add_trials(trials)
    importances = optuna.importance.get_param_importances(study)
    frame = pd.DataFrame(
        {"parameter": list(importances), "importance": [round(v, 4) for v in importances.values()]}
    )
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(frame) + 1.2))
    ax.barh(frame["parameter"], frame["importance"])
    ax.invert_yaxis()
    ax.set_title("Optuna parameter importances (fANOVA) on best val_free_loss")
    return frame, _save(fig, out / "importances.png")


def _trials_section(entries: list[Entry], total: int | None) -> Section:
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
                "best val_free_loss": entry.best,
                "state": "diverged" if diverged else "finished" if finished else "running",
            }
        )
    text = f"{len(entries)} trial(s), {total or '?'} planned epochs each, best first."
    if running:
        text += f" {running} not finished yet (the report shows what has been written so far)."
    return Section("Trials", text, tables=[pd.DataFrame(rows)] if rows else [])


def build_sections(run: Run, out: Path) -> list[Section]:
    entries = [Entry(t, _label(t), t.metrics) for t in run.trials]
    entries.sort(key=lambda e: (math.isnan(e.best), e.best))
    spec = run.manifest.spec
    seed = Plan.from_dict(spec["plan"]) if spec.get("plan") else None
    total = seed.total_epochs if seed else None
    names = component_names(run)
    plateau_epochs = int(spec.get("train", {}).get("plateau_epochs", 30))
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
            [_curves(shown, out, plateau_epochs)],
            [pd.DataFrame(spans)] if spans else [],
        ),
        Section(
            "Train/val gap",
            "val_loss - train_loss: the plan says it should shrink in later epochs.",
            [_gap(shown, out / "gap.png")],
        ),
        Section(
            "Per-component validation losses",
            "Free-running, under the fixed reference objective, one line per component.",
            [_components(shown, names, out)],
        ),
        Section(
            "Schedules used",
            "What each trial actually trained with, against the seed plan (dashed).",
            [_schedules(shown, seed, out)],
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
                [family_tree(run.trials, events, winner, out / "family_tree.png", method)],
                [exploit_table(events, labels)] if events else [],
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
                tables=modification_tables(ranked),
            )
        )
    if run.kind == "capacity":
        table, image = _importances(entries, out)
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
    it was). Returns the two files' paths."""
    title = f"tune_app report: {run.location.name} ({run.kind})"
    with staged_folder(out, "the report") as staged:
        sections = build_sections(run, staged)
        atomic_write_bytes(staged / "report.html", _html(sections, title).encode())
        atomic_write_bytes(staged / "report.md", _markdown(sections, title).encode())
    return out / "report.html", out / "report.md"

"""`tune-app report RUN --out DIR`: one self-contained HTML page and a Markdown twin.

Sections: trials, learning curves (train / val / free-running) with plateaus marked, the
train/val gap, per-component validation losses, the schedules each trial used against the seed
plan, and by kind: the PBT family tree and the modifications ranked (search), Optuna's parameter
importances (capacity). Works on a run still in progress: it shows what has been written.
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

from tune_app.plan.plan import Plan
from tune_app.runs.records import CAPACITY_KEY
from tune_app.runs.results import Run, TrialRecord, trial_table
from tune_app.training.checkpoint import atomic_write_bytes

__all__ = ["plateaus", "write_report"]

MAX_PANELS = 12


@dataclass
class Section:
    title: str
    text: str = ""
    images: list[Path] = field(default_factory=list)
    table: pd.DataFrame | None = None


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
    member = trial.member
    if member is not None and member.control:
        return f"{trial.trial_id} (control)"
    capacity = trial.params.get(CAPACITY_KEY)
    if capacity:
        return f"{trial.trial_id} " + ",".join(f"{k}={v}" for k, v in capacity.items())
    return trial.trial_id


def _grid(count: int) -> tuple[Any, list[Any]]:
    cols = min(3, max(1, count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.axis("off")
    return fig, flat[:count]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _curves(trials: list[TrialRecord], out: Path, plateau_epochs: int) -> Path:
    fig, axes = _grid(len(trials))
    for ax, trial in zip(axes, trials, strict=True):
        frame = trial.metrics
        for column, style in (("train_loss", "-"), ("val_loss", "-"), ("val_free_loss", "-")):
            if column in frame:
                ax.plot(frame["epoch"], frame[column], style, label=column, lw=1)
        for first, last in plateaus(frame, plateau_epochs):
            ax.axvspan(first, last, color="orange", alpha=0.2, label=f"plateau > {plateau_epochs}")
        ax.set_yscale("log")
        ax.set_title(_label(trial), fontsize=8)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if axes:
        handles, labels = axes[0].get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axes[0].legend(unique.values(), unique.keys(), fontsize=7)
    return _save(fig, out / "curves.png")


def _one_panel(
    trials: list[TrialRecord], columns: list[str], title: str, path: Path, log: bool = False
) -> Path:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for trial in trials:
        frame = trial.metrics
        for column in columns:
            if column in frame:
                suffix = f" {column}" if len(columns) > 1 else ""
                ax.plot(frame["epoch"], frame[column], lw=1, label=f"{_label(trial)}{suffix}")
    if log:
        ax.set_yscale("log")
    ax.axhline(0, color="grey", lw=0.5) if not log else None
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    return _save(fig, path)


def _components(trials: list[TrialRecord], out: Path) -> Path:
    fig, axes = _grid(len(trials))
    for ax, trial in zip(axes, trials, strict=True):
        frame = trial.metrics
        for column in sorted(c for c in frame.columns if c.startswith("val_c")):
            ax.plot(frame["epoch"], frame[column], lw=1, label=column)
        ax.set_yscale("log")
        ax.set_title(_label(trial), fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out / "components.png")


def _schedules(trials: list[TrialRecord], seed: Plan | None, out: Path) -> Path:
    knobs = ["lr", "teacher_forcing", "alpha", "curriculum"]
    fig, axes = plt.subplots(1, len(knobs), figsize=(4.2 * len(knobs), 3.2))
    for ax, knob in zip(axes, knobs, strict=True):
        if seed is not None:
            epochs = range(1, seed.total_epochs + 1)
            ax.plot(
                list(epochs),
                [getattr(seed.values_at(e), knob) for e in epochs],
                "k--",
                lw=1.5,
                label="seed plan",
            )
        for trial in trials:
            frame = trial.metrics
            if knob in frame:
                ax.plot(frame["epoch"], frame[knob], lw=1, label=_label(trial))
        ax.set_title(knob)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if knob == "lr":
            ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    return _save(fig, out / "schedules.png")


def _family_tree(run: Run, trials: list[TrialRecord], out: Path) -> Path:
    order = {t.trial_id: i for i, t in enumerate(sorted(trials, key=lambda t: t.trial_id))}
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(order) + 1.5))
    for trial in trials:
        epochs = list(trial.metrics.get("epoch", []))
        y = order[trial.trial_id]
        ax.scatter(
            epochs,
            [y] * len(epochs),
            s=4,
            color="tab:green" if _label(trial).endswith("(control)") else "tab:blue",
        )
    for event in run.journal():
        if event.trial in order and event.donor in order:
            ax.annotate(
                "",
                xy=(event.epoch + 0.5, order[event.trial]),
                xytext=(event.epoch, order[event.donor]),
                arrowprops={"arrowstyle": "->", "color": "tab:red", "lw": 1},
            )
    ax.set_yticks(
        list(order.values()),
        [_label(t) for t in sorted(trials, key=lambda t: t.trial_id)],
        fontsize=7,
    )
    ax.set_xlabel("epoch")
    ax.set_title("PBT family tree: red arrows go from the donor to the trial that copied it")
    ax.grid(alpha=0.3)
    return _save(fig, out / "family_tree.png")


def _modification_table(run: Run) -> pd.DataFrame:
    rows = trial_table(run)
    records = []
    for rank, row in enumerate(rows, start=1):
        params = row["params"]
        records.append(
            {
                "rank": rank,
                "trial": row["trial"],
                "control": row["control"],
                "best val_free_loss": round(row["best_val_free_loss"], 6),
                **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in params.items()},
            }
        )
    return pd.DataFrame(records)


def _importances(run: Run, out: Path) -> tuple[pd.DataFrame | None, Path | None]:
    import optuna

    from tune_app.plan.search_space import load_space, to_optuna

    space = load_space(None, "capacity.yaml", "capacity")
    distributions = to_optuna(space)
    trials = []
    for trial in run.trials:
        capacity, frame = trial.params.get(CAPACITY_KEY), trial.metrics
        if capacity and "val_free_loss" in frame and len(frame):
            params = {k: v for k, v in capacity.items() if k in distributions}
            trials.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    value=float(frame["val_free_loss"].min()),
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
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(frame) + 1.2))
    ax.barh(frame["parameter"], frame["importance"])
    ax.invert_yaxis()
    ax.set_title("Optuna parameter importances (fANOVA) on best val_free_loss")
    return frame, _save(fig, out / "importances.png")


def build_sections(run: Run, out: Path) -> list[Section]:
    ranked = trial_table(run)
    by_id = {t.trial_id: t for t in run.trials}
    trials = [by_id[r["trial"]] for r in ranked if r["epochs"] > 0][:MAX_PANELS]
    plan_raw = run.manifest.spec.get("plan")
    seed = Plan.from_dict(plan_raw) if plan_raw else None
    plateau_epochs = int(run.manifest.spec.get("train", {}).get("plateau_epochs", 30))
    total = seed.total_epochs if seed else "?"
    summary = pd.DataFrame([{k: v for k, v in r.items() if k != "params"} for r in ranked])
    running = sum(
        1 for r in ranked if isinstance(total, int) and r["epochs"] < total and not r["diverged"]
    )
    sections = [
        Section(
            "Trials",
            f"Run `{run.location.uri}` ({run.kind}), {len(run.trials)} trial(s), {total} planned epochs each"
            + (
                f"; {running} not finished yet (the report shows what has been written so far)."
                if running
                else "."
            ),
            table=summary,
        )
    ]
    if not trials:
        sections.append(Section("Learning curves", "No trial has reported an epoch yet."))
        return sections
    spans = [
        {"trial": t.trial_id, "from": a, "to": b, "epochs": b - a + 1}
        for t in trials
        for a, b in plateaus(t.metrics, plateau_epochs)
    ]
    sections += [
        Section(
            "Learning curves",
            f"Train, validation (teacher-forced) and free-running validation loss per trial; "
            f"plateaus longer than {plateau_epochs} epochs are shaded.",
            [_curves(trials, out, plateau_epochs)],
            pd.DataFrame(spans) if spans else None,
        ),
        Section(
            "Train/val gap",
            "val_loss - train_loss: the plan says it should shrink in later epochs.",
            [_one_panel(trials, ["gap"], "train/val gap", out / "gap.png")],
        ),
        Section(
            "Per-component validation losses",
            "Free-running, under the fixed reference objective.",
            [_components(trials, out)],
        ),
        Section(
            "Schedules used",
            "What each trial actually trained with, against the seed plan (dashed).",
            [_schedules(trials, seed, out)],
        ),
    ]
    if run.kind == "search":
        events = pd.DataFrame(
            [
                {
                    k: getattr(e, k)
                    for k in ("epoch", "trial", "donor", "val_free_loss", "donor_val_free_loss")
                }
                for e in run.journal()
            ]
        )
        sections.append(
            Section(
                "PBT family tree",
                f"{len(events)} exploit/explore event(s).",
                [_family_tree(run, trials, out)],
                events if len(events) else None,
            )
        )
        sections.append(
            Section(
                "Modifications ranked",
                "Trials by best val_free_loss with the modifications in force at "
                "their end; the control runs the plan as written.",
                table=_modification_table(run),
            )
        )
    if run.kind == "capacity":
        table, image = _importances(run, out)
        sections.append(
            Section(
                "Parameter importances",
                "" if image else "Needs at least two trials with results.",
                [image] if image else [],
                table,
            )
        )
    return sections


def _html(sections: list[Section], title: str) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}.wide{overflow-x:auto}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        for image in section.images:
            data = base64.b64encode(image.read_bytes()).decode()
            parts.append(
                f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{data}'>"
            )
        if section.table is not None:
            table = section.table.to_html(index=False, float_format=lambda v: f"{v:.6g}")
            parts.append(f"<div class='wide'>{table}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _markdown(sections: list[Section], title: str) -> str:
    parts = [f"# {title}", ""]
    for section in sections:
        parts += [f"## {section.title}", "", section.text, ""]
        parts += [f"![{section.title}]({image.name})" for image in section.images]
        if section.table is not None:
            parts += [
                "",
                section.table.to_markdown(index=False)
                if _has_tabulate()
                else f"```\n{section.table.to_string(index=False)}\n```",
            ]
        parts.append("")
    return "\n".join(parts)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def write_report(run: Run, out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    sections = build_sections(run, out)
    title = f"tune_app report: {run.location.name} ({run.kind})"
    page, twin = out / "report.html", out / "report.md"
    atomic_write_bytes(page, _html(sections, title).encode())
    atomic_write_bytes(twin, _markdown(sections, title).encode())
    return page, twin

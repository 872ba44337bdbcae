"""A run's figures, as PNG files for the report: learning curves with plateaus, the train/val
gap, per-component losses, the schedules used, a search's family tree and a capacity search's
parameter importances.

Drawn with matplotlib's object API (`matplotlib.figure.Figure` on an Agg canvas): no pyplot, so
no global figure state and no backend switch; importing this module leaves the process's
matplotlib backend as it was. At most ~900 px wide, to read on a laptop screen. The data come
from `outcome.py`, the exploits' labels from `text.py`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tune_app.analysis.outcome import TrialMetrics, member_label, plateaus
from tune_app.analysis.text import change_label
from tune_app.plan.plan import Plan
from tune_app.runs.records import JournalEvent
from tune_app.runs.results import TrialRecord
from tune_app.training.metrics import EPOCH, TRAIN_LOSS, VAL_FREE_LOSS, VAL_LOSS

__all__ = ["components", "curves", "family_tree", "gap", "importances", "schedules"]

DPI = 80
WIDTH = 11.0  # inches: 880 px at DPI
KNOBS = ["lr", "teacher_forcing", "alpha", "curriculum"]  # the schedules' panels


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)  # attaches itself: savefig renders PNG without pyplot
    return figure


def _grid(count: int) -> tuple[Figure, list[Any]]:
    """A figure with one panel per trial, two to a row, the spare panel of an odd count hidden."""
    cols = min(2, max(1, count))
    rows = math.ceil(count / cols)
    figure = _figure(WIDTH, 3.0 * rows)
    flat = list(figure.subplots(rows, cols, squeeze=False).flat)
    for ax in flat[count:]:
        ax.axis("off")
    return figure, flat[:count]


def _save(figure: Figure, path: Path, whole_epochs: bool = True) -> Path:
    """Write the figure as PNG at `DPI`; the x axes tick whole numbers (epochs) unless told."""
    if whole_epochs:
        for ax in figure.axes:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    return path


def curves(entries: list[TrialMetrics], path: Path, plateau_epochs: int) -> Path:
    """Train, validation (teacher-forced) and free-running validation loss per trial, log scale,
    with the plateaus longer than `plateau_epochs` shaded.

    Args:
        entries: the trials to draw, one panel each.
        path: the PNG file to write.
        plateau_epochs: the shortest plateau shaded (`outcome.plateaus`).

    Returns:
        `path`.
    """
    figure, axes = _grid(len(entries))
    for ax, entry in zip(axes, entries, strict=True):
        frame = entry.frame
        for column in (TRAIN_LOSS, VAL_LOSS, VAL_FREE_LOSS):
            if column in frame:
                ax.plot(frame[EPOCH], frame[column], label=column, lw=1.2)
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
    return _save(figure, path)


def gap(entries: list[TrialMetrics], path: Path) -> Path:
    """The train/val gap (val_loss - train_loss) of every trial, on one panel.

    Args:
        entries: the trials to draw.
        path: the PNG file to write.

    Returns:
        `path`.
    """
    figure = _figure(WIDTH, 3.6)
    ax = figure.subplots()
    for entry in entries:
        if "gap" in entry.frame:
            ax.plot(entry.frame[EPOCH], entry.frame["gap"], lw=1.2, label=entry.label)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_title(f"train/val gap ({VAL_LOSS} - {TRAIN_LOSS})")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(figure, path)


def components(entries: list[TrialMetrics], names: list[str], path: Path) -> Path:
    """Free-running validation loss per component (the `val_c<i>` columns), one panel per trial.

    Args:
        entries: the trials to draw.
        names: the components' names, by index (a missing one keeps its column name).
        path: the PNG file to write.

    Returns:
        `path`.
    """
    figure, axes = _grid(len(entries))
    for ax, entry in zip(axes, entries, strict=True):
        frame = entry.frame
        columns = sorted(
            (c for c in frame.columns if c.startswith("val_c") and c[5:].isdigit()),
            key=lambda c: int(c[5:]),
        )
        for column in columns:
            index = int(column[5:])
            name = names[index] if index < len(names) else column
            ax.plot(frame[EPOCH], frame[column], lw=1.2, label=name)
        ax.set_yscale("log")
        ax.set_title(entry.label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(figure, path)


def schedules(entries: list[TrialMetrics], seed: Plan | None, path: Path) -> Path:
    """What each trial trained with (lr, teacher forcing, alpha, curriculum) against the seed
    plan's schedules (dashed).

    Args:
        entries: the trials to draw.
        seed: the plan as written (None: not drawn).
        path: the PNG file to write.

    Returns:
        `path`.
    """
    figure = _figure(WIDTH, 5.6)
    axes = figure.subplots(2, 2)
    for ax, knob in zip(axes.flat, KNOBS, strict=True):
        if seed is not None:
            epochs = range(1, seed.total_epochs + 1)
            values = [getattr(seed.values_at(e), knob) for e in epochs]
            ax.plot(list(epochs), values, "k--", lw=1.5, label="seed plan")
        for entry in entries:
            if knob in entry.frame:
                ax.plot(entry.frame[EPOCH], entry.frame[knob], lw=1.2, label=entry.label)
        ax.set_title(knob)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if knob == "lr":
            ax.set_yscale("log")
    axes.flat[0].legend(fontsize=8)
    return _save(figure, path)


def importances(frame: pd.DataFrame, path: Path) -> Path:
    """A bar per capacity parameter, the most important on top.

    Args:
        frame: `outcome.parameter_importances`'s table.
        path: the PNG file to write.

    Returns:
        `path`.
    """
    figure = _figure(7, 0.5 * len(frame) + 1.2)
    ax = figure.subplots()
    ax.barh(frame["parameter"], frame["importance"])
    ax.invert_yaxis()
    ax.set_title(f"Optuna parameter importances (PED-ANOVA) on best {VAL_FREE_LOSS}")
    return _save(figure, path, whole_epochs=False)  # its x axis is a share, not epochs


def family_tree(
    trials: list[TrialRecord],
    events: list[JournalEvent],
    winner: str | None,
    path: Path,
    method: str = "PBT",
) -> Path:
    """A search's family tree: one lane per member (the epochs it trained), an arrow at each
    exploit from the donor's lane to the copier's, labelled with the largest change.

    Args:
        trials: the search's members.
        events: the journal's exploits (`Run.journal`).
        winner: the winner's trial id, whose lane is drawn thick (None: none).
        path: the PNG file to write.
        method: the search's explore step, for the title ("PBT" or "PB2").

    Returns:
        `path`.
    """
    ordered = sorted(trials, key=member_label)
    lane = {t.trial_id: i for i, t in enumerate(ordered)}
    figure = _figure(11, 0.9 * len(ordered) + 1.6)
    ax = figure.subplots()
    last_epoch = 1
    for trial in ordered:
        frame = trial.metrics
        if EPOCH not in frame or not len(frame):
            continue
        first, last = int(frame[EPOCH].min()), int(frame[EPOCH].max())
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
    return _save(figure, path)

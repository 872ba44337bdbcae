"""`tune-app data inspect`: a data file's series, their statistics (float64) and its problems."""

from __future__ import annotations

import math

import numpy as np

from tune_app.training.data import SeriesTable
from tune_app.training.normalisation import is_constant
from tune_app.training.timestamps import clock_change_hint, format_seconds, step_seconds

__all__ = ["describe"]


def _mean_text(mean: float, std: float) -> str:
    """A mean with the digits its spread needs: 1000000001175.55 next to a std of 1194, not
    1e+12."""
    digits = 6
    if std > 0 and mean != 0:
        digits += max(0, math.ceil(math.log10(abs(mean) / std)))
    return f"{mean:.{min(digits, 17)}g}"


def describe(table: SeriesTable) -> str:
    """The table as text: series, components, timestamps, per-series mean and std of each
    component, then every problem (constant components, gaps, irregular intervals, notes).

    Args:
        table: a table read with `allow_gaps` (so gaps and irregular intervals are listed).

    Returns:
        Lines for the terminal.
    """
    seconds = step_seconds(table.times)
    timing = (
        f"timestamps: every {format_seconds(seconds)} (median)" if seconds else "timestamps: none"
    )
    rows = []
    constant = []
    for series_id, values in zip(table.series_ids, table.values, strict=True):
        means, stds = values.mean(axis=0), values.std(axis=0)
        flat = is_constant(stds, np.abs(values).max(axis=0))
        constant += [f"{series_id}:{c}" for c, f in zip(table.components, flat, strict=True) if f]
        cells = [(_mean_text(m, s), f"{s:.6g}") for m, s in zip(means, stds, strict=True)]
        rows.append((series_id, str(len(values)), cells))
    width = [max(12, *(len(c[i][0]) for _, _, c in rows)) for i in range(len(table.components))]
    lines = [
        f"series: {len(table.series_ids)}   components: "
        + ", ".join(repr(c) for c in table.components),
        f"fingerprint: {table.fingerprint[:16]}   {timing}",
        f"{'series':>10} {'steps':>7} "
        + " ".join(
            f"{c + ' mean':>{w}} {c + ' std':>12}"
            for c, w in zip(table.components, width, strict=True)
        ),
    ]
    for series_id, steps, cells in rows:
        shown = " ".join(f"{m:>{w}} {s:>12}" for (m, s), w in zip(cells, width, strict=True))
        lines.append(f"{series_id:>10} {steps:>7} {shown}")
    problems = [f"constant component(s) {', '.join(constant)}"] if constant else []
    problems += [
        f"gap in series {g.series_id!r}: {g.length} step(s) missing from step {g.first_missing}"
        for g in table.gaps
    ]
    if table.gaps:
        problems.append("training refuses gaps: fill them in the file or pass --fill ffill")
    problems += [f"irregular interval in {i.describe()}" for i in table.irregular]
    if table.irregular:
        irregular = list(table.irregular)
        fixes = [hint] if (hint := clock_change_hint(irregular)) else []
        if not all(i.clock_change for i in irregular):
            fixes.append(
                "add the missing rows, or drop the timestamp column if the steps are what counts"
            )
        problems.append(
            f"training refuses irregular intervals as it refuses gaps: {'; '.join(fixes)}"
        )
    problems += list(table.notes)
    lines.append("problems: " + ("\n  ".join(["", *problems]) if problems else "none"))
    return "\n".join(lines)

"""The seasonal period of a data set, for the seasonal-naive reference forecast.

Found from the data: the autocorrelation (ACF) of the train parts of every series, averaged over
series and components, up to the input window (a seasonal-naive forecast repeats the last season
of its input). The season is the first local ACF maximum after the first dip that comes within
10% of the highest, so a daily cycle gives 24, not its multiple 48 or a noisy 47. When the data
scored data has a `timestamp` column (read with the table: `SeriesTable.times`), the periods its
step implies (an hour, a day, a week, a year, in steps) are checked against it: a peak within
10% of one of them is snapped to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tune_app.training.data import Dataset
from tune_app.training.timestamps import step_seconds

__all__ = ["Season", "estimate_season", "implied_periods", "mean_acf"]

NEAR_PEAK = 0.9  # a peak within 10% of the highest counts as the season
SNAP = 0.1  # an ACF peak within 10% of a period the timestamps imply is that period
CYCLES = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "year": 365.25 * 86400.0}


@dataclass(frozen=True)
class Season:
    """A seasonal period in steps, and how it was found (for the reader of a score)."""

    steps: int
    source: str


def mean_acf(dataset: Dataset, max_lag: int) -> np.ndarray:
    """Autocorrelation of the train parts (z-scored), averaged over series and components.

    Args:
        dataset: the data set; its train split points and z-score statistics are used.
        max_lag: the largest lag.

    Returns:
        [max_lag] array, entry k-1 the mean ACF at lag k (Box & Jenkins' estimator: lag-k
        autocovariance over the variance, both with the series' own mean).
    """
    total, count = np.zeros(max_lag), 0
    for values in dataset.table.values:
        train = dataset.normalise(values[: int(np.floor(dataset.config.train_frac * len(values)))])
        centred = train - train.mean(axis=0)
        variance = (centred**2).sum(axis=0)
        usable = variance > 1e-12
        if not usable.any() or len(train) <= max_lag:
            continue
        for lag in range(1, max_lag + 1):
            covariance = (centred[:-lag] * centred[lag:]).sum(axis=0)
            total[lag - 1] += float((covariance[usable] / variance[usable]).sum())
        count += int(usable.sum())
    return total / max(count, 1)


def _acf_peak(acf: np.ndarray, floor: float) -> int | None:
    """The first local maximum of the ACF after its first dip that comes within 10% of the
    highest such maximum (a lag in steps), or None without one above `floor` (noise)."""
    dip = next((i for i in range(1, len(acf)) if acf[i] > acf[i - 1]), None)
    if dip is None:
        return None
    peaks = [
        i
        for i in range(dip, len(acf))
        if acf[i] >= acf[i - 1] and (i + 1 == len(acf) or acf[i] >= acf[i + 1]) and acf[i] > floor
    ]
    if not peaks:
        return None
    best = max(float(acf[i]) for i in peaks)
    return next(i for i in peaks if acf[i] >= NEAR_PEAK * best) + 1


def implied_periods(seconds: float | None, max_lag: int) -> dict[str, int]:
    """The natural cycles (hour, day, week, year) a step of `seconds` implies, in steps,
    those between 2 and `max_lag` steps that the step divides (within 1%)."""
    if not seconds:
        return {}
    out = {}
    for name, cycle in CYCLES.items():
        steps = cycle / seconds
        if 2 <= round(steps) <= max_lag and abs(steps - round(steps)) <= 0.01 * steps:
            out[name] = round(steps)
    return out


def estimate_season(dataset: Dataset) -> Season:
    """The seasonal-naive period for `dataset` (see the module's docstring).

    Args:
        dataset: the data set (its train parts are read, and its timestamps if it has them).

    Returns:
        The period in steps (1 when the data shows none: seasonal naive is then persistence),
        at most the input window, and how it was found.
    """
    max_lag = dataset.config.input_len
    acf = mean_acf(dataset, max_lag)
    # white noise's ACF stays within 2 / sqrt(n) of zero (n: the shortest train part)
    shortest = min(int(np.floor(dataset.config.train_frac * len(v))) for v in dataset.table.values)
    peak = _acf_peak(acf, 2.0 / np.sqrt(max(shortest, 1)))
    seconds = step_seconds(dataset.table.times)
    implied = implied_periods(seconds, max_lag)
    if peak is None:
        return Season(1, "no seasonal peak in the ACF: seasonal naive equals persistence")
    for name, steps in implied.items():
        if abs(steps - peak) <= max(1, SNAP * steps):  # the timestamps give the exact period
            return Season(
                steps, f"ACF peak at lag {peak}; timestamps every {seconds:g} s: a {name}"
            )
    note = f"; timestamps imply {implied}, away from it" if implied else ""
    return Season(peak, f"ACF peak ({acf[peak - 1]:.2f}) at lag {peak}{note}")

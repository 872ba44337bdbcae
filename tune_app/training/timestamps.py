"""The `timestamp` column: read in any type and time zone, checked, never a component.

pandas and pyarrow do the parsing (timestamps with or without a zone, ISO strings with offsets
such as +01:00/+02:00 across a DST change, dates, numbers as Unix time); every time becomes
nanoseconds since 1970 UTC, so intervals across a DST change stay what they are. Per series, in
step order, times must increase; an interval far from the series' regular one (10 hours after
step 99 in hourly data) is listed as irregular, as a missing step would be, unless pandas
recognises the series' calendar frequency (business days, month starts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from tune_app.errors import InputError

__all__ = [
    "TIMESTAMP",
    "Irregular",
    "clock_change_hint",
    "format_seconds",
    "irregular_intervals",
    "step_seconds",
    "to_utc_ns",
]

TIMESTAMP = "timestamp"
REGULAR = (0.5, 1.5)  # an interval within these multiples of the series' median is regular
HOUR_NS = 3_600_000_000_000
# Where clocks change for daylight saving time: in these months (spring and autumn in either
# hemisphere), at a local hour from 00:00 to 03:59. Local times written without a UTC offset
# skip an hour there (clocks go forward) or repeat one (clocks go back).
CLOCK_CHANGE_MONTHS = frozenset({3, 4, 9, 10, 11})
CLOCK_CHANGE_HOURS = range(4)
# a number in the timestamp column is Unix time; its size says its unit (seconds until 5138)
Unit = Literal["s", "ms", "us", "ns"]
UNIX_UNITS: tuple[tuple[float, Unit], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))


def to_utc_ns(column: pd.Series, path: str) -> tuple[np.ndarray, bool]:
    """A `timestamp` column as int64 nanoseconds since 1970-01-01 UTC.

    Args:
        column: the column as pandas read it (datetime with or without a zone, date objects,
            strings, or numbers: Unix time in s, ms, us or ns, told apart by size).
        path: the file, for messages.

    Returns:
        ([rows] int64 ns, whether the times carried a zone or offset).

    Raises:
        InputError: a value that is not a time, or a missing one, named with its row.
    """
    aware = isinstance(column.dtype, pd.DatetimeTZDtype)
    try:
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            size = float(np.nanmax(np.abs(column.to_numpy(dtype=np.float64)))) if len(column) else 0
            unit: Unit = next((u for limit, u in UNIX_UNITS if size < limit), "ns")
            times = pd.to_datetime(column, unit=unit, utc=True)
        elif aware or pd.api.types.is_datetime64_dtype(column):
            times = pd.to_datetime(column, utc=True)
        else:
            texts = column.astype("string")
            aware = bool(texts.str.contains(r"(?:Z|[+-]\d\d:?\d\d)\s*$", regex=True).any())
            times = pd.to_datetime(texts, utc=True, format="mixed")
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(
            f"{path}: column {TIMESTAMP!r} is not readable as times ({str(exc).splitlines()[0]}); "
            "write ISO times such as 2024-03-31 02:00:00+02:00, or rename the column if it is "
            "not a time"
        ) from None
    missing = times.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputError(
            f"{path}: {int(missing.sum())} row(s) without a {TIMESTAMP}, first at data row {row + 1}; give every row its time (--fill ffill fills values, not times)"
        )
    return times.to_numpy(dtype="datetime64[ns]").astype(np.int64), aware


def format_seconds(seconds: float) -> str:
    """An interval for a reader.

    Args:
        seconds: the interval.

    Returns:
        `45 s`, `10 min`, `10 h`, `2 d` (the largest unit it reaches).
    """
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if abs(seconds) >= size:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


@dataclass(frozen=True)
class Irregular:
    """An interval between consecutive rows of a series far from the series' regular one:
    `seconds` from step `after_step` to the next row, where the series' intervals are usually
    `usual` seconds per step."""

    series_id: str
    after_step: int
    seconds: float
    usual: float
    clock_change: bool = False  # exactly an hour more, in local times where clocks go forward

    def describe(self) -> str:
        """The interval in words, for messages and `data inspect`.

        Returns:
            `series 's01': 10 h after step 99 (usually 1 h per step)`, with `, an hour more:
            clocks going forward?` for a likely clock change.
        """
        forward = ", an hour more: clocks going forward?" if self.clock_change else ""
        return (
            f"series {self.series_id!r}: {format_seconds(self.seconds)} after step "
            f"{self.after_step} (usually {format_seconds(self.usual)} per step{forward})"
        )


def clock_change_hint(irregular: list[Irregular]) -> str:
    """What to do about local times across a clock change, when some of `irregular` look like
    one.

    Args:
        irregular: the intervals found (`irregular_intervals`).

    Returns:
        A sentence (no final period), or "" when none is a likely clock change.
    """
    if not any(i.clock_change for i in irregular):
        return ""
    return (
        "local times without a UTC offset skip an hour when clocks go forward (02:00 to 03:00), "
        "so no row is missing there: write the times with their offset (2024-03-31 "
        "03:00:00+02:00) or in UTC"
    )


def _near_clock_change(time_ns: int) -> bool:
    """Whether a naive local time lies where clocks may change (`CLOCK_CHANGE_MONTHS`/`HOURS`)."""
    when = pd.Timestamp(time_ns)
    return when.month in CLOCK_CHANGE_MONTHS and when.hour in CLOCK_CHANGE_HOURS


def _monotone(series_id: str, steps: np.ndarray, times: np.ndarray, aware: bool, path: str) -> None:
    bad = np.flatnonzero(np.diff(times) <= 0)
    if not len(bad):
        return
    i = int(bad[0])
    shown = [str(pd.Timestamp(t, tz="UTC" if aware else None)) for t in times[i : i + 2]]
    back = int(times[i] - times[i + 1])  # clocks going back repeat less than an hour's times
    repeat = not aware and 0 <= back < HOUR_NS and _near_clock_change(int(times[i]))
    hint = (
        "; local times without a UTC offset repeat an hour when clocks go back: write "
        "them with their offset (2024-10-27 02:30:00+01:00) or in UTC"
        if repeat
        else ""
    )
    raise InputError(
        f"{path}: the {TIMESTAMP} of series {series_id!r} does not increase with its steps: step "
        f"{int(steps[i])} at {shown[0]}, step {int(steps[i + 1])} at {shown[1]}{hint}"
    )


def irregular_intervals(
    series_id: str, steps: np.ndarray, times: np.ndarray, aware: bool, path: str
) -> list[Irregular]:
    """Check one series' times and list its irregular intervals.

    Args:
        series_id: the series, for messages.
        steps: [T] its steps, increasing (a missing step counts as one interval per step).
        times: [T] int64 ns since 1970 UTC, in step order.
        aware: whether the file gave a zone (for the DST hint).
        path: the file, for messages.

    Returns:
        Every interval per step outside `REGULAR` x the series' median interval per step, none
        when pandas infers a calendar frequency for the series (`pandas.infer_freq`).

    Raises:
        InputError: times that do not increase with the steps.
    """
    _monotone(series_id, steps, times, aware, path)
    if len(times) < 3:
        return []
    per_step = np.diff(times).astype(np.float64) / np.diff(steps) / 1e9  # seconds per step
    usual = float(np.median(per_step))
    low, high = REGULAR
    odd = np.flatnonzero((per_step < low * usual) | (per_step > high * usual))
    if not len(odd):
        return []
    if (np.diff(steps) == 1).all():
        try:
            if pd.infer_freq(pd.DatetimeIndex(times.astype("datetime64[ns]"))) is not None:
                return []  # business days, month ends: regular in the calendar's terms
        except (TypeError, ValueError):
            pass
    seconds = np.diff(times).astype(np.float64) / 1e9
    consecutive = np.diff(steps) == 1
    return [
        Irregular(
            series_id,
            int(steps[i]),
            float(seconds[i]),
            usual,
            # naive local times: one hour more than usual where clocks go forward
            clock_change=bool(
                not aware
                and consecutive[i]
                and abs(seconds[i] - usual - 3600) < 1
                and _near_clock_change(int(times[i + 1]) - HOUR_NS)
            ),
        )
        for i in odd
    ]


def step_seconds(times: tuple[np.ndarray, ...] | None) -> float | None:
    """The typical interval between consecutive rows.

    Args:
        times: per series, int64 ns timestamps in step order (`SeriesTable.times`), or None.

    Returns:
        The median positive interval over every series, in seconds; None without timestamps
        or without a positive interval.
    """
    if not times:
        return None
    diffs = np.concatenate([np.diff(t) for t in times]).astype(np.float64) / 1e9
    diffs = diffs[diffs > 0]
    return float(np.median(diffs)) if len(diffs) else None

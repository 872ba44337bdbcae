"""Missing steps inside a series: found, refused with what to do, or filled (`--fill ffill`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tune_app.errors import InputError
from tune_app.training.tables import ID, STEP
from tune_app.training.timestamps import TIMESTAMP, Irregular, clock_change_hint

__all__ = ["Gap", "fill", "find_gaps", "refuse_gaps"]


@dataclass(frozen=True)
class Gap:
    """Steps missing inside a series: `length` steps from `first_missing` on."""

    series_id: str
    first_missing: int
    length: int


def find_gaps(frame: pd.DataFrame) -> list[Gap]:
    """Every run of missing steps inside each series.

    Args:
        frame: a long-format frame sorted by (series_id, step).

    Returns:
        One Gap per run of missing steps (series, first missing step, how many), in the
        frame's order; empty when every series' steps are consecutive.
    """
    steps = frame[STEP].to_numpy(dtype=np.int64)
    ids = frame[ID].to_numpy()
    jump = np.diff(steps)
    inside = (ids[1:] == ids[:-1]) & (jump > 1)
    return [Gap(str(ids[i]), int(steps[i]) + 1, int(jump[i]) - 1) for i in np.flatnonzero(inside)]


def fill(frame: pd.DataFrame, columns: list[str], how: str) -> pd.DataFrame:
    """Fill a frame's missing steps and non-finite values (`--fill ffill`): missing steps become
    rows; NaN/inf take the series' last value (its first, at the start); a new row's
    `timestamp` (int64 ns, if there is one) is interpolated from its neighbours'.

    Args:
        frame: a long-format frame sorted by (series_id, step).
        columns: the component columns to fill.
        how: the fill; only "ffill" exists.

    Returns:
        The filled frame, one row per step of each series from its first to its last.

    Raises:
        InputError: `how` is not "ffill".
    """
    if how != "ffill":
        raise InputError(
            f"--fill {how!r}: unknown; the only fill is 'ffill' (carry the last value forward)"
        )
    if find_gaps(frame):
        full = frame.groupby(ID, sort=False)[STEP].agg(["min", "max"])
        index = pd.MultiIndex.from_tuples(
            [(sid, step) for sid, (lo, hi) in full.iterrows() for step in range(lo, hi + 1)],
            names=[ID, STEP],
        )
        frame = frame.set_index([ID, STEP]).reindex(index).reset_index()
    frame[columns] = frame[columns].replace([np.inf, -np.inf], np.nan)
    grouped = frame.groupby(ID, sort=False)[columns]
    frame[columns] = grouped.ffill()
    frame[columns] = frame.groupby(ID, sort=False)[columns].bfill()
    if TIMESTAMP in frame:  # (int64 ns) a filled step's time lies between its neighbours'
        times = frame[TIMESTAMP].astype(np.float64).groupby(frame[ID], sort=False)
        interpolated = times.transform(lambda t: t.interpolate(limit_direction="both"))
        frame[TIMESTAMP] = interpolated.round().astype(np.int64)
    return frame


def refuse_gaps(gaps: list[Gap], irregular: list[Irregular], path: str) -> None:
    """Refuse missing steps, then irregular timestamp intervals, naming the first three.

    Args:
        gaps: the file's missing steps (`find_gaps`).
        irregular: its timestamp intervals far from their series' usual one.
        path: how the message names the data (`--data FILE`).

    Raises:
        InputError: with what to do (fill the file, --fill ffill, drop the timestamp column).
    """
    if gaps:
        shown = "; ".join(
            f"series {g.series_id!r} misses {g.length} step(s) from step {g.first_missing}"
            for g in gaps[:3]
        )
        more = f" (and {len(gaps) - 3} more gaps)" if len(gaps) > 3 else ""
        raise InputError(
            f"{path}: steps must be consecutive; {shown}{more}. Windows would join the values "
            "on either side of a gap; fill the file, or pass --fill ffill to carry the last "
            "value forward (see them all with `tune-app data inspect`)"
        )
    if irregular:
        shown = "; ".join(i.describe() for i in irregular[:3])
        more = f" (and {len(irregular) - 3} more)" if len(irregular) > 3 else ""
        hint = clock_change_hint(irregular)
        if all(i.clock_change for i in irregular):  # no row is missing: say only that
            raise InputError(
                f"{path}: the {TIMESTAMP} jumps an hour where clocks go forward: {shown}{more}; "
                f"{hint} (see them all with `tune-app data inspect`)"
            )
        fixes = [hint] if hint else []
        fixes.append(
            "add the missing rows with their steps (then --fill ffill fills them), or drop "
            f"the {TIMESTAMP} column if the steps are what counts"
        )
        raise InputError(
            f"{path}: the steps are consecutive but the {TIMESTAMP} jumps: {shown}{more}. "
            f"Windows would join the values on either side as if they were one step apart; "
            f"{'; '.join(fixes)} (see them all with `tune-app data inspect`)"
        )

"""The seasonal-naive period: found from the data's ACF, checked against its timestamps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_app.analysis.season import estimate_season, implied_periods
from tune_app.training.data import DataConfig, build_dataset, read_series

CONFIG = DataConfig(input_len=48, output_len=8, components=("load", "temp"))


def _write(tmp_path: Path, period: float | None, timestamps: bool, seed: int = 0) -> Path:
    """Three hourly series of 720 steps: a cycle of `period` steps (None: white noise)."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(3):
        t = np.arange(720)
        cycle = np.sin(2 * np.pi * t / period + index) if period else 0.0
        frame = pd.DataFrame(
            {
                "series_id": f"s{index}",
                "step": t,
                "load": 1e4 * (cycle + 0.3 * rng.normal(size=t.size)),
                "temp": cycle + 0.3 * rng.normal(size=t.size),
            }
        )
        if timestamps:
            frame["timestamp"] = pd.date_range("2024-01-01", periods=t.size, freq="h")
        frames.append(frame)
    path = tmp_path / "hourly.parquet"
    pd.concat(frames).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    ("period", "timestamps", "season", "said"),
    [
        (24, False, 24, "ACF peak"),  # a daily cycle: 24, not its multiple 48 or a noisy 47
        (24, True, 24, "a day"),
        (22.5, True, 24, "a day"),  # the ACF peaks near a day: the timestamps make it exact
        (12, True, 12, "away from it"),  # a 12-step cycle is not snapped to a day
        (None, False, 1, "no seasonal peak"),  # white noise: seasonal naive is persistence
    ],
)
def test_season_from_the_data(period, timestamps, season, said, tmp_path: Path):
    path = _write(tmp_path, period, timestamps)
    found = estimate_season(build_dataset(read_series(path, CONFIG), CONFIG))
    assert found.steps == season, found
    assert said in found.source


@pytest.mark.parametrize(
    ("seconds", "max_lag", "expected"),
    [
        (3600, 48, {"day": 24}),
        (3600, 200, {"day": 24, "week": 168}),
        (600, 200, {"hour": 6, "day": 144}),
        (86400, 400, {"week": 7, "year": 365}),
        (None, 48, {}),
        (5 * 3600, 48, {}),  # 5-hour steps divide no natural cycle
        (7 * 3600, 48, {"week": 24}),
    ],
)
def test_periods_a_step_implies(seconds, max_lag, expected):
    assert implied_periods(seconds, max_lag) == expected

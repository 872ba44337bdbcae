"""The built-in data set: coupled multi-component sequences, deterministic per seed.

Each series mixes a few latent signals (seasonality with its own period, a trend, level shifts
at regime changes, AR(1) noise) into its components, so components are correlated and have
autocorrelation worth learning. Noise level and regime count vary by series, so some series are
harder than others (which gives curriculum something to order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["make_synthetic"]


def _latents(rng: np.random.Generator, length: int, difficulty: float) -> np.ndarray:
    t = np.arange(length, dtype=np.float64)
    period = rng.uniform(12.0, 36.0)
    season = np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    season2 = 0.5 * np.sin(2 * np.pi * t / (period * rng.uniform(2.5, 4.0)))
    trend = rng.normal(0.0, 1.0) * t / length
    regimes = np.zeros(length)
    for _ in range(int(rng.integers(0, 2 + int(3 * difficulty)))):
        at = int(rng.integers(length // 10, length))
        regimes[at:] += rng.normal(0.0, 0.8)
    ar = np.zeros(length)
    shocks = rng.normal(0.0, 0.1 + 0.4 * difficulty, size=length)
    phi = rng.uniform(0.5, 0.9)
    for i in range(1, length):
        ar[i] = phi * ar[i - 1] + shocks[i]
    return np.stack([season, season2 + trend, regimes + ar], axis=1)


def make_synthetic(
    series: int = 6, length: int = 400, components: int = 3, seed: int = 0
) -> pd.DataFrame:
    """The built-in data set, deterministic per seed.

    Args:
        series: how many series (`s00`, `s01`, ...), >= 1.
        length: steps per series, >= 2.
        components: components per series, >= 1.
        seed: the random seed.

    Returns:
        A long-format frame: `series_id`, `step` (0..length-1), then `c0..c{components-1}`
        (float32), one row per series and step.

    Raises:
        ValueError: a count below its minimum.
    """
    if series < 1 or length < 2 or components < 1:
        raise ValueError("series >= 1, length >= 2 and components >= 1 are required")
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(series):
        difficulty = index / max(series - 1, 1)
        latent = _latents(rng, length, difficulty)
        mixing = rng.normal(0.0, 1.0, size=(latent.shape[1], components))
        mixing[0] += 1.0  # every component carries the seasonality
        values = latent @ mixing + rng.normal(0.0, 0.05, size=(length, components))
        # a lagged coupling: component i follows component i-1 with a delay
        for c in range(1, components):
            values[3:, c] += 0.5 * values[:-3, c - 1]
        frame = pd.DataFrame(
            values.astype(np.float32), columns=[f"c{c}" for c in range(components)]
        )
        frame.insert(0, "step", np.arange(length, dtype=np.int64))
        frame.insert(0, "series_id", f"s{index:02d}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)

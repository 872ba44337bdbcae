"""Shared by the benchmarks: the demo-size setup and writing results to results/benchmarks/."""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from tune_app.training.checkpoint import package_versions
from tune_app.training.data import DataConfig, build_dataset, open_series
from tune_app.training.model import ModelConfig

DEMO_DATA = DataConfig(stride=2)
DEMO_MODEL = ModelConfig(components=3, hidden=32)
RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def demo_dataset():  # type: ignore[no-untyped-def]
    return build_dataset(open_series(None, DEMO_DATA), DEMO_DATA)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean of `values` and their sample standard deviation (ddof=1, the estimate of the
    seeds' spread; the population std, ddof=0, would show 2 seeds' gap halved), or None for a
    single value, which has no spread.

    Raises:
        statistics.StatisticsError: `values` is empty.
    """
    mean = statistics.mean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else None


def format_spread(mean: float, std: float | None, digits: int = 4) -> str:
    """`mean +- std`; with no std (one seed): `mean (1 seed)`."""
    if std is None:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} +- {std:.{digits}f}"


def spread(values: list[float], digits: int = 4) -> str:
    """`mean +- std` of `values`, the std the sample one (ddof=1; 2 seeds 0.2 and 0.3 show
    +- 0.0707, not half their gap); one value alone is no spread: `mean (1 seed)`."""
    return format_spread(*mean_std(values), digits=digits)


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        **payload,
        "machine": platform.platform(),
        "cpus": __import__("os").cpu_count(),
        "versions": package_versions(),
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def stamps_callback(stamps: list[float]):  # type: ignore[no-untyped-def]
    """A trainer callback appending the time at the end of every epoch to `stamps`."""
    from tune_app.training.monitors import Callback

    class Stamp(Callback):
        def on_epoch_end(self, metrics, state):  # type: ignore[no-untyped-def]
            stamps.append(time.perf_counter())

    return Stamp()

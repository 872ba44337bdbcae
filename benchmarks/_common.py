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


def spread(values: list[float], digits: int = 4) -> str:
    """`mean +- std` (population std) of `values`; one value alone is no spread: `mean (1 seed)`."""
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} +- {statistics.pstdev(values):.{digits}f}"


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

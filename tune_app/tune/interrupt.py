"""Ctrl-C during a Tune run, answered with tune_app's own resume command.

On the first Ctrl-C Ray Tune stops the run gracefully (it saves the experiment state once more),
logs how to resume it with its own API (`Tuner.restore(path=..., trainable=...)`, which a
tune_app user cannot call) and returns from `Tuner.fit()` as if the run had ended. `fit` below
drops that line, notes the interruption and raises `Interrupted` carrying the flags that resume
the run through `tune-app ... --resume --name ...`; a second Ctrl-C (Ray's "skip the last save")
arrives as KeyboardInterrupt and gets the same answer.
"""

from __future__ import annotations

import logging
from typing import Any

from tune_app.errors import Interrupted
from tune_app.runs.storage import Location
from tune_app.tune._ray_internals import show_workers
from tune_app.tune.preflight import ray_state_saved

__all__ = ["RayInterruptWatch", "fit"]

RAY_TUNE_LOGGER = "ray.tune.tune"  # where tune.run logs "Stop signal received" and the hint


class RayInterruptWatch(logging.Filter):
    """A filter on Ray Tune's logger: notes the stop signal, drops Ray's own resume hint."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if "Stop signal received" in text:
            self.interrupted = True
        if "has been interrupted" in text or ".restore(" in text:
            self.interrupted = True
            return False  # Ray's hint names its Python API; the CLI prints tune_app's command
        return True


def fit(tuner: Any, location: Location, storage: str) -> Any:
    """`tuner.fit()`; raises Interrupted on Ctrl-C: with --resume --name --storage once Ray has
    saved the run's state, else without flags ("nothing was saved yet; run the command
    again", which starts the run again under its name: runner.claim). Once `fit` returns or
    raises, Ray's workers are no longer printed (`_ray_internals.show_workers`)."""
    watch = RayInterruptWatch()
    logger = logging.getLogger(RAY_TUNE_LOGGER)
    logger.addFilter(watch)
    flags: dict[str, str | None] = {"--resume": None, "--name": location.name, "--storage": storage}
    show_workers(True)
    try:
        grid = tuner.fit()
    except KeyboardInterrupt:
        raise Interrupted(_resumable(location, flags)) from None
    finally:
        logger.removeFilter(watch)
        show_workers(False)  # what Ray's workers write as they are stopped is not the run's
    if watch.interrupted:
        raise Interrupted(_resumable(location, flags))
    return grid


def _resumable(location: Location, flags: dict[str, str | None]) -> dict[str, str | None] | None:
    """The flags that resume the run, or None where Ray saved nothing of it (fresh-s3b: a
    Ctrl-C as Ray started printed a --resume that was refused)."""
    return flags if ray_state_saved(location) else None

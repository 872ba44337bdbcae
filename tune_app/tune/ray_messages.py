"""Ray's log records that tell a tune_app user nothing, dropped from the terminal.

Tune builds an `ExperimentAnalysis` of the run when `Tuner.restore` reads it back and again when
`Tuner.fit` returns its ResultGrid; for every trial without a result file it logs "Failed to
fetch metrics for N trial(s): - trial-00: FileNotFoundError('Could not fetch metrics ...')"
(logger `ray.tune.analysis.experiment_analysis`). A trial has no result file until its first
epoch: after a Ctrl-C as Ray started, and on the `--resume` of such a run, the warning was
printed though nothing failed (fresh-s3, fresh-s3b). tune_app reads a run's results from its own
records (runs/results.py), not from those data frames.
"""

from __future__ import annotations

import logging

__all__ = ["RAY_ANALYSIS_LOGGER", "NoResultYet"]

RAY_ANALYSIS_LOGGER = "ray.tune.analysis.experiment_analysis"


class NoResultYet(logging.Filter):
    """Drops Tune's "Failed to fetch metrics" warning when every trial it lists only lacks a
    result file (FileNotFoundError "Could not fetch metrics ..."); a warning that lists any
    other error is kept whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith("Failed to fetch metrics"):
            return True
        failures = [line for line in text.splitlines()[1:] if line.startswith("- ")]
        return not failures or not all(
            "FileNotFoundError(" in line and "Could not fetch metrics" in line for line in failures
        )

    @classmethod
    def install(cls) -> None:
        """Put the filter on Tune's analysis logger, once per process."""
        logger = logging.getLogger(RAY_ANALYSIS_LOGGER)
        if not any(isinstance(existing, cls) for existing in logger.filters):
            logger.addFilter(cls())

"""A capacity search's parameter importances, as data: how much each capacity parameter
mattered to the best val_free_loss, by Optuna's PED-ANOVA, on the search space the run recorded
in its manifest (a `--space` file's bounds, not the package's `capacity.yaml`).
"""

from __future__ import annotations

import math

import pandas as pd

from tune_app.analysis.outcome import TrialMetrics
from tune_app.plan.search_space import SearchSpace, load_space, to_optuna
from tune_app.runs.records import CAPACITY_KEY
from tune_app.runs.results import Run

__all__ = ["parameter_importances", "recorded_space"]


def recorded_space(run: Run, default: str, kind: str) -> SearchSpace:
    """The search space `run` searched: as its manifest recorded it (a `--space` file's content
    included), else, for a run from before spaces were recorded, the package's `default`.

    Args:
        run: a search or capacity run.
        default: the package's space file for `kind` (e.g. "capacity.yaml").
        kind: "pbt" or "capacity".

    Returns:
        The validated space.

    Raises:
        InputError: the recorded space is not a valid one (a hand-edited manifest).
    """
    manifest = run.manifest
    if manifest.space_content is not None:
        source = manifest.space or f"the space {run.location.uri} recorded"
        return SearchSpace.from_dict(manifest.space_content, source, manifest.space_file)
    return load_space(None, default, kind)


def parameter_importances(run: Run, entries: list[TrialMetrics]) -> pd.DataFrame | None:
    """How much each capacity parameter mattered to the best val_free_loss, by Optuna's
    PED-ANOVA importance (`optuna.importance.PedAnovaImportanceEvaluator`: how much each
    parameter matters to reaching the best 10 % of trials) over the finished trials, each
    scored by its best val_free_loss, on the space the run recorded (`recorded_space`).

    Args:
        run: a capacity run.
        entries: its trials (`trial_metrics`).

    Returns:
        One row per parameter (`parameter`, `importance`, summing to 1, largest first); None
        with fewer than two trials that have a score.

    Raises:
        InputError: the run's recorded space is not a valid one.
    """
    import optuna

    distributions = to_optuna(recorded_space(run, "capacity.yaml", "capacity"))
    trials = []
    for entry in entries:
        capacity = entry.trial.params.get(CAPACITY_KEY)
        if capacity and math.isfinite(entry.best):
            params = {k: v for k, v in capacity.items() if k in distributions}
            trials.append(
                optuna.trial.create_trial(
                    params=params,
                    distributions={k: distributions[k] for k in params},
                    value=entry.best,
                )
            )
    if len(trials) < 2:
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    study.add_trials(trials)
    # named, so the page says which: Optuna 5's default (4's was fANOVA, which raises on the
    # few, alike trials a small capacity search has); deterministic
    evaluator = optuna.importance.PedAnovaImportanceEvaluator()
    importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return pd.DataFrame(
        {
            "parameter": list(importances),
            "importance": [round(float(v), 4) for v in importances.values()],
        }
    )

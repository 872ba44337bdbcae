"""Phase-boundary Population Based Training, with a protected control and a journal.

What it adds to Ray's `PopulationBasedTraining`:
- perturbations only at multiples of the interval (phase boundaries by default), decided from the
  epoch itself, so a restored run (whose scheduler state Ray does not keep) perturbs at the same
  epochs as an uninterrupted one;
- every mutation clamped to the search space's bounds (Ray's factors are not);
- the control trial (the seed plan, unmodified) is never exploited or explored;
- a trial with a non-finite score (diverged) is never a donor;
- each exploit/explore journalled atomically to the run's storage (`pbt_journal.jsonl`), which
  `tune-app best` turns into the winner's lineage.
"""

from __future__ import annotations

import json
import math
import random
import time
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from tune_app.plan.search_space import SearchSpace
from tune_app.runs.storage import Location
from tune_app.tune.trainable import MEMBER_KEY

__all__ = ["JOURNAL", "MEMBER_KEY", "Journal", "PhaseBoundaryPBT", "population"]

JOURNAL = "pbt_journal.jsonl"


class Journal:
    """An append-only list of events, rewritten whole (atomically) on every append."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._events: list[dict[str, Any]] | None = None

    def events(self) -> list[dict[str, Any]]:
        if self._events is None:  # first use, also after a restore: what the file holds
            file = self.location.join(JOURNAL)
            text = file.read_text() if file.exists() else ""
            self._events = [json.loads(line) for line in text.splitlines() if line.strip()]
        return self._events

    def append(self, event: dict[str, Any]) -> None:
        events = [*self.events(), event]
        self.location.join(JOURNAL).write_bytes(
            "".join(json.dumps(e) + "\n" for e in events).encode()
        )
        self._events = events

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "_events": None}


def population(space: SearchSpace, size: int, seed: int) -> list[dict[str, Any]]:
    """The starting members: the control first, then `size - 1` draws from the initial ranges."""
    rng = random.Random(seed)
    members = [{"index": 0, "control": True, "params": space.neutral()}]
    members += [{"index": i, "control": False, "params": space.sample(rng)} for i in range(1, size)]
    return members


def _unused_explore(config: dict[str, Any]) -> dict[str, Any]:
    return config  # Ray requires an explore hook; `_get_new_config` below does the real work


class PhaseBoundaryPBT(PopulationBasedTraining):
    def __init__(
        self,
        space: SearchSpace,
        interval: int,
        journal: Journal,
        seed: int = 0,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
    ) -> None:
        super().__init__(
            time_attr="epoch",  # not training_iteration: a trial resumed from a newer own checkpoint skips iterations
            metric="val_free_loss",
            mode="min",
            perturbation_interval=interval,
            custom_explore_fn=_unused_explore,
            quantile_fraction=quantile_fraction,
            resample_probability=resample_probability,
            log_config=False,
        )
        self.space = space
        self.journal = journal
        self.rng = random.Random(seed)

    @staticmethod
    def is_control(trial: Trial) -> bool:
        return bool(trial.config.get(MEMBER_KEY, {}).get("control"))

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if result.get("diverged"):
            return TrialScheduler.CONTINUE  # it ends by itself; never ranked
        now = result.get(self._time_attr)
        if now is None or now % self._perturbation_interval:
            return TrialScheduler.CONTINUE
        # Boundaries by epoch, not by time since the last perturbation: Ray does not restore
        # that state, and a restored trial must perturb where an unbroken one would.
        self._trial_state[trial].last_perturbation_time = now - self._perturbation_interval
        return str(super().on_trial_result(tune_controller, trial, result))

    def _quantiles(self) -> tuple[list[Trial], list[Trial]]:
        lower, upper = super()._quantiles()
        upper = [t for t in upper if math.isfinite(self._trial_state[t].last_score or math.nan)]
        lower = [t for t in lower if not self.is_control(t)] if upper else []
        return lower, upper

    def _get_new_config(
        self, trial: Trial, trial_to_clone: Trial
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        donor = trial_to_clone.config[MEMBER_KEY]
        params = self.space.mutate(donor["params"], self.rng, self._resample_probability)
        new_config = {
            **trial_to_clone.config,
            MEMBER_KEY: {
                "index": trial.config[MEMBER_KEY]["index"],
                "control": False,
                "params": params,
            },
        }
        operations = {k: f"{donor['params'].get(k)} -> {v}" for k, v in params.items()}
        return new_config, operations

    def _loss(self, score: float | None) -> float | None:
        return None if score is None else float(score) * float(self._metric_op or 1.0)

    def _exploit(self, tune_controller: Any, trial: Trial, trial_to_clone: Trial) -> None:
        assert not self.is_control(trial), "the control is never exploited"
        before = trial.config[MEMBER_KEY]["params"]
        donor_state = self._trial_state[trial_to_clone]
        super()._exploit(tune_controller, trial, trial_to_clone)
        result: dict[str, Any] = dict(donor_state.last_result or {})
        self.journal.append(
            {
                "epoch": int(
                    result.get("epoch", donor_state.last_train_time)
                ),  # the donor's checkpoint
                "trial": trial.trial_id,
                "donor": trial_to_clone.trial_id,
                "val_free_loss": self._loss(self._trial_state[trial].last_score),
                "donor_val_free_loss": self._loss(donor_state.last_score),
                "old": before,
                "donor_params": trial_to_clone.config[MEMBER_KEY]["params"],
                "new": trial.config[MEMBER_KEY]["params"],
                "time": time.time(),
            }
        )

"""Callbacks of the training loop, and what the plan says to watch, one concern per monitor:
plateaus, the train/val gap, divergence.

Each monitor sees every epoch's metrics and returns the metrics it adds.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tune_app.plan.plan import Plan
from tune_app.training.metrics import BEST_VAL_FREE_LOSS, EPOCH, TRAIN_LOSS, VAL_FREE_LOSS, VAL_LOSS

__all__ = [
    "EXPLOSION_FACTOR",
    "BoundaryRule",
    "Callback",
    "DivergenceMonitor",
    "EpochState",
    "GapMonitor",
    "PlateauMonitor",
    "StopAfter",
    "monitors",
]


@dataclass(frozen=True)
class EpochState:
    """What an epoch leaves for `Callback.on_epoch_end`: `checkpoint_due` at a phase boundary
    (or every `checkpoint_every` epochs); `state()` builds the full state to save (model,
    optimizer, RNG, epoch, plan, configs, history), only for callers that save it."""

    epoch: int
    plan: Plan
    history: list[dict[str, float]]
    checkpoint_due: bool
    state: Callable[[], dict[str, Any]]


class Callback:
    """A hook per moment of the loop (Lightning's shape); every hook does nothing by default."""

    def on_train_start(self, history: list[dict[str, float]]) -> None:
        """Before the first epoch.

        Args:
            history: the metrics of the epochs a resumed run already did (empty for a new run).
        """

    def on_validation_end(self, metrics: dict[str, float]) -> dict[str, float]:
        """After validation, before the epoch is reported.

        Args:
            metrics: the epoch's metrics so far (losses, settings).

        Returns:
            The metrics this callback adds to the epoch's (none by default).
        """
        return {}

    def on_phase_end(self, epoch: int, history: list[dict[str, float]], plan: Plan) -> Plan | None:
        """At a phase boundary.

        Args:
            epoch: the phase's last epoch.
            history: every epoch's metrics so far.
            plan: the plan in force.

        Returns:
            The plan from `epoch + 1` on, or None to keep it.
        """
        return None

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        """At the end of an epoch: report it, save it.

        Args:
            metrics: the epoch's metrics, every callback's additions included.
            state: the epoch, plan, history, whether a checkpoint is due, and how to build the
                state to save.
        """

    def should_stop(self, epoch: int) -> bool:
        """Whether training ends after this epoch.

        Args:
            epoch: the epoch just finished.

        Returns:
            True to stop (never, by default).
        """
        return False


class StopAfter(Callback):
    """End training after `epoch` (a replay stops at the exported checkpoint's epoch)."""

    def __init__(self, epoch: int | None) -> None:
        self.epoch = epoch

    def should_stop(self, epoch: int) -> bool:
        """Whether training ends after this epoch.

        Args:
            epoch: the epoch just finished.

        Returns:
            True from the epoch given at construction on; never without one.
        """
        return self.epoch is not None and epoch >= self.epoch


class BoundaryRule(Callback):
    """A plan-level rule `(epoch, history, plan) -> Plan | None` (e.g. rules.MonitorRules)."""

    def __init__(self, rule: Callable[[int, list[dict[str, float]], Plan], Plan | None]) -> None:
        self.rule = rule

    def on_phase_end(self, epoch: int, history: list[dict[str, float]], plan: Plan) -> Plan | None:
        """Apply the rule at a phase boundary.

        Args:
            epoch: the phase's last epoch.
            history: every epoch's metrics so far.
            plan: the plan in force.

        Returns:
            The rule's plan from `epoch + 1` on, or None where it does not act.
        """
        return self.rule(epoch, history, plan)


class _Monitor(Callback, ABC):
    def on_train_start(self, history: list[dict[str, float]]) -> None:
        for row in history:  # a resumed run picks up where it was
            self.update(row)

    def on_validation_end(self, metrics: dict[str, float]) -> dict[str, float]:
        return self.update(metrics)

    @abstractmethod
    def update(self, metrics: dict[str, float]) -> dict[str, float]:
        """The metrics this monitor adds, given the epoch's."""


class PlateauMonitor(_Monitor):
    """Epochs since `val_free_loss` last improved; a plateau once that exceeds `patience`
    (the plan: "if plateau lasts >30 epochs, consider adjusting learning rate")."""

    def __init__(self, patience: int = 30) -> None:
        self.patience = patience
        self.best = math.inf
        self.best_epoch = 0

    def update(self, metrics: dict[str, float]) -> dict[str, float]:
        """Track the best free-running validation loss.

        Args:
            metrics: the epoch's metrics (`epoch`, `val_free_loss`).

        Returns:
            `best_val_free_loss`, `epochs_since_best`, and `plateau` (1.0 when that exceeds the
            patience, else 0.0).
        """
        epoch = int(metrics[EPOCH])
        if metrics[VAL_FREE_LOSS] < self.best:
            self.best, self.best_epoch = metrics[VAL_FREE_LOSS], epoch
        since = epoch - self.best_epoch
        return {
            BEST_VAL_FREE_LOSS: self.best,
            "epochs_since_best": since,
            "plateau": float(since > self.patience),
        }


class GapMonitor(_Monitor):
    """val_loss - train_loss, and how much it grew over the last `window` epochs
    (the plan: "if gap widens, consider increasing regularization")."""

    def __init__(self, window: int = 10) -> None:
        self.recent: deque[float] = deque(maxlen=window + 1)

    def update(self, metrics: dict[str, float]) -> dict[str, float]:
        """The train/val gap and how it moved.

        Args:
            metrics: the epoch's metrics (`val_loss`, `train_loss`).

        Returns:
            `gap` (val_loss - train_loss) and `gap_change` (its growth over the window's epochs).
        """
        gap = metrics[VAL_LOSS] - metrics[TRAIN_LOSS]
        self.recent.append(gap)
        return {"gap": gap, "gap_change": gap - self.recent[0]}


EXPLOSION_FACTOR = 1e6


class DivergenceMonitor:
    """Training has diverged when a loss is NaN or infinite, or when it exceeds
    `EXPLOSION_FACTOR` (1e6) times the same loss at the run's first epoch: a learning rate far too
    high can drive the loss to a finite 1e25 that no later epoch recovers from. The first epoch
    is the run's epoch 1 (kept in a resumed run's history), so the yardstick never moves.
    """

    def __init__(self, factor: float = EXPLOSION_FACTOR) -> None:
        self.factor = factor
        self.first: dict[str, float] = {}

    def start_from(self, history: list[dict[str, float]]) -> None:
        """Take the first epoch's losses (the references) from a resumed run's history.

        Args:
            history: the metrics of the epochs already done, oldest first.
        """
        for name, value in (history[0] if history else {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                self.first[name] = float(value)

    def check(self, name: str, value: float) -> str | None:
        """Whether a loss has diverged; the first finite value seen of each loss is its reference.

        Args:
            name: the loss (`train_loss`, `val_loss`, ...).
            value: its value at this epoch.

        Returns:
            Why it counts as divergence (NaN/inf, or above the factor times the first epoch's), or
            None while it does not.
        """
        if not math.isfinite(value):
            return f"{name} = {value}"
        first = self.first.setdefault(name, value)
        if first > 0 and value > self.factor * first:
            return f"{name} = {value:.3g}, over {self.factor:.0e} x the first epoch's {first:.3g}"
        return None


def monitors(plateau_epochs: int) -> list[Callback]:
    """The plan's monitors, in the order their metrics are added: the gap, then plateaus.

    Args:
        plateau_epochs: epochs without a new best that make a plateau (`--plateau-epochs`).

    Returns:
        A GapMonitor and a PlateauMonitor.
    """
    return [GapMonitor(), PlateauMonitor(plateau_epochs)]

"""What the plan says to watch, one concern per monitor: plateaus, the train/val gap, divergence.

Each monitor sees every epoch's metrics and returns the metrics it adds.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["EXPLOSION_FACTOR", "DivergenceMonitor", "GapMonitor", "PlateauMonitor"]

EXPLOSION_FACTOR = 1e6


class PlateauMonitor:
    """Epochs since `val_free_loss` last improved; a plateau once that exceeds `patience`
    (the plan: "if plateau lasts >30 epochs, consider adjusting learning rate")."""

    def __init__(self, patience: int = 30) -> None:
        self.patience = patience
        self.best = math.inf
        self.best_epoch = 0

    def update(self, metrics: dict[str, float]) -> dict[str, float]:
        epoch = int(metrics["epoch"])
        if metrics["val_free_loss"] < self.best:
            self.best, self.best_epoch = metrics["val_free_loss"], epoch
        since = epoch - self.best_epoch
        return {
            "best_val_free_loss": self.best,
            "epochs_since_best": since,
            "plateau": float(since > self.patience),
        }


class GapMonitor:
    """val_loss - train_loss, and how much it grew over the last `window` epochs
    (the plan: "if gap widens, consider increasing regularization")."""

    def __init__(self, window: int = 10) -> None:
        self.recent: deque[float] = deque(maxlen=window + 1)

    def update(self, metrics: dict[str, float]) -> dict[str, float]:
        gap = metrics["val_loss"] - metrics["train_loss"]
        self.recent.append(gap)
        return {"gap": gap, "gap_change": gap - self.recent[0]}


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
        """Take the first epoch's losses from a resumed run's history."""
        for name, value in (history[0] if history else {}).items():
            if isinstance(value, int | float) and math.isfinite(value):
                self.first[name] = float(value)

    def check(self, name: str, value: float) -> str | None:
        """Why `value` of loss `name` at this epoch means divergence, or None while it does not.
        The first finite value seen becomes the reference."""
        if not math.isfinite(value):
            return f"{name} = {value}"
        first = self.first.setdefault(name, value)
        if first > 0 and value > self.factor * first:
            return f"{name} = {value:.3g}, over {self.factor:.0e} x the first epoch's {first:.3g}"
        return None

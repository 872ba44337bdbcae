"""What the plan says to watch, one concern per monitor: plateaus and the train/val gap.

Each monitor sees every epoch's metrics and returns the metrics it adds.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["GapMonitor", "PlateauMonitor"]


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

"""The names of the metrics a training run reports every epoch, defined once.

The trainer (`trainer.py`) and its monitors (`monitors.py`) write them; Tune's schedulers, the
run records, `best`, `compare` and the report read them. A metric that ranks trials or picks the
best checkpoint is named here, never as a string literal elsewhere.
"""

from __future__ import annotations

__all__ = [
    "BEST_VAL_FREE_LOSS",
    "DIVERGED",
    "EPOCH",
    "RANK_METRIC",
    "RANK_MODE",
    "TRAIN_LOSS",
    "VAL_FREE_LOSS",
    "VAL_FREE_MSE",
    "VAL_LOSS",
]

EPOCH = "epoch"  # 1-based epoch the metrics were measured after; Tune's time attribute
TRAIN_LOSS = "train_loss"  # the epoch's mean training loss under the trial's own objective
VAL_LOSS = "val_loss"  # validation loss, teacher forced, under the fixed reference objective
# free-running validation loss under the fixed reference objective (ARCHITECTURE.md: the
# yardstick never moves): what searches rank on and what "best" means
VAL_FREE_LOSS = "val_free_loss"
VAL_FREE_MSE = "val_free_mse"  # the MSE part of it alone, in the train split's z-units
BEST_VAL_FREE_LOSS = "best_val_free_loss"  # the lowest VAL_FREE_LOSS so far in the trial
RANK_METRIC, RANK_MODE = VAL_FREE_LOSS, "min"  # how trials and checkpoints are compared
# 1.0 in the last report of a trial whose loss diverged (a Tune trial's only; see DivergedError)
DIVERGED = "diverged"

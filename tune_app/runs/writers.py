"""What a run saves as it trains, as trainer callbacks: checkpoints (state.pt, meta.json,
metrics.parquet) at phase boundaries, and the full state of the best epoch so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from tune_app.runs.records import META_FILE, METRICS_FILE, CheckpointMeta
from tune_app.training.checkpoint import (
    atomic_write_bytes,
    code_fingerprint,
    package_versions,
    save_checkpoint,
    state_bytes,
)
from tune_app.training.data import Dataset, absolute_data_path
from tune_app.training.monitors import Callback, EpochState

__all__ = ["BestStateWriter", "CheckpointWriter", "history_parquet"]


def history_parquet(history: list[dict[str, float]]) -> bytes:
    """Every epoch's metrics as the bytes of a `metrics.parquet`."""
    return pd.DataFrame(history).to_parquet(index=False)


class CheckpointWriter(Callback):
    """At every epoch the trainer marks `checkpoint_due`: `out_dir/checkpoints/epoch_NNNNN/`
    (state.pt, meta.json, metrics.parquet), written atomically; `last` is the newest."""

    def __init__(
        self,
        out_dir: Path,
        data: Dataset,
        data_path: str | None,
        params: dict[str, Any] | None = None,
        version: int = 0,
    ) -> None:
        self.out_dir, self.data, self.params, self.version = out_dir, data, params, version
        self.data_path = absolute_data_path(data_path)
        self.last: Path | None = None

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        if not state.checkpoint_due:
            return
        meta = CheckpointMeta(
            epoch=state.epoch,
            phase=int(metrics["phase"]),
            metrics=metrics,
            data_fingerprint=self.data.fingerprint,
            components=tuple(self.data.components),
            plan=state.plan.to_dict(),
            code_fingerprint=code_fingerprint(),
            versions=package_versions(),
            data_path=self.data_path,
            params=self.params,
            version=self.version,
            normalisation=self.data.normalisation,
        )
        history = history_parquet(state.history)
        self.last = save_checkpoint(
            self.out_dir / "checkpoints" / f"epoch_{state.epoch:05d}",
            {**state.state(), "data_path": self.data_path},
            {META_FILE: meta.to_json(), METRICS_FILE: history},
        )


class BestStateWriter(Callback):
    """The full state of the epoch with the best `val_free_loss` so far, in one file (the
    seed's `best_model_combined.pth`; `tune-app continue --model_path` takes it)."""

    def __init__(self, file: Path, data_path: str | None) -> None:
        self.file, self.data_path = file, absolute_data_path(data_path)

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        if metrics["epochs_since_best"] == 0:
            full = {**state.state(), "data_path": self.data_path}
            atomic_write_bytes(self.file, state_bytes(full))

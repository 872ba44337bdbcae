"""Tune's per-trial logs survive a trial that restarts on a reused worker.

Tune's logger callbacks write `result.json` and `progress.csv` in the driver's staging folder
and upload them to the run's storage from time to time. When a trial starts again (after a PBT
round, on a reused actor), they first download the storage copy over the staging one, so the
rows written since the last upload are lost. This callback, which Tune calls before its own
loggers, uploads the staging copy first whenever it is the longer one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
from ray.tune import Callback
from ray.tune.experiment import Trial

__all__ = ["KeepTrialLogs"]

FILES = ("result.json", "progress.csv")


class KeepTrialLogs(Callback):
    """Upload a restarting trial's newer local logs before Tune restores the stored ones."""

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        storage = trial.storage
        if storage is None or trial.local_path is None:
            return
        for name in FILES:
            local = Path(trial.local_path, name)
            remote = f"{storage.trial_fs_path}/{name}"
            if not local.exists() or str(local) == remote:
                continue
            info_remote = storage.storage_filesystem.get_file_info(remote)
            stored = info_remote.size if info_remote.type == pafs.FileType.File else -1
            if local.stat().st_size > (stored or 0):
                pafs.copy_files(
                    str(local),
                    remote,
                    source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=storage.storage_filesystem,
                )

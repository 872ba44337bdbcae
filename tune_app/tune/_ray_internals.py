"""Every use of Ray's private API by tune/trainable.py, in one place, checked at import.

`tune/pbt.py` overrides private methods of `PopulationBasedTraining` (its own concern). Here:
Tune's `StorageContext` (reached through `tune.get_context().get_storage()`, a developer API),
whose `current_checkpoint_index` and `_make_checkpoint_dir_name` name a trial's next checkpoint
folder. A Ray upgrade that drops them fails at import with what to install, never silently.
"""

from __future__ import annotations

import inspect

import ray
from ray import tune
from ray.train._internal.storage import StorageContext

__all__ = ["TESTED_RAY", "next_checkpoint_path", "skip_checkpoint_index", "trial_storage"]

TESTED_RAY = ">=2.60,<2.61"  # as pyproject.toml pins ray[tune]


def _check() -> None:
    missing = []
    if not callable(getattr(StorageContext, "_make_checkpoint_dir_name", None)):
        missing.append("StorageContext._make_checkpoint_dir_name")
    if "current_checkpoint_index" not in inspect.signature(StorageContext.__init__).parameters:
        missing.append("StorageContext.current_checkpoint_index")
    if missing:
        raise ImportError(
            f"tune_app uses Ray's private {', '.join(missing)}, which ray {ray.__version__} "
            f"lacks; tune_app is tested with ray[tune]{TESTED_RAY}: install that version"
        )


_check()


def trial_storage() -> StorageContext:
    """The running trial's storage context (its filesystem and folder)."""
    storage: StorageContext = tune.get_context().get_storage()
    return storage


def next_checkpoint_path(storage: StorageContext) -> str:
    """Where Tune writes the trial's next checkpoint (it adds 1 to the index, then writes)."""
    name = storage._make_checkpoint_dir_name(storage.current_checkpoint_index + 1)
    return f"{storage.trial_fs_path}/{name}"


def skip_checkpoint_index(storage: StorageContext) -> None:
    """Move Tune's checkpoint index past one folder."""
    storage.current_checkpoint_index += 1

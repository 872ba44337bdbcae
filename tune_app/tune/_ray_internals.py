"""Every use of Ray's private API, in one place, checked at import.

- Tune's `StorageContext` (reached through `tune.get_context().get_storage()`, a developer API),
  whose `current_checkpoint_index` and `_make_checkpoint_dir_name` name a trial's next
  checkpoint folder (tune/trainable.py).
- PB2's GP-bandit selection, `ray.tune.schedulers.pb2._select_config` (tune/explore.py).

The PBT scheduler itself (tune/pbt.py) subclasses only Ray's public `FIFOScheduler`. A Ray
upgrade that drops any name below fails with what to install, never silently: the storage names
at import, PB2's when a PB2 search is launched (`check_pb2`, before Ray starts). PB2's module is
imported only then: it pulls in scikit-learn and scipy (~1.4 s), which every trial worker would
otherwise pay when it starts.
"""

from __future__ import annotations

import inspect
from typing import Any

import ray
from ray import tune
from ray.train._internal.storage import StorageContext

__all__ = [
    "TESTED_RAY",
    "check_pb2",
    "next_checkpoint_path",
    "pb2_select_config",
    "skip_checkpoint_index",
    "trial_storage",
]

TESTED_RAY = ">=2.60,<2.61"  # as pyproject.toml pins ray[tune]


def _missing(names: list[str]) -> ImportError:
    return ImportError(
        f"tune_app uses Ray's private {', '.join(names)}, which ray {ray.__version__} lacks; "
        f"tune_app is tested with ray[tune]{TESTED_RAY}: install that version"
    )


def _check() -> None:
    missing = []
    if not callable(getattr(StorageContext, "_make_checkpoint_dir_name", None)):
        missing.append("StorageContext._make_checkpoint_dir_name")
    if "current_checkpoint_index" not in inspect.signature(StorageContext.__init__).parameters:
        missing.append("StorageContext.current_checkpoint_index")
    if missing:
        raise _missing(missing)


_check()


def _pb2_select() -> Any:
    """Ray's module-private PB2 selection function (imports scikit-learn)."""
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise ImportError("--scheduler pb2 needs scikit-learn: pip install scikit-learn") from exc
    try:
        from ray.tune.schedulers.pb2 import _select_config
    except ImportError as exc:  # only on another Ray
        raise _missing(["ray.tune.schedulers.pb2._select_config"]) from exc
    return _select_config


def check_pb2() -> None:
    """Whether PB2 can run here.

    Raises:
        ImportError: scikit-learn is missing, or this Ray lacks PB2's selection function; the
            message says what to install.
    """
    _pb2_select()


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


def pb2_select_config(
    X: Any, y: Any, current: Any, newpoint: Any, bounds: dict[str, tuple[float, float]], num_f: int
) -> Any:
    """Ray's PB2 selection: fit the time-varying GP to (X, y), maximise UCB at `newpoint`
    (Parker-Holder et al., 2020).

    Args:
        X: (n, num_f + d) rows of (epoch, reward before, d parameters), unnormalised.
        y: (n,) reward gained per epoch.
        current: (m, d) parameters of members that keep training, or None.
        newpoint: (num_f,) the (epoch, reward) of the weights the new parameters start from.
        bounds: name -> (low, high) for the d parameters, in order.
        num_f: the number of fixed columns (2).

    Returns:
        (d,) the chosen parameters.

    Raises:
        ImportError: without scikit-learn, which Ray's PB2 needs.
    """
    return _pb2_select()(X, y, current, newpoint, bounds, num_f)

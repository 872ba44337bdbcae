"""Every use of Ray's private API, in one place, checked at import.

- Tune's `StorageContext` (reached through `tune.get_context().get_storage()`, a developer API),
  whose `current_checkpoint_index` and `_make_checkpoint_dir_name` name a trial's next
  checkpoint folder (tune/trainable.py).
- PB2's GP-bandit selection, `ray.tune.schedulers.pb2._select_config` (tune/explore.py), run
  as Ray wrote it but for one thing: its acquisition search (`pb2.optimize_acq`, 10 L-BFGS-B
  restarts with finite-difference gradients, ~2000 evaluations of the UCB) asks the two fitted
  GPs for predictions through `_Posterior`, the same posterior of Ray's `TV_SquaredExp` kernel
  computed in numpy, without scikit-learn's input checks (~3 ms a prediction, 95 % of the time).

The PBT scheduler itself (tune/pbt.py) subclasses only Ray's public `FIFOScheduler`. A Ray
upgrade that drops any name below fails with what to install, never silently: the storage names
at import, PB2's when a PB2 search is launched (`check_pb2`, before Ray starts). PB2's module is
imported only then: it pulls in scikit-learn and scipy (~1.4 s), which every trial worker would
otherwise pay when it starts.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
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
    select = _pb2_select()
    with warnings.catch_warnings(), _fast_predictions():
        # a GP hyperparameter at its bound (sklearn's ConvergenceWarning), scipy's notice on the
        # L-BFGS-B options Ray passes: about Ray's code, nothing a user can act on
        warnings.simplefilter("ignore")
        return select(X, y, current, newpoint, bounds, num_f)


class _Posterior:
    """A fitted `GaussianProcessRegressor` with Ray's `TV_SquaredExp` kernel, as PB2's UCB uses
    it (`predict`, `X_train_`): the same posterior mean and standard deviation, in numpy.

    sklearn's `predict` checks its input and the kernel computes distances through
    `sklearn.metrics` (which checks again): ~3 ms for a one-row prediction from a dozen
    training rows. Here the arithmetic follows sklearn's step for step (distances as
    `euclidean_distances` computes them, Algorithm 2.1 of Rasmussen & Williams), so the values
    agree to rounding."""

    def __init__(self, gp: Any) -> None:
        from scipy.linalg import solve_triangular

        kernel = gp.kernel_
        self._solve = solve_triangular
        self.X_train_ = gp.X_train_
        self._alpha = gp.alpha_
        self._L = gp.L_
        self._y_mean, self._y_std = gp._y_train_mean, gp._y_train_std
        self._variance = float(kernel.variance)
        self._lengthscale = float(kernel.lengthscale)
        self._decay = 1.0 - float(np.clip(kernel.epsilon, 1e-5, 0.5))
        self._times = self.X_train_[:, 0]
        self._spatial = self.X_train_[:, 1:]
        self._norms = np.einsum("ij,ij->i", self._spatial, self._spatial)

    def _kernel(self, X: Any) -> Any:
        dists = np.abs(X[:, :1] - self._times[None, :])
        spatial = X[:, 1:]
        squared = -2 * (spatial @ self._spatial.T)
        squared += np.einsum("ij,ij->i", spatial, spatial)[:, None]
        squared += self._norms[None, :]
        np.maximum(squared, 0, out=squared)
        rbf = self._variance * np.exp(-np.square(np.sqrt(squared)) / self._lengthscale)
        return rbf * self._decay ** (0.5 * dists)

    def predict(self, X: Any, return_std: bool = False) -> Any:
        X = np.asarray(X, dtype=float)
        K_trans = self._kernel(X)
        mean = self._y_std * (K_trans @ self._alpha) + self._y_mean
        if mean.ndim > 1 and mean.shape[1] == 1:
            mean = mean[:, 0]
        if not return_std:
            return mean
        V = self._solve(self._L, K_trans.T, lower=True, check_finite=False)
        var = np.full(X.shape[0], self._variance) - np.einsum("ij,ji->i", V.T, V)
        var[var < 0] = 0.0
        var = np.outer(var, self._y_std**2).reshape(*var.shape, -1)
        if var.shape[1] == 1:
            var = var[:, 0]
        return mean, np.sqrt(var)


@contextlib.contextmanager
def _fast_predictions() -> Iterator[None]:
    """Ray's `_select_config` looks `optimize_acq` up in its module when it runs: for this
    call, Ray's own `optimize_acq` over `_Posterior`s of the two GPs it fitted (the driver runs
    one selection at a time)."""
    from ray.tune.schedulers import pb2
    from ray.tune.schedulers.pb2_utils import TV_SquaredExp

    ray_optimize_acq = getattr(pb2, "optimize_acq", None)
    if ray_optimize_acq is None:  # another Ray: its own path, slow but sound
        yield
        return

    def optimize_acq(func: Any, m: Any, m1: Any, fixed: Any, num_f: int) -> Any:
        if isinstance(m.kernel_, TV_SquaredExp) and isinstance(m1.kernel_, TV_SquaredExp):
            m, m1 = _Posterior(m), _Posterior(m1)
        return ray_optimize_acq(func, m, m1, fixed, num_f)

    pb2.optimize_acq = optimize_acq
    try:
        yield
    finally:
        pb2.optimize_acq = ray_optimize_acq

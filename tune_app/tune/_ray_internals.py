"""Every use of Ray's private API, in one place, checked at import.

- Tune's `StorageContext` (reached through `tune.get_context().get_storage()`, a developer API),
  whose `current_checkpoint_index` and `_make_checkpoint_dir_name` name a trial's next
  checkpoint folder (tune/trainable.py).
- PB2's GP-bandit selection, `ray.tune.schedulers.pb2._select_config` (tune/explore.py), run
  as Ray wrote it but for one thing: its acquisition search (`pb2.optimize_acq`, 10 L-BFGS-B
  restarts with finite-difference gradients, ~2000 evaluations of the UCB) asks the two fitted
  GPs for predictions through `_Posterior`, the same posterior of Ray's `TV_SquaredExp` kernel
  computed in numpy, without scikit-learn's input checks (~3 ms a prediction, 95 % of the time).
- Tune's "operation took N s, which may be a performance bottleneck" warnings (`warn_if_slow`,
  logger `ray.tune.utils.util`): four for every round slower than Ray's 0.5 s, which a PB2
  selection alone can make it. `_PB2Slowness` drops those that PB2's selection explains.
- Ray's switch for printing worker output on the driver (`ray._private.worker
  ._worker_logs_enabled`, the flag Ray's debugger turns off while it holds the terminal):
  `show_workers`, off once a run's `Tuner.fit` has returned (tune/interrupt.py).
- Joining a cluster: in `_ray_gcs`, which imports Ray's core only (not Tune, ~1 s more), so
  that a run checks the cluster before Tune, torch and its data are loaded.

The PBT scheduler itself (tune/pbt.py) subclasses only Ray's public `FIFOScheduler`. A Ray
upgrade that drops any name below fails with what to install, never silently: the storage names
at import, PB2's when a PB2 search is launched (`check_pb2`, before Ray starts). PB2's module is
imported only then: it pulls in scikit-learn and scipy (~1.4 s), which every trial worker would
otherwise pay when it starts.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import ray._private.worker
from ray import tune
from ray.train._internal.storage import StorageContext

from tune_app.tune._ray_gcs import TESTED_RAY, _missing

__all__ = [
    "TESTED_RAY",
    "check_pb2",
    "next_checkpoint_path",
    "pb2_select_config",
    "show_workers",
    "skip_checkpoint_index",
    "trial_storage",
]


def _check() -> None:
    missing = []
    if not callable(getattr(StorageContext, "_make_checkpoint_dir_name", None)):
        missing.append("StorageContext._make_checkpoint_dir_name")
    if "current_checkpoint_index" not in inspect.signature(StorageContext.__init__).parameters:
        missing.append("StorageContext.current_checkpoint_index")
    if not hasattr(ray._private.worker, "_worker_logs_enabled"):
        missing.append("ray._private.worker._worker_logs_enabled")
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


def show_workers(shown: bool) -> None:
    """Print what Ray's worker processes write (while a run trains), or stop (once it ended).

    With `log_to_driver` the driver prints every line a worker writes to stderr; under a
    `LoggingConfig` (runner.init_ray) without Ray's "(pid=...)" prefix. When a run ends, Ray
    stops its trial actors with SIGTERM, and a worker whose SIGTERM handler raises while its
    interpreter exits writes "Exception ignored ... SystemExit: 1" and a traceback, which the
    driver printed after tune-app's last line (CI stop 29). Nothing a worker writes after
    `Tuner.fit` has returned belongs to the run. The flag is read by Ray's
    `print_worker_logs` on every batch; a later run in the same process (a benchmark's)
    switches it on again for its own trials.

    Args:
        shown: True while a run's trials train, False once `Tuner.fit` has returned.
    """
    ray._private.worker._worker_logs_enabled = shown


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
    (Parker-Holder et al., 2020). Ray's method unchanged, the same choice for the same numpy
    seed, with the GPs' predictions in numpy (see `_Posterior`) and its warnings silenced.

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
    began = time.time()  # the clock Tune times its operations with
    try:
        select = _pb2_select()  # imports scikit-learn the first time
        with warnings.catch_warnings(), _fast_predictions():
            # a GP hyperparameter at its bound (sklearn's ConvergenceWarning), scipy's notice on
            # the L-BFGS-B options Ray passes: about Ray's code, nothing a user can act on
            warnings.simplefilter("ignore")
            return select(X, y, current, newpoint, bounds, num_f)
    finally:
        _PB2Slowness.installed().spans.append((began, time.time()))


_SLOW = re.compile(r"took (\d+(?:\.\d+)?) s, which may be a performance bottleneck")


class _PB2Slowness(logging.Filter):
    """Drops Tune's "The `scheduler.on_trial_result` operation took 1.2 s, which may be a
    performance bottleneck" warnings (four per round: Tune times the scheduler's call and the
    result processing around it) where PB2's selection explains them: without the seconds it
    spent selecting, the operation would have been under Tune's threshold. Any other slowness
    is still reported."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: collections.deque[tuple[float, float]] = collections.deque(maxlen=16)

    @classmethod
    def installed(cls) -> _PB2Slowness:
        """The filter on Tune's logger, installed once."""
        logger = logging.getLogger("ray.tune.utils.util")
        for existing in logger.filters:
            if isinstance(existing, cls):
                return existing
        added = cls()
        logger.addFilter(added)
        return added

    def filter(self, record: logging.LogRecord) -> bool:
        found = _SLOW.search(record.getMessage())
        if found is None:
            return True
        took, end = float(found.group(1)), record.created
        selecting = sum(max(0.0, min(b, end) - max(a, end - took)) for a, b in self.spans)
        from ray.tune.utils.util import warn_if_slow

        return took - selecting > float(getattr(warn_if_slow, "DEFAULT_THRESHOLD", 0.5))


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
    from ray.tune.schedulers import pb2, pb2_utils

    ray_optimize_acq = getattr(pb2, "optimize_acq", None)
    kernel = getattr(pb2_utils, "TV_SquaredExp", None)
    if ray_optimize_acq is None or kernel is None:  # another Ray: its own, slower path
        yield
        return

    def optimize_acq(func: Any, m: Any, m1: Any, fixed: Any, num_f: int) -> Any:
        if isinstance(m.kernel_, kernel) and isinstance(m1.kernel_, kernel):
            m, m1 = _Posterior(m), _Posterior(m1)
        return ray_optimize_acq(func, m, m1, fixed, num_f)

    pb2.optimize_acq = optimize_acq
    try:
        yield
    finally:
        pb2.optimize_acq = ray_optimize_acq

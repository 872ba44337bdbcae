"""Every use of Ray's private API, in one place, checked at import.

Ray moves its internals between releases; `pyproject.toml` bounds `ray[tune]` to the versions
tested. If a name below is gone, importing this module fails at once with the Ray version and
what is missing, instead of a search failing (or silently misbehaving) hours in.
"""

from __future__ import annotations

from typing import Any

import ray

TESTED = "ray[tune] 2.60"


def _missing(what: str) -> ImportError:
    return ImportError(
        f"tune_app needs {what} from Ray, which Ray {ray.__version__} lacks; tune_app is tested "
        f"with {TESTED}: install that version"
    )


try:  # PB2's GP-bandit step (Parker-Holder et al., 2020), module-private in Ray
    from ray.tune.schedulers.pb2 import _select_config as _pb2_select_config
except ImportError as exc:  # pragma: no cover - only on another Ray
    raise _missing("ray.tune.schedulers.pb2._select_config") from exc

__all__ = ["TESTED", "pb2_select_config"]


def pb2_select_config(
    X: Any, y: Any, current: Any, newpoint: Any, bounds: dict[str, tuple[float, float]], num_f: int
) -> Any:
    """Ray's PB2 selection: fit the time-varying GP to (X, y), maximise UCB at `newpoint`.

    Args:
        X: (n, num_f + d) rows of (epoch, reward before, d parameters), unnormalised.
        y: (n,) reward gained per epoch.
        current: (m, d) parameters of members that keep training, or None.
        newpoint: (num_f,) the (epoch, reward) of the weights the new parameters start from.
        bounds: name -> (low, high) for the d parameters, in order.
        num_f: the number of fixed columns (2).

    Returns:
        (d,) the chosen parameters. Raises ImportError without scikit-learn.
    """
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:
        raise ImportError("--scheduler pb2 needs scikit-learn: pip install scikit-learn") from exc
    return _pb2_select_config(X, y, current, newpoint, bounds, num_f)

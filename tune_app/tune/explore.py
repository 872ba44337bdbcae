"""The explore step of a PBT round: a random perturbation (PBT) or a GP bandit (PB2).

PBT (Jaderberg et al., 2017) perturbs the donor's parameters at random (`SearchSpace.mutate`).
PB2 (Parker-Holder et al., 2020, "Provably Efficient Online Hyperparameter Optimization with
Population-Based Bandits") fits a Gaussian process with a time-varying kernel to every member's
improvement per epoch between rounds, as a function of (epoch, score before, parameters), and
picks the parameters that maximise its upper confidence bound at the donor's (epoch, score),
away from the parameters the other members train with now. The GP and the acquisition are Ray's
(`ray.tune.schedulers.pb2`, scikit-learn based).

How PB2 treats what is not a number: a **bool** is searched as a number in [0, 1] and is True
from 0.5 on; a **choice** of k values as an index in [0, k - 1], rounded; every **per-component
weight** is its own bounded number. Every value is clamped to the space's bounds. PB2's data
are improvements between two consecutive rounds, so the first round has none and perturbs as
PBT does; PB2 explores from the second round on, whenever it has at least two finite
improvements that are not all equal (the journal says which explore made each exploit).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tune_app.plan.search_space import Param, SearchSpace

__all__ = ["EXPLORERS", "Exploit", "Explorer", "Observation", "explore_pb2", "explore_pbt"]


@dataclass(frozen=True)
class Observation:
    """One member's score at one round, with the parameters it trained under to get there."""

    trial: str
    epoch: int
    score: float  # val_free_loss at `epoch` (lower is better)
    params: dict[str, Any]


@dataclass(frozen=True)
class Exploit:
    """What a PBT round knows when a member copies a donor: the donor's parameters and its
    loss at the round's `epoch` (the weights the member starts from), PB2's `history` (each
    member's score at each round so far, with the parameters in force up to it), and the
    parameters the members that are not replaced train with (`others`, which PB2 avoids)."""

    donor_params: dict[str, Any]
    donor_score: float = 0.0
    epoch: int = 0
    history: Sequence[Observation] = ()
    others: Sequence[dict[str, Any]] = ()


# an explore step: (space, exploit, rng, resample probability) -> (parameters, how, in words)
Explorer = Callable[[SearchSpace, Exploit, random.Random, float], tuple[dict[str, Any], str]]


def _bounds(param: Param) -> tuple[float, float]:
    if param.type == "bool":
        return 0.0, 1.0
    if param.type == "choice":
        return 0.0, float(len(param.values) - 1)
    return float(param.low), float(param.high)


def _encode(param: Param, value: Any) -> float:
    if param.type == "bool":
        return 1.0 if value else 0.0
    if param.type == "choice":
        return float(param.values.index(value)) if value in param.values else 0.0
    return float(value)


def _as_written(number: Any) -> float:
    """A number from Ray's PB2, which returns float32 (0.05 arrives as 0.05000000074505806), as
    the shortest decimal that float32 reads back the same (0.05): its precision is all there is,
    and the journal and an exported plan then show the value as a person would write it."""
    return float(str(np.float32(number)))


def _decode(param: Param, number: float) -> Any:
    if param.type == "bool":
        return bool(number >= 0.5)
    if param.type == "choice":
        return param.values[int(np.clip(round(number), 0, len(param.values) - 1))]
    return param.clamp(number)


def _improvements(history: Sequence[Observation], space: SearchSpace) -> tuple[Any, Any]:
    """PB2's data: rows (epoch, reward before, parameters) -> reward gained per epoch, for each
    member between consecutive rounds in which it kept its parameters (reward = -loss)."""
    rows, gains = [], []
    by_trial: dict[str, list[Observation]] = {}
    for observation in sorted(history, key=lambda o: o.epoch):  # stable: own, then donor's
        by_trial.setdefault(observation.trial, []).append(observation)
    for observations in by_trial.values():
        for before, after in itertools.pairwise(observations):
            if after.epoch <= before.epoch:
                continue  # an exploit: the member's own score, then its donor's, at one epoch
            gain = (before.score - after.score) / (after.epoch - before.epoch)
            if not np.isfinite(gain):
                continue
            encoded = [_encode(p, after.params.get(p.name, p.neutral())) for p in space.params]
            rows.append([after.epoch, -before.score, *encoded])
            gains.append(gain)
    return np.array(rows, dtype=float), np.array(gains, dtype=float)


def explore_pbt(
    space: SearchSpace, exploit: Exploit, rng: random.Random, resample_probability: float
) -> tuple[dict[str, Any], str]:
    """PBT's explore step: the donor's parameters perturbed at random (`SearchSpace.mutate`).

    Args:
        space: the search space; every returned value lies inside its bounds.
        exploit: the donor's parameters (the rest is PB2's).
        rng: seeds the perturbation.
        resample_probability: the chance to redraw a value instead of perturbing it.

    Returns:
        (parameters, "pbt")
    """
    return space.mutate(exploit.donor_params, rng, resample_probability), "pbt"


def explore_pb2(
    space: SearchSpace, exploit: Exploit, rng: random.Random, resample_probability: float
) -> tuple[dict[str, Any], str]:
    """PB2's explore step: the parameters that maximise a time-varying GP's upper confidence
    bound on the improvement per epoch at the donor's (epoch, score), away from `others`
    (Ray's `pb2` selection). Without two finite, unequal improvements yet, PBT's step.

    Args:
        space: the search space; every returned value lies inside its bounds.
        exploit: the donor, the round's epoch, the history and the others' parameters.
        rng: seeds the acquisition's restarts (and the perturbation without data).
        resample_probability: PBT's chance to redraw a value, without data.

    Returns:
        (parameters, "pb2" or "pbt (pb2: no data yet)")
    """
    X, y = _improvements(exploit.history, space)
    if len(y) < 2 or not np.ptp(y) > 0:
        params, _ = explore_pbt(space, exploit, rng, resample_probability)
        return params, "pbt (pb2: no data yet)"
    from tune_app.tune._ray_internals import pb2_select_config

    bounds = {p.name: _bounds(p) for p in space.params}
    current = (
        np.array(
            [[_encode(p, o.get(p.name, p.neutral())) for p in space.params] for o in exploit.others]
        )
        if exploit.others
        else None
    )
    state = np.random.get_state()
    np.random.seed(rng.randrange(2**32))  # Ray's acquisition restarts draw from numpy
    try:
        chosen = pb2_select_config(
            X, y, current, np.array([exploit.epoch, -exploit.donor_score]), bounds, num_f=2
        )
    finally:
        np.random.set_state(state)
    return {
        p.name: _decode(p, _as_written(v)) for p, v in zip(space.params, chosen, strict=True)
    }, "pb2"


# the explore step of each --scheduler
EXPLORERS: dict[str, Explorer] = {"pbt": explore_pbt, "pb2": explore_pb2}

"""Launching a comparison on Ray Tune: every plan trained from scratch on every seed.

One Tune trial per (plan, seed), the plans' trials on seed i side by side (seed-major order, so
finished pairs come early), as many at a time as the cluster's resources allow. A trial is a
baseline trial of its plan (`trainable.run_trial`: phase-boundary checkpoints, one report per
epoch), with the plan and seed its `ARM_KEY` config names. `--resume` restores the run with
Tune's own `Tuner.restore`: trials that ended are not run again, and a trial cut short goes on
from its last checkpoint. Scoring the trials on the test split happens afterwards, without Ray
(`analysis.comparison`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import ray
from ray import tune

from tune_app.plan.plan import Plan
from tune_app.runs.records import ARM_KEY, SPEC_KEY
from tune_app.runs.spec import RunSpec
from tune_app.runs.storage import Location
from tune_app.training.data import SeriesTable
from tune_app.tune.options import Launch, kept_settings
from tune_app.tune.runner import (
    claim,
    fit_or_restore,
    init_ray,
    record_run,
    run_config,
    tune_config,
)
from tune_app.tune.trainable import run_trial

__all__ = ["Arm", "arm_configs", "run_arm", "run_compare", "slots"]


@dataclass(frozen=True)
class Arm:
    """One plan of a comparison: its `label` (a folder-safe word: "A", "winner",
    "no-alpha"), the plan, where it came from in words (`source`) and, for `tune-app compare`,
    the command-line argument that named it (`argument`: a plan file, an export, `seed`; ""
    where no argument did, as in certify), which advice quotes back."""

    label: str
    plan: Plan
    source: str
    argument: str = ""

    def record(self) -> dict[str, Any]:
        """As the run's manifest records it (`RunManifest.arms`)."""
        return {
            "label": self.label,
            "source": self.source,
            "fingerprint": self.plan.fingerprint,
            "plan": self.plan.to_dict(),
            "argument": self.argument,
        }


def arm_configs(arms: Sequence[Arm], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Every trial's `ARM_KEY` config, seed-major: (A, s0), (B, s0), (A, s1), ..."""
    return [
        {"label": arm.label, "seed": seed, "plan": arm.plan.to_dict()}
        for seed in seeds
        for arm in arms
    ]


def run_arm(config: dict[str, Any], table: SeriesTable) -> None:
    """The trainable of a compare trial: `run_trial` on the spec with this arm's plan and seed."""
    arm = config[ARM_KEY]
    spec = RunSpec.from_dict(config[SPEC_KEY])
    spec = replace(
        spec, plan=Plan.from_dict(arm["plan"]), train=replace(spec.train, seed=int(arm["seed"]))
    )
    run_trial({**config, SPEC_KEY: spec.to_dict()}, table)


def slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials the connected Ray runs at once (>= 1), by its total CPUs and GPUs."""
    total = ray.cluster_resources()
    fits = [math.floor(total.get("CPU", 1.0) / cpus_per_trial + 1e-9)]
    if gpus_per_trial > 0:
        fits.append(math.floor(total.get("GPU", 0.0) / gpus_per_trial + 1e-9))
    return max(1, min(fits))


def run_compare(
    spec: RunSpec,
    table: SeriesTable,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    launch: Launch,
    announce: Callable[[int, float], None] | None = None,
) -> tuple[tune.ResultGrid, Location]:
    """Train every plan of `arms` on every seed of `seeds`, one Tune trial each.

    Args:
        spec: data, model and trainer settings shared by every trial (its plan and seed are
            replaced by each arm's; the manifest records the first arm's plan).
        table: the data, read once.
        arms: the plans, each with a distinct label; all of one shape (checked by the caller).
        seeds: the seeds, consecutive from the first (the manifest records the first and the
            count).
        launch: storage, name, cluster, resources, resume.
        announce: called with the number of trials that run at once and the seconds Ray took
            to start (or join), after Ray started and before any trial does (for the cost
            estimate).

    Returns:
        Tune's result grid and the run's folder.

    Raises:
        InputError: a run of that name exists (without --resume), or none to resume.
        Interrupted: Ctrl-C, with the flags that resume the run.
        RunFailed: the run stopped (storage full, cluster lost).
    """
    location = launch.location("compare")
    claim(location, launch)
    started = time.perf_counter()
    init_ray(launch.address)
    if announce is not None:
        announce(slots(launch.cpus_per_trial, launch.gpus_per_trial), time.perf_counter() - started)
    base = spec.with_plan(arms[0].plan)
    trainable = tune.with_resources(
        tune.with_parameters(run_arm, table=table),
        {"cpu": launch.cpus_per_trial, "gpu": launch.gpus_per_trial},
    )
    if not launch.resume:
        extra = {
            "seeds": len(seeds),
            "seed_offset": seeds[0],
            "arms": tuple(arm.record() for arm in arms),
            **kept_settings(launch),
        }
        record_run(location, "compare", base, table, extra)

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={
                SPEC_KEY: base.to_dict(),
                ARM_KEY: tune.grid_search(arm_configs(arms, seeds)),
            },
            # a worker that finished one trial takes the next (torch imported, windows built)
            tune_config=tune_config(num_samples=1, reuse_actors=True),
            run_config=run_config(launch, location, "compare"),
        )

    return fit_or_restore(launch, location, trainable, make_tuner), location

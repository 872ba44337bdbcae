"""Launching runs on Ray Tune: baseline (one trial), with storage, cluster address and resume."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any

import ray
from ray import tune

from tune_app import __version__
from tune_app.errors import InputError, RunFailed
from tune_app.plan.plan import Plan
from tune_app.plan.search_space import SearchSpace, to_optuna
from tune_app.runs.lock import hold_name, release_name
from tune_app.runs.records import MANIFEST, RunManifest
from tune_app.runs.spec import RunSpec
from tune_app.runs.storage import Location, locate
from tune_app.training.data import SeriesTable
from tune_app.tune import _ray_internals, cluster
from tune_app.tune.interrupt import fit
from tune_app.tune.logs import KeepTrialLogs
from tune_app.tune.pbt import Journal, MembersSearch, PhaseBoundaryPBT, population
from tune_app.tune.progress import TrialTable, trial_dirname
from tune_app.tune.selection import DEFAULT_SELECTION, SELECTIONS, Selection
from tune_app.tune.trainable import (
    CAPACITY_KEY,
    MEMBER_KEY,
    ROUNDS_KEY,
    SPEC_KEY,
    trainable_for,
    with_capacity,
)
from tune_app.tune.trial_errors import StopWhenRunGone, trial_errors

__all__ = [
    "Launch",
    "SearchOptions",
    "claim",
    "init_ray",
    "run_baseline",
    "run_search",
    "space_record",
    "write_manifest",
]

BEST_MODEL_CONFIG = "best_model_config.json"


@dataclass(frozen=True)
class Launch:
    """Where and how a run goes: storage, name, cluster, resources, resume."""

    name: str | None = None
    storage: str = "results"
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    resume: bool = False
    max_failures: int = 2
    verbose: int = 1

    def run_name(self, kind: str) -> str:
        return self.name or f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"

    @cached_property
    def root(self) -> Location:
        """`storage` resolved, once. Raises InputError for a URI pyarrow cannot open."""
        return locate(self.storage)

    def location(self, kind: str) -> Location:
        return self.root.join(self.run_name(kind))


def init_ray(address: str | None) -> None:
    """Ray for the run: a Ray of its own, or the cluster `--address` (or RAY_ADDRESS) names,
    joined with the checks of tune/cluster.py. Bad addresses fail first, even when Ray is up."""
    address = cluster.target(address)
    if address:
        cluster.check_reachable(address)
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault(
        "RAY_AIR_NEW_OUTPUT", "0"
    )  # our CLIReporter columns, not the generic table
    # Ray's INFO lines from every worker ("Checkpoint successfully created at ...", "Restored
    # on ...") repeat what the progress table shows; its warnings and our own prints still show
    quiet = ray.LoggingConfig(encoding="TEXT", log_level="WARNING")
    cluster.connect(address, include_dashboard=False, log_to_driver=True, logging_config=quiet)


def write_manifest(
    location: Location, kind: str, spec: RunSpec, table: SeriesTable, extra: dict[str, Any]
) -> None:
    manifest = RunManifest(
        kind=kind,
        name=location.name,
        spec=spec.to_dict(),
        data_fingerprint=table.fingerprint,
        components=tuple(table.components),
        rank={
            "metric": "val_free_loss",
            "mode": "min",
            "alpha": spec.train.rank_alpha,
            "max_lag": spec.train.rank_max_lag,
        },
        tune_app_version=__version__,
        created=time.time(),
        **extra,
    )
    location.join(MANIFEST).write_bytes(manifest.to_json())


def space_record(space: SearchSpace) -> dict[str, Any]:
    """What a run's manifest records of its search space (`write_manifest`'s extra): its name,
    its --space file and its content, which `--resume` compares with the file then."""
    return {"space": space.source, "space_file": space.file, "space_content": space.to_dict()}


def _reporter() -> TrialTable:
    return TrialTable(every=15)


def _tune_config(**kwargs: Any) -> tune.TuneConfig:
    """Tune's config, with tune_app's short trial names and folders (member-02, trial-03)."""
    return tune.TuneConfig(
        trial_dirname_creator=trial_dirname, trial_name_creator=trial_dirname, **kwargs
    )


def run_config(launch: Launch, location: Location, kind: str, **kwargs: Any) -> tune.RunConfig:
    storage = launch.root
    return tune.RunConfig(
        name=location.name,
        storage_path=storage.uri if not storage.is_local else storage.path,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        failure_config=tune.FailureConfig(max_failures=launch.max_failures),
        progress_reporter=_reporter(),
        verbose=launch.verbose,
        callbacks=[KeepTrialLogs(), StopWhenRunGone(location)],
        **kwargs,
    )


def claim(location: Location, launch: Launch) -> None:
    """Refuse to start a new run over an existing one (its checkpoints would be mixed), then
    hold the run's name (runs/lock.py) until `fit_or_restore` ends: a second launch of the
    name, or a --resume of a run still going, is refused before Ray starts."""
    if not launch.resume and location.join(MANIFEST).exists():
        raise InputError(
            f"--name {location.name}: a run already exists at {location.uri}; "
            "pass --resume to continue it or choose another --name"
        )
    if note := hold_name(location, resume=launch.resume):
        print(f"tune-app: note: {note}", file=sys.stderr)


def fit_or_restore(
    launch: Launch, location: Location, trainable: Any, make_tuner: Any
) -> tune.ResultGrid:
    """`make_tuner()` for a new run; `Tuner.restore` (errored trials resumed) with --resume.

    A restored run keeps the scheduler and search algorithm pickled in its `tuner.pkl` when it
    first started (with the search space, interval and seed they hold): `make_tuner`'s are not
    used, which is why cli/resume.py refuses a space file or a flag that differs from the run."""
    if launch.resume:
        if not tune.Tuner.can_restore(location.uri if not location.is_local else location.path):
            raise InputError(
                f"--resume: no run to resume at {location.uri}; check --name and --storage"
            )
        tuner = tune.Tuner.restore(
            location.uri if not location.is_local else location.path,
            trainable=trainable,
            resume_errored=True,
        )
    else:
        tuner = make_tuner()
    try:
        with trial_errors(location) as errors:  # Ray's trial tracebacks to a file, named
            try:
                return fit(tuner, location, launch.storage)  # Ctrl-C: tune_app's resume command
            except (InputError, KeyboardInterrupt):
                raise
            except Exception as exc:
                logged = f"; Ray's trial traceback(s): {errors.file}" if errors.file else ""
                raise RunFailed(
                    f"the run at {location.uri} stopped: {_diagnose(location, exc)}{logged}"
                ) from exc
    finally:
        release_name(location)


def _diagnose(location: Location, exc: BaseException) -> str:
    """One line on why a run stopped, with what to do."""
    with contextlib.suppress(OSError):  # remote storage that stopped answering: said below
        if not location.join(MANIFEST).exists():
            return gone(location)
    lines = [line for line in str(exc).splitlines() if line.strip()]
    detail = (lines[-1] if lines else type(exc).__name__)[:300]
    if location.is_local:
        try:
            free = shutil.disk_usage(location.path).free
        except OSError:
            free = None
        if free is not None and free < 16 * 2**20:
            return f"its storage is full ({free // 1024} KiB free); free space, then run again with --resume"
        if not os.access(location.path, os.W_OK):
            return "its storage is not writable; fix the permissions, then run again with --resume"
    return f"{type(exc).__name__}: {detail}; the checkpoints written so far are kept, --resume continues"


def gone(location: Location) -> str:
    """What to say when a run's folder was deleted while it ran (its manifest, written before
    Ray starts, is gone even where Ray made the folder again to save its own state)."""
    return (
        f"its folder {location.uri} disappeared while it ran (deleted or unmounted), and with "
        "it every checkpoint: nothing is left to resume; run the command again without --resume"
    )


def run_baseline(
    spec: RunSpec, table: SeriesTable, launch: Launch
) -> tuple[tune.ResultGrid, Location]:
    """The whole plan as one Tune trial, checkpointed at every phase boundary."""
    location = launch.location("baseline")
    claim(location, launch)
    init_ray(launch.address)
    trainable = trainable_for(table, launch.cpus_per_trial, launch.gpus_per_trial)
    if not launch.resume:
        write_manifest(location, "baseline", spec, table, {"max_failures": launch.max_failures})

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={SPEC_KEY: spec.to_dict()},
            tune_config=_tune_config(
                num_samples=1,
                metric="val_free_loss",
                mode="min",
            ),
            run_config=run_config(launch, location, "baseline"),
        )

    return fit_or_restore(launch, location, trainable, make_tuner), location


def _check_some_round(plan: Plan, interval: int, given: bool) -> None:
    """Refuse a search in which no round would run: rounds run at the multiples of `interval`
    strictly inside (0, plan length), so an interval as long as the plan leaves none."""
    total = plan.total_epochs
    if interval < total:
        return
    lengths = [p.epochs for p in plan.phases]
    shape = plan.shape
    what = (
        f"--perturb-every {interval}: no round would run"
        if given
        else f"no round would run: rounds default to every phase ({interval} epochs)"
    )
    if total < 2:
        raise InputError(
            f"{what}: the plan is {total} epoch long ({shape}), and a round needs an epoch "
            "before the end; lengthen the plan (e.g. --phase-epochs 2)"
        )
    works = min(lengths) if len(lengths) > 1 else total // 2
    raise InputError(
        f"{what}: the plan is {total} epochs long ({shape}) and a round runs only at a multiple "
        f"of the interval before the end; use e.g. --perturb-every {works}"
    )


@dataclass(frozen=True)
class SearchOptions:
    population: int = 4
    perturb_every: int | None = None  # epochs; default: one phase
    quantile_fraction: float = 0.25
    resample_probability: float = 0.25
    scheduler: str = "pbt"  # the explore step: "pbt" (perturb) or "pb2" (GP bandit)
    selection: str = DEFAULT_SELECTION  # what a round ranks members on (tune/selection.py)


def run_search(
    spec: RunSpec, table: SeriesTable, space: SearchSpace, options: SearchOptions, launch: Launch
) -> tuple[tune.ResultGrid, Location]:
    """PBT over the plan's modifications; member 0 is the control (the plan as written)."""
    if options.perturb_every is not None and options.perturb_every < 1:
        raise InputError(f"--perturb-every: must be >= 1 epoch (got {options.perturb_every})")
    phase_lengths = {p.epochs for p in spec.plan.phases}
    interval = options.perturb_every or min(phase_lengths)
    if options.perturb_every is None and len(phase_lengths) > 1:
        raise InputError(
            "--perturb-every: the plan's phases differ in length, so there is no single phase "
            "interval; give one (e.g. the shortest phase)"
        )
    _check_some_round(spec.plan, interval, given=options.perturb_every is not None)
    if options.population < 2:
        raise InputError(
            f"--population: must be >= 2 (the control and one searcher), got {options.population}"
        )
    if options.selection not in SELECTIONS:
        raise InputError(f"--selection {options.selection}: use one of {', '.join(SELECTIONS)}")
    if options.scheduler == "pb2":
        try:
            _ray_internals.check_pb2()
        except ImportError as exc:
            raise InputError(f"--scheduler pb2: {exc}") from exc
    every = spec.train.checkpoint_every
    if every and interval % every:
        raise InputError(
            f"--perturb-every {interval}: PBT rounds copy checkpoints, but --checkpoint-every "
            f"{every} writes none at epoch {interval}; use a multiple of {every}, or leave "
            "--checkpoint-every out (a search then checkpoints at every round)"
        )
    if not every:  # every round copies a checkpoint of its epoch: write one at each
        spec = replace(spec, train=replace(spec.train, checkpoint_every=interval))
    location = launch.location("search")
    claim(location, launch)
    recorded = space_record(space)  # as written: --resume checks the file against it
    space = space.expand(table.components)
    # The first population's Latin hypercube imports scipy.stats (~1.7 s of the driver's time
    # before any member starts): drawn while Ray starts, which mostly waits on its processes.
    with ThreadPoolExecutor(1, thread_name_prefix="population") as pool:
        drawing = pool.submit(population, space, options.population, spec.train.seed)
        init_ray(launch.address)
        members = drawing.result()
    trainable = trainable_for(table, launch.cpus_per_trial, launch.gpus_per_trial)
    scheduler = PhaseBoundaryPBT(
        space,
        interval,
        spec.plan.total_epochs,
        Journal(location),
        seed=spec.train.seed,
        quantile_fraction=options.quantile_fraction,
        resample_probability=options.resample_probability,
        explore_method=options.scheduler,
        selection=Selection.for_interval(options.selection, interval),
    )
    if not launch.resume:
        write_manifest(
            location,
            "search",
            spec,
            table,
            {
                "population": options.population,
                "perturb_every": interval,
                "scheduler": options.scheduler,
                "selection": options.selection,
                "quantile_fraction": options.quantile_fraction,
                **recorded,
                "members": tuple(members),
                "max_failures": launch.max_failures,
            },
        )

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={
                SPEC_KEY: spec.to_dict(),
                MEMBER_KEY: tune.grid_search(members),
                ROUNDS_KEY: {"every": interval},
            },
            # reuse_actors: a member that waits for its round hands its worker process (torch
            # imported, windows built) to the next member instead of a new process starting
            tune_config=_tune_config(
                scheduler=scheduler,
                search_alg=MembersSearch(scheduler),
                num_samples=1,
                reuse_actors=True,
            ),
            run_config=run_config(launch, location, "search"),
        )

    return fit_or_restore(launch, location, trainable, make_tuner), location


@dataclass(frozen=True)
class CapacityOptions:
    trials: int = 8
    grace_epochs: int | None = None  # ASHA's first rung; default: one phase
    reduction_factor: int = 2
    max_concurrent: int = 2


def run_capacity(
    spec: RunSpec, table: SeriesTable, space: SearchSpace, options: CapacityOptions, launch: Launch
) -> tuple[tune.ResultGrid, Location]:
    """Optuna (TPE, seeded) proposes capacities; ASHA stops the weak ones early on val_free_loss.
    Writes RUN/best_model_config.json, which baseline and search take as --model-config."""
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    if options.trials < 1:
        raise InputError(f"--trials: must be >= 1 (got {options.trials})")
    location = launch.location("capacity")
    claim(location, launch)
    init_ray(launch.address)
    import optuna

    searcher = OptunaSearch(
        space=to_optuna(space, f"{CAPACITY_KEY}/"),
        metric="val_free_loss",
        mode="min",
        sampler=optuna.samplers.TPESampler(seed=spec.train.seed),
    )
    grace = options.grace_epochs or spec.plan.phases[0].epochs
    scheduler = ASHAScheduler(
        time_attr="epoch",
        metric="val_free_loss",
        mode="min",
        max_t=spec.plan.total_epochs,
        grace_period=grace,
        reduction_factor=options.reduction_factor,
    )
    trainable = trainable_for(table, launch.cpus_per_trial, launch.gpus_per_trial)
    if not launch.resume:
        write_manifest(
            location,
            "capacity",
            spec,
            table,
            {
                "trials": options.trials,
                **space_record(space),
                "grace_epochs": grace,
                "max_concurrent": options.max_concurrent,
                "max_failures": launch.max_failures,
            },
        )

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={SPEC_KEY: spec.to_dict()},
            tune_config=_tune_config(
                search_alg=ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent),
                scheduler=scheduler,
                num_samples=options.trials,
            ),
            run_config=run_config(launch, location, "capacity"),
        )

    grid = fit_or_restore(launch, location, trainable, make_tuner)
    best = grid.get_best_result(metric="best_val_free_loss", mode="min", scope="all")
    config, metrics = best.config or {}, best.metrics or {}
    chosen = with_capacity(spec, config.get(CAPACITY_KEY))
    location.join(BEST_MODEL_CONFIG).write_bytes(
        json.dumps(
            {
                "model": chosen.model.to_dict(),
                "data": {"input_len": chosen.data.input_len},
                "val_free_loss": metrics.get("best_val_free_loss"),
                "trial": metrics.get("trial_id"),
            },
            indent=2,
        ).encode()
    )
    return grid, location

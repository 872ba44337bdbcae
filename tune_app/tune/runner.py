"""Launching runs on Ray Tune and reading back what they did: baseline (one trial), search
(PBT) and capacity (Optuna + ASHA), with storage, cluster address and resume.

What a run checks before Ray starts is in `preflight.py` (plain functions of the spec, called
first here), its manifest in `runs/manifest.py`, the capacity run's export next to `export_best`
in `runs/results.py`: this module starts Ray, builds Tune's objects and fits.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray import tune

from tune_app.errors import InputError, NothingToResume, RunFailed
from tune_app.plan.search_space import SearchSpace, to_optuna
from tune_app.runs.lock import hold_name, release_name, running_owner, still_held
from tune_app.runs.manifest import space_record, write_manifest
from tune_app.runs.records import CAPACITY_KEY, MANIFEST, MEMBER_KEY, ROUNDS_KEY, SPEC_KEY
from tune_app.runs.results import export_capacity
from tune_app.runs.spec import RunSpec
from tune_app.runs.stopped import gone, why_stopped
from tune_app.runs.storage import Location
from tune_app.training.data import SeriesTable
from tune_app.training.metrics import BEST_VAL_FREE_LOSS, EPOCH, RANK_METRIC, RANK_MODE
from tune_app.tune import cluster
from tune_app.tune.interrupt import fit
from tune_app.tune.logs import KeepTrialLogs
from tune_app.tune.options import CapacityOptions, Launch, SearchOptions, kept_settings
from tune_app.tune.pbt import Journal, MembersSearch, PhaseBoundaryPBT, population
from tune_app.tune.preflight import check_capacity, check_search, ray_state_saved
from tune_app.tune.progress import TrialTable, trial_dirname
from tune_app.tune.ray_messages import NoResultYet
from tune_app.tune.selection import Selection
from tune_app.tune.trainable import trainable_for
from tune_app.tune.trial_errors import StopWhenRunGone, trial_errors

__all__ = [
    "CapacityOptions",
    "Launch",
    "SearchOptions",
    "claim",
    "fit_or_restore",
    "init_ray",
    "record_run",
    "run_baseline",
    "run_capacity",
    "run_config",
    "run_search",
    "space_record",
    "tune_config",
    "write_manifest",
]


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


def _reporter() -> TrialTable:
    return TrialTable(every=15)


def tune_config(**kwargs: Any) -> tune.TuneConfig:
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
    exists = InputError(
        f"--name {location.name}: a run already exists at {location.uri}; "
        "pass --resume to continue it or choose another --name"
    )

    def saved_run() -> bool:
        return location.join(MANIFEST).exists() and ray_state_saved(location)

    # a run still going is named by hold_name (its process), not sent to --resume
    if not launch.resume and running_owner(location) is None and saved_run():
        raise exists
    if note := hold_name(location, resume=launch.resume):
        print(f"tune-app: note: {note}", file=sys.stderr)
    if not launch.resume and location.join(MANIFEST).exists():
        if ray_state_saved(location):  # its process ended in between
            release_name(location)
            raise exists
        # stopped (Ctrl-C) while Ray started: "nothing was saved yet; run the command again"
        print(
            f"tune-app: note: run {location.name} stopped before Ray saved any of it; "
            "starting it again",
            file=sys.stderr,
        )


def record_run(
    location: Location, kind: str, spec: RunSpec, table: SeriesTable, settings: dict[str, Any]
) -> None:
    """Write the run's manifest, once its claim is known to be still there: a folder deleted
    while Ray started (seconds) ends the launch, instead of the manifest making the folder
    again without its lock (a --resume would then be let in beside the run).

    Raises:
        RunFailed: the run's folder (its lock) is gone.
    """
    if not still_held(location):
        raise RunFailed(f"the run at {location.uri} stopped: {gone(location)}")
    write_manifest(location, kind, spec, table, settings)


_NEVER_STARTED = (
    "--resume: run {name} stopped before Ray saved any of it (no experiment_state-*.json at "
    "{uri}): nothing to resume; run the same command without --resume, which starts it again "
    "under its name"
)


def fit_or_restore(
    launch: Launch, location: Location, trainable: Any, make_tuner: Any
) -> tune.ResultGrid:
    """`make_tuner()` for a new run; `Tuner.restore` (errored trials resumed) with --resume.

    A restored run keeps the scheduler and search algorithm pickled in its `tuner.pkl` when it
    first started (with the search space, interval and seed they hold): `make_tuner`'s are not
    used, which is why cli/resume.py refuses a space file or a flag that differs from the run.
    Tune's warning about trials without a result yet is not shown (`ray_messages`)."""
    NoResultYet.install()
    if launch.resume:
        if not tune.Tuner.can_restore(location.uri if not location.is_local else location.path):
            raise NothingToResume(
                f"--resume: no run to resume at {location.uri}; check --name and --storage"
                if not location.join(MANIFEST).exists()
                else _NEVER_STARTED.format(name=location.name, uri=location.uri)
            )
        if not ray_state_saved(location):  # tuner.pkl written, Ray's loop not started yet
            raise NothingToResume(_NEVER_STARTED.format(name=location.name, uri=location.uri))
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
                    f"the run at {location.uri} stopped: {why_stopped(location, exc)}{logged}"
                ) from exc
    finally:
        release_name(location)


def run_baseline(
    spec: RunSpec, table: SeriesTable, launch: Launch
) -> tuple[tune.ResultGrid, Location]:
    """The whole plan as one Tune trial, checkpointed at every phase boundary."""
    location = launch.location("baseline")
    claim(location, launch)
    init_ray(launch.address)
    trainable = trainable_for(table, launch.cpus_per_trial, launch.gpus_per_trial)
    if not launch.resume:
        record_run(location, "baseline", spec, table, kept_settings(launch))

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={SPEC_KEY: spec.to_dict()},
            tune_config=tune_config(num_samples=1, metric=RANK_METRIC, mode=RANK_MODE),
            run_config=run_config(launch, location, "baseline"),
        )

    return fit_or_restore(launch, location, trainable, make_tuner), location


def _pbt(
    space: SearchSpace, spec: RunSpec, options: SearchOptions, location: Location
) -> PhaseBoundaryPBT:
    """The search's scheduler: synchronous PBT rounds every `options.perturb_every` epochs,
    journalled in the run's folder."""
    interval = int(options.perturb_every or 0)
    return PhaseBoundaryPBT(
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


def run_search(
    spec: RunSpec, table: SeriesTable, space: SearchSpace, options: SearchOptions, launch: Launch
) -> tuple[tune.ResultGrid, Location]:
    """PBT over the plan's modifications; member 0 is the control (the plan as written).

    Raises:
        InputError: settings `preflight.check_search` refuses, before Ray starts.
    """
    spec, options = check_search(spec, options)
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
    scheduler = _pbt(space, spec, options, location)
    if not launch.resume:
        settings = {**kept_settings(options, launch), **recorded, "members": tuple(members)}
        record_run(location, "search", spec, table, settings)

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={
                SPEC_KEY: spec.to_dict(),
                MEMBER_KEY: tune.grid_search(members),
                ROUNDS_KEY: {"every": options.perturb_every},
            },
            # reuse_actors: a member that waits for its round hands its worker process (torch
            # imported, windows built) to the next member instead of a new process starting
            tune_config=tune_config(
                scheduler=scheduler,
                search_alg=MembersSearch(scheduler),
                num_samples=1,
                reuse_actors=True,
            ),
            run_config=run_config(launch, location, "search"),
        )

    return fit_or_restore(launch, location, trainable, make_tuner), location


def _tpe_asha(space: SearchSpace, spec: RunSpec, options: CapacityOptions) -> tune.TuneConfig:
    """A capacity search's Tune config: Optuna's TPE (seeded) proposes, at most
    `max_concurrent` at once; ASHA stops the weak trials early on the rank metric."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(
        space=to_optuna(space, f"{CAPACITY_KEY}/"),
        metric=RANK_METRIC,
        mode=RANK_MODE,
        sampler=optuna.samplers.TPESampler(seed=spec.train.seed),
    )
    scheduler = ASHAScheduler(
        time_attr=EPOCH,
        metric=RANK_METRIC,
        mode=RANK_MODE,
        max_t=spec.plan.total_epochs,
        grace_period=int(options.grace_epochs or 1),
        reduction_factor=options.reduction_factor,
    )
    return tune_config(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent),
        scheduler=scheduler,
        num_samples=options.trials,
    )


def run_capacity(
    spec: RunSpec, table: SeriesTable, space: SearchSpace, options: CapacityOptions, launch: Launch
) -> tuple[tune.ResultGrid, Location]:
    """Optuna (TPE, seeded) proposes capacities; ASHA stops the weak ones early on val_free_loss.
    Writes RUN/best_model_config.json (`export_capacity`), which baseline and search take as
    --model-config.

    Raises:
        InputError: settings `preflight.check_capacity` refuses, before Ray starts.
    """
    options = check_capacity(spec, options)
    location = launch.location("capacity")
    claim(location, launch)
    init_ray(launch.address)
    config = _tpe_asha(space, spec, options)
    trainable = trainable_for(table, launch.cpus_per_trial, launch.gpus_per_trial)
    if not launch.resume:
        settings = {**kept_settings(options, launch), **space_record(space)}
        record_run(location, "capacity", spec, table, settings)

    def make_tuner() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={SPEC_KEY: spec.to_dict()},
            tune_config=config,
            run_config=run_config(launch, location, "capacity"),
        )

    grid = fit_or_restore(launch, location, trainable, make_tuner)
    best = grid.get_best_result(metric=BEST_VAL_FREE_LOSS, mode=RANK_MODE, scope="all")
    export_capacity(location, spec, (best.config or {}).get(CAPACITY_KEY), best.metrics or {})
    return grid, location

"""The checks a Ray run makes before Ray starts, as plain functions of its spec and settings.

Each refuses bad input with one `InputError` (exit 2) before anything is written or started;
the runner (`runner.py`) calls them first. No Ray here: `--scheduler pb2`'s check imports Ray's
PB2 only when it is asked for.
"""

from __future__ import annotations

import fnmatch
import json
import pickletools
from dataclasses import replace
from typing import TYPE_CHECKING

from tune_app.errors import InputError
from tune_app.runs.records import SPEC_KEY
from tune_app.tune.options import SCHEDULERS, CapacityOptions, Launch, SearchOptions
from tune_app.tune.selection import SELECTIONS

if TYPE_CHECKING:
    from tune_app.plan.plan import Plan
    from tune_app.plan.search_space import SearchSpace
    from tune_app.runs.spec import RunSpec
    from tune_app.runs.storage import Location

__all__ = [
    "check_capacity",
    "check_launch",
    "check_run_name",
    "check_search",
    "check_space_trains",
    "check_trial_resources",
    "ray_state_saved",
    "round_interval",
    "unrestorable",
]

# The files `Tuner.restore` reads from a run's folder (Ray 2.60), each the greatest name that
# matches its pattern, as Ray picks them: the experiment state is JSON, the others pickles.
# Ray writes them whole on the driver and copies them into the run's storage, so a full disk
# (or a kill) during the copy leaves one cut short. Ray then fails with a traceback (tuner.pkl)
# or logs one and starts the run's trials again without their settings: each fails with
# "KeyError: 'spec'", and the state Ray writes for them holds no trial's settings either.
RAY_STATE = (
    ("tuner.pkl", "pickle"),
    ("experiment_state-*.json", "json"),
    ("basic-variant-state-*.json", "pickle"),
    ("searcher-state-*.pkl", "pickle"),
    ("search_gen_state-*.json", "pickle"),
    ("callback-states-*.pkl", "pickle"),
)


def check_trial_resources(launch: Launch) -> None:
    """Raises InputError: per-trial CPUs not above 0, or GPUs below 0."""
    if launch.cpus_per_trial <= 0 or launch.gpus_per_trial < 0:
        raise InputError(
            f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0 (got "
            f"{launch.cpus_per_trial}, {launch.gpus_per_trial})"
        )


def check_run_name(name: str | None) -> None:
    """A `--name` is one folder under --storage: Ray names its experiment after the last part
    of a path, so `a/b` put tune_app's manifest in STORAGE/a/b and Ray's trials in STORAGE/b
    (the run then stopped as if its folder had been deleted), and `..` or `../x` left the storage
    (fresh-s4).

    Raises:
        InputError: an empty name, `.` or `..`, one holding a path separator, or one with
            leading or trailing space.
    """
    if name is None:
        return
    if name in ("", ".", "..") or "/" in name or "\\" in name or name != name.strip():
        raise InputError(
            f"--name {name!r}: a run's name is one folder under --storage: not empty, not . or "
            "..; no / or \\ and no leading or trailing space (put the folder above it in "
            "--storage)"
        )


def check_launch(launch: Launch) -> None:
    """Where the run goes, checked before anything else.

    Raises:
        InputError: --resume without --name, a --name that is not one folder's name, per-trial
            resources out of range, a --storage URI that cannot be opened (resolved here,
            once) or a local --storage that is a file.
    """
    check_run_name(launch.name)
    if launch.resume and not launch.name:
        raise InputError("--resume: also pass --name of the run to continue")
    check_trial_resources(launch)
    root = launch.root  # resolves --storage once: an unsupported URI fails before Ray
    if root.is_local and root.exists() and not root.is_dir():
        raise InputError(
            f"--storage {launch.storage}: a file, not a folder; name a folder (made if missing)"
        )


def round_interval(plan: Plan, perturb_every: int | None) -> int:
    """The epochs between a search's rounds: `perturb_every`, else the plan's phase length.

    Raises:
        InputError: an interval below 1, phases of several lengths and no interval given, or
            an interval that leaves no round inside the plan.
    """
    if perturb_every is not None and perturb_every < 1:
        raise InputError(f"--perturb-every: must be >= 1 epoch (got {perturb_every})")
    phase_lengths = {p.epochs for p in plan.phases}
    interval = perturb_every or min(phase_lengths)
    if perturb_every is None and len(phase_lengths) > 1:
        raise InputError(
            "--perturb-every: the plan's phases differ in length, so there is no single phase "
            "interval; give one (e.g. the shortest phase)"
        )
    _check_some_round(plan, interval, given=perturb_every is not None)
    return interval


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


def check_search(spec: RunSpec, options: SearchOptions) -> tuple[RunSpec, SearchOptions]:
    """A PBT search's settings, checked and resolved.

    Args:
        spec: the run.
        options: the search's settings as given.

    Returns:
        The spec with a checkpoint at every round (unless --checkpoint-every sets one that
        falls on each), and the options with the round interval resolved (`perturb_every`).

    Raises:
        InputError: a quantile fraction outside (0, 0.5], a bad interval (`round_interval`),
            a population below 2, an unknown selection rule or scheduler, PB2 without its
            libraries, or checkpoints that miss the rounds' epochs.
    """
    if not 0.0 < options.quantile_fraction <= 0.5:
        raise InputError(
            f"--quantile-fraction: must lie in (0, 0.5] (got {options.quantile_fraction})"
        )
    interval = round_interval(spec.plan, options.perturb_every)
    if options.population < 2:
        raise InputError(
            f"--population: must be >= 2 (the control and one searcher), got {options.population}"
        )
    if options.selection not in SELECTIONS:
        raise InputError(f"--selection {options.selection}: use one of {', '.join(SELECTIONS)}")
    if options.scheduler not in SCHEDULERS:
        raise InputError(f"--scheduler {options.scheduler}: use one of {', '.join(SCHEDULERS)}")
    if options.scheduler == "pb2":
        from tune_app.tune._ray_internals import check_pb2

        try:
            check_pb2()
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
    return spec, replace(options, perturb_every=interval)


def check_space_trains(
    space: SearchSpace,
    spec: RunSpec,
    components: list[str] | tuple[str, ...],
    perturb_every: int | None,
) -> None:
    """Refuse a space in which no member trains differently from the control (plan/effects.py).
    An interval `round_interval` refuses is left to it.

    Raises:
        InputError: every member of the space trains as the control does.
    """
    from tune_app.plan.effects import refuse_inert_space

    interval = perturb_every or min(p.epochs for p in spec.plan.phases)
    if interval >= 1:
        refuse_inert_space(
            space.expand(components),
            spec.plan,
            interval,
            components,
            spec.train.plateau_epochs,
            spec.train.seed,
        )


def check_capacity(spec: RunSpec, options: CapacityOptions) -> CapacityOptions:
    """A capacity search's settings, checked and resolved.

    Args:
        spec: the run.
        options: the search's settings as given.

    Returns:
        The options with ASHA's first rung resolved (`grace_epochs`: the first phase's length
        unless given), as the manifest records them.

    Raises:
        InputError: fewer than one trial.
    """
    if options.trials < 1:
        raise InputError(f"--trials: must be >= 1 (got {options.trials})")
    return replace(options, grace_epochs=options.grace_epochs or spec.plan.phases[0].epochs)


_CUT = "(the storage was full, or the run was killed, as Ray wrote it)"
EMPTY, CUT_SHORT = f"is empty {_CUT}", f"is cut short {_CUT}"
NO_SETTINGS = (
    "holds the run's trials without their settings (an earlier --resume that could not "
    "restore the run wrote it)"
)


def _whole_pickle(data: bytes) -> str | None:
    """What is wrong with a pickle, read opcode by opcode and never loaded (None: whole)."""
    if not data:
        return EMPTY
    try:
        for _ in pickletools.genops(data):
            pass
    except ValueError:  # ran out before its STOP opcode, or a byte that is no opcode
        return CUT_SHORT
    return None


def _state_problem(data: bytes) -> str | None:
    """What is wrong with Ray's experiment state (None: nothing this check knows of). A trial
    whose settings are not in it (`config` without the run's spec) would fail at once."""
    if not data:
        return EMPTY
    try:
        state = json.loads(data)
    except ValueError:
        return CUT_SHORT
    entries = state.get("trial_data") if isinstance(state, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        try:
            trial = json.loads(entry[0])
        except (TypeError, ValueError, IndexError, KeyError):
            continue  # a layout this check does not know: Ray's own to read
        config = trial.get("config") if isinstance(trial, dict) else None
        if isinstance(config, dict) and SPEC_KEY not in config:
            return NO_SETTINGS
    return None


def unrestorable(location: Location) -> tuple[Location, str] | None:
    """The first of Ray's files that `--resume` restores the run at `location` from (see
    RAY_STATE) and that cannot restore it, read before Ray starts.

    Args:
        location: the run's folder.

    Returns:
        The file and what is wrong with it, as the end of a sentence ("is cut short (the
        storage was full ...)"), or None when each file there is whole (a file that is not
        there is Ray's to report: no run to resume).
    """
    children = [child for child in location.children() if not child.is_dir()]
    for pattern, kind in RAY_STATE:
        matching = [c for c in children if fnmatch.fnmatchcase(c.name, pattern)]
        if not matching:
            continue
        newest = max(matching, key=lambda child: child.name)
        data = newest.read_bytes()
        problem = _state_problem(data) if kind == "json" else _whole_pickle(data)
        if problem:
            return newest, problem
    return None


def ray_state_saved(location: Location) -> bool:
    """Whether Ray saved the run's experiment state (`experiment_state-*.json`, which it writes
    at its loop's first step, before any trial reports): a run without it stopped while Ray
    started, so there is nothing to resume and it may be started again under its name. A
    storage that cannot be listed counts as saved (nothing is started over it).

    Args:
        location: the run's folder.
    """
    try:
        names = [child.name for child in location.children() if not child.is_dir()]
    except OSError:
        return True
    return any(fnmatch.fnmatchcase(name, RAY_STATE[1][0]) for name in names)

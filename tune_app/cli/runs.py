"""The Ray Tune commands of `tune-app`: baseline, search and capacity.

Each turns its flags into a `Prepared` run once, here at the top (`prepare_run`: the spec, the
data, the launch, the command's settings and search space; with --resume the run's own), then
hands it down to the runner (tune/runner.py), which checks it, launches it and reads it back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tune_app.cli.args import add_field, add_run_args, build_spec, given_values, settings
from tune_app.training.metrics import DIVERGED, EPOCH
from tune_app.tune.options import (
    OPTIONS,
    SCHEDULERS,
    CapacityOptions,
    Launch,
    SearchOptions,
)
from tune_app.tune.selection import SELECTIONS

if TYPE_CHECKING:
    from tune_app.cli.resume import Resumed
    from tune_app.plan.search_space import SearchSpace
    from tune_app.runs.spec import RunSpec
    from tune_app.training.data import SeriesTable

__all__ = ["Prepared", "add_launch_args", "add_run_commands", "prepare_run"]


def add_launch_args(
    parser: argparse.ArgumentParser,
    *,
    named: bool = True,
    resume_help: str = "continue an interrupted run (--name required)",
) -> None:
    """Add the flags of where and how a Ray run goes (`Launch`'s fields).

    Args:
        parser: the command's parser.
        named: whether the command names its run (`--name`, `--storage`); `certify` does not:
            its runs live inside the search run it certifies.
        resume_help: what `--resume` does for this command.
    """
    group = parser.add_argument_group("Ray Tune")
    if named:
        add_field(
            group,
            Launch,
            "name",
            help="run name (default KIND-TIMESTAMP); with --resume, the run to continue",
        )
        add_field(group, Launch, "storage", help="local path or URI (s3://bucket/prefix)")
    add_field(
        group, Launch, "address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT"
    )
    add_field(group, Launch, "cpus_per_trial", type=float, help="CPUs per trial")
    add_field(
        group,
        Launch,
        "gpus_per_trial",
        type=float,
        help="GPUs per trial; trials train on cuda when > 0",
    )
    add_field(group, Launch, "resume", action="store_true", help=resume_help)
    add_field(
        group,
        Launch,
        "wait_for_resources",
        type=float,
        metavar="SECONDS",
        help="on a cluster, how long to wait for a node with a trial's resources",
    )
    add_field(
        group,
        Launch,
        "max_failures",
        type=int,
        help="retries of a crashed trial from its last checkpoint",
    )


@dataclass(frozen=True)
class Prepared:
    """A Ray run as its flags ask for it, checked before Ray starts: its spec and data, where
    it goes, its command's settings (None for a baseline) and search space (None outside a
    search or capacity run); with --resume, the run's own (`resumed`)."""

    spec: RunSpec
    table: SeriesTable
    launch: Launch
    options: Any = None
    space: SearchSpace | None = None
    resumed: Resumed | None = None


def prepare_run(
    args: argparse.Namespace,
    kind: str,
    check: Callable[[Prepared], None] | None = None,
) -> Prepared:
    """The run the flags describe, built once: spec and data, launch, the command's settings and
    search space; with --resume, what the run keeps (cli/resume.py), flags that differ from it
    and a space file changed since refused. Resources no node has are refused too: they would
    keep every trial PENDING forever.

    Args:
        args: the parsed flags (`args.given`: those typed).
        kind: "baseline", "search", "capacity" or "compare".
        check: the command's own check of the run the flags describe, before the launch's.

    Returns:
        The run to launch.

    Raises:
        InputError: anything bad in the flags, before Ray starts.
    """
    from tune_app.cli.resume import SPACES, resume_run
    from tune_app.plan.search_space import load_space
    from tune_app.tune.preflight import check_launch
    from tune_app.tune.resources import check_resources

    launch: Launch = settings(Launch, args)
    options = settings(OPTIONS[kind], args) if kind in OPTIONS else None
    space = load_space(args.space, *SPACES[kind]) if kind in SPACES else None
    spec, table = build_spec(args, device=launch.device)
    if check is not None:
        check(Prepared(spec, table, launch, options, space))
    check_launch(launch)
    resumed = None
    if launch.resume:
        resumed = resume_run(kind, launch.location(kind), given_values(args), spec, table)
        spec, table, options = resumed.spec, resumed.table, resumed.options
        space = resumed.space or space  # (Ray restores its scheduler, and with it the space)
    check_resources(
        launch.address, launch.cpus_per_trial, launch.gpus_per_trial, launch.wait_for_resources
    )
    return Prepared(spec, table, launch, options, space, resumed)


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else repr(error))[:400]


def _diverged_at(result: Any) -> int | None:
    """The epoch a trial diverged at (the trainable reports `diverged`), else None."""
    metrics = getattr(result, "metrics", None) or {}
    return int(metrics.get(EPOCH, 0)) if metrics.get(DIVERGED) else None


def _finish(grid: Any, location: Any) -> int:
    """Say how the trials ended, one line each for failures (Ray's tracebacks stay in the
    trial folders' error.txt) and divergences, and where the run is. Exit 1 when no trial
    finished: every one failed or diverged, or when the run's folder is gone."""
    from tune_app.runs.records import MANIFEST
    from tune_app.runs.stopped import gone

    if not location.join(MANIFEST).exists():
        print(f"tune-app: the run at {location.uri} stopped: {gone(location)}", file=sys.stderr)
        return 1
    failures, diverged = [], []
    for result in grid:
        try:
            error = result.error
        except Exception as exc:
            error = exc
        if error is not None:
            failures.append(error)
        elif (epoch := _diverged_at(result)) is not None:
            trial = (getattr(result, "metrics", None) or {}).get("trial_id", "?")
            diverged.append(f"trial {trial} diverged at epoch {epoch}")
    for error in failures:
        hint = (
            " (the storage is full: free space, then --resume)"
            if "No space left" in str(error)
            else ""
        )
        print(f"trial failed: {_last_line(error)}{hint}", file=sys.stderr)
    for line in diverged:
        print(line, file=sys.stderr)
    print(f"\nrun: {location.uri}")
    if len(grid) and len(failures) + len(diverged) == len(grid):
        print(
            f"no trial finished: {len(diverged)} diverged, {len(failures)} failed, of "
            f"{len(grid)}. A diverged trial's loss became non-finite or rose over 1e6 x its "
            "first epoch's: lower the plan's learning rate (or gradient clip) and run again",
            file=sys.stderr,
        )
        return 1
    print(f"export the best checkpoint with: tune-app best {location.uri}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    """`tune-app baseline`: the whole plan as one Ray Tune trial.

    Args:
        args: the parsed flags.

    Returns:
        The exit code: 0, or 1 when no trial finished (see `_finish`).
    """
    from tune_app.tune import runner

    run = prepare_run(args, "baseline")
    grid, location = runner.run_baseline(run.spec, run.table, run.launch)
    return _finish(grid, location)


def _space_trains(run: Prepared) -> None:
    """A new search's space in which no member trains differently from the control is refused
    (a resumed run goes on with its own space)."""
    from tune_app.tune.preflight import check_space_trains

    if not run.launch.resume and run.space is not None:
        check_space_trains(run.space, run.spec, run.table.components, run.options.perturb_every)


def cmd_search(args: argparse.Namespace) -> int:
    """`tune-app search`: PBT over the plan's modifications, then the search's summary.

    Args:
        args: the parsed flags.

    Returns:
        The exit code: 0, or 1 when no trial finished (see `_finish`).
    """
    from tune_app.tune import runner

    run = prepare_run(args, "search", check=_space_trains)
    assert run.space is not None
    grid, location = runner.run_search(run.spec, run.table, run.space, run.options, run.launch)
    code = _finish(grid, location)
    if code == 0:
        from tune_app.analysis.text import search_summary
        from tune_app.runs.results import open_run

        print("\n".join(search_summary(open_run(location.uri))))
    return code


def cmd_capacity(args: argparse.Namespace) -> int:
    """`tune-app capacity`: Optuna (TPE) + ASHA over the model's capacity.

    Args:
        args: the parsed flags.

    Returns:
        The exit code: 0, or 1 when no trial finished (see `_finish`).
    """
    from tune_app.runs.records import BEST_MODEL_CONFIG
    from tune_app.tune import runner

    run = prepare_run(args, "capacity")
    assert run.space is not None
    grid, location = runner.run_capacity(run.spec, run.table, run.space, run.options, run.launch)
    print(f"best capacity: {location.uri}/{BEST_MODEL_CONFIG} (use it with --model-config)")
    return _finish(grid, location)


def _add_search_args(search: argparse.ArgumentParser) -> None:
    """A search's own flags: its space and `SearchOptions`' fields."""
    search.add_argument(
        "--space", help="search space YAML (default search_spaces/modifications.yaml)"
    )
    add_field(
        search, SearchOptions, "population", type=int, help="trials, the control included (>= 2)"
    )
    add_field(
        search,
        SearchOptions,
        "perturb_every",
        type=int,
        help="epochs between exploit/explore (default: one phase)",
    )
    add_field(
        search,
        SearchOptions,
        "quantile_fraction",
        type=float,
        help="bottom fraction that copies the top fraction at each boundary",
    )
    add_field(
        search,
        SearchOptions,
        "scheduler",
        choices=SCHEDULERS,
        help="the explore step at each round: pbt (random perturbation) or pb2 (GP bandit, "
        "Parker-Holder et al. 2020); both copy the best members' checkpoints",
    )
    add_field(
        search,
        SearchOptions,
        "selection",
        choices=SELECTIONS,
        help="what a round ranks members on: truncation (val_free_loss at the round's epoch), "
        "recent (its mean over the last half of the interval) or improvement (projected to "
        "the next round at its recent rate, after FIRE-PBT)",
    )


def _add_capacity_args(capacity: argparse.ArgumentParser) -> None:
    """A capacity search's own flags: its space and `CapacityOptions`' fields."""
    capacity.add_argument("--space", help="search space YAML (default search_spaces/capacity.yaml)")
    add_field(capacity, CapacityOptions, "trials", type=int, help="trials Optuna proposes")
    add_field(
        capacity,
        CapacityOptions,
        "grace_epochs",
        type=int,
        help="ASHA's first rung in epochs (default: one phase)",
    )
    add_field(capacity, CapacityOptions, "max_concurrent", type=int, help="trials at once, at most")


def add_run_commands(commands: Any) -> None:
    """Add `baseline`, `search` and `capacity`.

    Args:
        commands: the subparsers of `tune-app`.
    """
    baseline = commands.add_parser("baseline", help="the whole plan as one Ray Tune trial")
    add_run_args(baseline)
    add_launch_args(baseline)
    baseline.set_defaults(handler=cmd_baseline)

    search = commands.add_parser(
        "search", help="PBT over the plan's modifications, the plan itself as control"
    )
    add_run_args(search)
    add_launch_args(search)
    _add_search_args(search)
    search.set_defaults(handler=cmd_search)

    capacity = commands.add_parser("capacity", help="Optuna (TPE) + ASHA over model capacity")
    add_run_args(capacity)
    add_launch_args(capacity)
    _add_capacity_args(capacity)
    capacity.set_defaults(handler=cmd_capacity)

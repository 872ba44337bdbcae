"""The Ray Tune commands of `tune-app`: baseline (and, later, search and capacity)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from tune_app.cli.args import add_run_args, build_spec
from tune_app.errors import InputError
from tune_app.tune.selection import DEFAULT_SELECTION, SELECTIONS

if TYPE_CHECKING:
    from tune_app.cli.resume import Resumed
    from tune_app.runs.spec import RunSpec
    from tune_app.training.data import SeriesTable

__all__ = ["add_run_commands"]


def _add_launch_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray Tune")
    group.add_argument(
        "--name", help="run name (default KIND-TIMESTAMP); with --resume, the run to continue"
    )
    group.add_argument(
        "--storage", default="results", help="local path or URI (s3://bucket/prefix)"
    )
    group.add_argument("--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT")
    group.add_argument("--cpus-per-trial", type=float, default=1.0)
    group.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs per trial; trials train on cuda when > 0",
    )
    group.add_argument(
        "--resume", action="store_true", help="continue an interrupted run (--name required)"
    )
    group.add_argument(
        "--wait-for-resources",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="on a cluster, how long to wait for a node with a trial's resources (default 60)",
    )
    group.add_argument(
        "--max-failures",
        type=int,
        default=2,
        help="retries of a crashed trial from its last checkpoint",
    )


def _launch(
    args: argparse.Namespace, kind: str, spec: RunSpec, table: SeriesTable
) -> tuple[Any, RunSpec, SeriesTable, Resumed | None]:
    """Where the run goes, checked before Ray starts. With --resume: the run's own spec and
    data (and the run, with its manifest and search space), flags that differ from them and a
    space file changed since refused (see cli/resume.py)."""
    from tune_app.cli.resume import resume_run
    from tune_app.tune.runner import Launch

    if args.resume and not args.name:
        raise InputError("--resume: also pass --name of the run to continue")
    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise InputError(
            f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0 (got {args.cpus_per_trial}, {args.gpus_per_trial})"
        )
    from tune_app.tune.resources import check_resources

    flags = ("name", "storage", "address", "cpus_per_trial", "gpus_per_trial", "resume")
    launch = Launch(**{flag: getattr(args, flag) for flag in flags}, max_failures=args.max_failures)
    launch.root  # noqa: B018  (resolves --storage once: an unsupported URI fails before Ray)
    resumed = None
    if launch.resume:
        resumed = resume_run(args, kind, launch.location(kind), spec, table)
        spec, table = resumed.spec, resumed.table
    # resources no node has would keep every trial PENDING forever: refused here
    check_resources(args.address, args.cpus_per_trial, args.gpus_per_trial, args.wait_for_resources)
    return launch, spec, table, resumed


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else repr(error))[:400]


def _diverged_at(result: Any) -> int | None:
    """The epoch a trial diverged at (the trainable reports `diverged`), else None."""
    metrics = getattr(result, "metrics", None) or {}
    return int(metrics.get("epoch", 0)) if metrics.get("diverged") else None


def _finish(grid: Any, location: Any) -> int:
    """Say how the trials ended, one line each for failures (Ray's tracebacks stay in the
    trial folders' error.txt) and divergences, and where the run is. Exit 1 when no trial
    finished: every one failed or diverged, or when the run's folder is gone."""
    from tune_app.runs.records import MANIFEST
    from tune_app.tune.runner import gone

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
    """`tune-app baseline`: the plan as written, as one Ray Tune trial, checkpointed at every
    phase boundary.

    Args:
        args: the parsed command line (its `given`: the flags typed, for `--resume`).

    Returns:
        0 when the trial finished; 1 when it failed or diverged, or the run's folder is gone.

    Raises:
        InputError: a bad plan, data file, model config or flag, a run name already taken
            or still running, or resources no node has (before Ray starts); a `--resume` whose
            flags, data or space differ from the run's.
    """
    from tune_app.tune.runner import run_baseline

    spec, table = build_spec(args, device="cuda" if args.gpus_per_trial > 0 else "cpu")
    launch, spec, table, _ = _launch(args, "baseline", spec, table)
    grid, location = run_baseline(spec, table, launch)
    return _finish(grid, location)


def cmd_search(args: argparse.Namespace) -> int:
    """`tune-app search`: PBT (or PB2) over the plan's modifications in synchronous rounds, the
    plan itself as the control; ends with the search's summary (`analysis/text.py`).

    Args:
        args: the parsed command line (its `given`: the flags typed, for `--resume`).

    Returns:
        0 when a member finished; 1 when none did, or the run's folder is gone.

    Raises:
        InputError: a bad plan, data file, model config or flag, a run name already taken
            or still running, or resources no node has (before Ray starts); a `--resume` whose
            flags, data or space differ from the run's; a space in which no member can train
            differently from the control, or `--quantile-fraction` outside (0, 0.5].
    """
    from tune_app.plan.search_space import load_space
    from tune_app.tune.runner import SearchOptions, run_search

    space = load_space(args.space, "modifications.yaml", "pbt")
    spec, table = build_spec(args, device="cuda" if args.gpus_per_trial > 0 else "cpu")
    if not args.resume:  # (a resumed run goes on with its own space)
        _refuse_inert_space(space, spec, table, args.perturb_every)
    launch, spec, table, resumed = _launch(args, "search", spec, table)
    if not 0.0 < args.quantile_fraction <= 0.5:
        raise InputError(
            f"--quantile-fraction: must lie in (0, 0.5] (got {args.quantile_fraction})"
        )
    options = SearchOptions(
        population=args.population,
        perturb_every=args.perturb_every,
        quantile_fraction=args.quantile_fraction,
        scheduler=args.scheduler,
        selection=args.selection,
    )
    if resumed is not None:  # --resume: checked against the run's own settings and space
        manifest, space = resumed.manifest, resumed.space or space
        options = SearchOptions(
            population=manifest.population or options.population,
            perturb_every=manifest.perturb_every or options.perturb_every,
            quantile_fraction=manifest.quantile_fraction or options.quantile_fraction,
            scheduler=manifest.scheduler or options.scheduler,
            selection=manifest.selection or "truncation",  # an older run's: truncation
        )
    grid, location = run_search(spec, table, space, options, launch)
    code = _finish(grid, location)
    if code == 0:
        from tune_app.analysis.text import search_summary
        from tune_app.runs.results import open_run

        print("\n".join(search_summary(open_run(location.uri))))
    return code


def _refuse_inert_space(
    space: Any, spec: RunSpec, table: SeriesTable, perturb_every: int | None
) -> None:
    """A space in which no member trains differently from the control is refused before Ray
    starts (plan/effects.py); an interval run_search refuses is left to it."""
    from tune_app.plan.effects import refuse_inert_space

    interval = perturb_every or min(p.epochs for p in spec.plan.phases)
    if interval >= 1:
        refuse_inert_space(
            space.expand(table.components),
            spec.plan,
            interval,
            table.components,
            spec.train.plateau_epochs,
            spec.train.seed,
        )


def cmd_capacity(args: argparse.Namespace) -> int:
    """`tune-app capacity`: Optuna (TPE) proposes model capacities, ASHA stops the weak trials
    early; writes `best_model_config.json` for `--model-config`.

    Args:
        args: the parsed command line (its `given`: the flags typed, for `--resume`).

    Returns:
        0 when a trial finished; 1 when none did, or the run's folder is gone.

    Raises:
        InputError: a bad plan, data file, model config or flag, a run name already taken
            or still running, or resources no node has (before Ray starts); a `--resume` whose
            flags, data or space differ from the run's.
    """
    from tune_app.plan.search_space import load_space
    from tune_app.tune.runner import CapacityOptions, run_capacity

    space = load_space(args.space, "capacity.yaml", "capacity")
    spec, table = build_spec(args, device="cuda" if args.gpus_per_trial > 0 else "cpu")
    launch, spec, table, resumed = _launch(args, "capacity", spec, table)
    if resumed is not None and resumed.space is not None:
        space = resumed.space  # the run's own (Ray restores its searcher, and with it the space)
    options = CapacityOptions(
        trials=args.trials, grace_epochs=args.grace_epochs, max_concurrent=args.max_concurrent
    )
    grid, location = run_capacity(spec, table, space, options, launch)
    print(f"best capacity: {location.uri}/best_model_config.json (use it with --model-config)")
    return _finish(grid, location)


def add_run_commands(commands: Any) -> None:
    """Register `tune-app baseline`, `search` and `capacity` (the run flags, Ray's launch flags,
    and each one's own).

    Args:
        commands: the parser's subcommands (`add_subparsers`).
    """
    baseline = commands.add_parser("baseline", help="the whole plan as one Ray Tune trial")
    add_run_args(baseline)
    _add_launch_args(baseline)
    baseline.set_defaults(handler=cmd_baseline)

    search = commands.add_parser(
        "search", help="PBT over the plan's modifications, the plan itself as control"
    )
    add_run_args(search)
    _add_launch_args(search)
    search.add_argument(
        "--space", help="search space YAML (default search_spaces/modifications.yaml)"
    )
    search.add_argument(
        "--population", type=int, default=4, help="trials, the control included (>= 2)"
    )
    search.add_argument(
        "--perturb-every", type=int, help="epochs between exploit/explore (default: one phase)"
    )
    search.add_argument(
        "--quantile-fraction",
        type=float,
        default=0.25,
        help="bottom fraction that copies the top fraction at each boundary",
    )
    search.add_argument(
        "--scheduler",
        choices=("pbt", "pb2"),
        default="pbt",
        help="the explore step at each round: pbt (random perturbation) or pb2 (GP bandit, "
        "Parker-Holder et al. 2020); both copy the best members' checkpoints (default pbt)",
    )
    search.add_argument(
        "--selection",
        choices=SELECTIONS,
        default=DEFAULT_SELECTION,
        help="what a round ranks members on: truncation (val_free_loss at the round's epoch), "
        "recent (its mean over the last half of the interval) or improvement (projected to "
        f"the next round at its recent rate, after FIRE-PBT) (default {DEFAULT_SELECTION})",
    )
    search.set_defaults(handler=cmd_search)

    capacity = commands.add_parser("capacity", help="Optuna (TPE) + ASHA over model capacity")
    add_run_args(capacity)
    _add_launch_args(capacity)
    capacity.add_argument("--space", help="search space YAML (default search_spaces/capacity.yaml)")
    capacity.add_argument("--trials", type=int, default=8)
    capacity.add_argument(
        "--grace-epochs", type=int, help="ASHA's first rung in epochs (default: one phase)"
    )
    capacity.add_argument("--max-concurrent", type=int, default=2)
    capacity.set_defaults(handler=cmd_capacity)

"""`tune-app plan show | validate`: the plan as data, printed, drawn, checked."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tune_app.cli.args import add_plan_args, epoch_list, positive_int
from tune_app.errors import InputError

__all__ = ["add_plan_commands"]


def cmd_plan_show(args: argparse.Namespace) -> int:
    """`tune-app plan show`: the plan's phases and every knob at chosen epochs, as a table or
    JSON; `--plot` draws every schedule to a PNG.

    Args:
        args: the parsed command line (plan flags, `--epochs`, `--steps-per-epoch`, `--json`,
            `--plot`).

    Returns:
        0, after printing.

    Raises:
        InputError: a plan that does not load, or an epoch outside it.
    """
    from tune_app.plan.plan import load_plan
    from tune_app.plan.view import default_epochs, plan_rows, plan_table, plot_plan

    plan = load_plan(args.plan, args.overrides or (), args.phase_epochs)
    epochs = args.epochs or default_epochs(plan)
    bad = [e for e in epochs if not 1 <= e <= plan.total_epochs]
    if bad:
        raise InputError(f"--epochs: {bad} outside this plan's 1..{plan.total_epochs}")
    if args.json:
        print(json.dumps(plan_rows(plan, epochs, args.steps_per_epoch), indent=1))
    else:
        print(plan_table(plan, epochs, args.steps_per_epoch))
    if args.plot:
        print(f"plot: {plot_plan(plan, Path(args.plot), args.steps_per_epoch)}", file=sys.stderr)
    return 0


def cmd_plan_validate(args: argparse.Namespace) -> int:
    """`tune-app plan validate FILE`: load a plan, listing every problem at once.

    Args:
        args: the parsed command line (the file).

    Returns:
        0 when the plan loads (its phases and epochs printed); a bad plan raises InputError
        from `load_plan`, which `main` turns into exit 2.
    """
    from tune_app.plan.plan import load_plan

    plan = load_plan(args.file)
    print(f"{args.file}: ok ({len(plan.phases)} phases, {plan.total_epochs} epochs)")
    return 0


def add_plan_commands(commands: Any) -> None:
    """Register `tune-app plan show` and `tune-app plan validate`.

    Args:
        commands: the parser's subcommands (`add_subparsers`).
    """
    plan = commands.add_parser("plan", help="show, plot or validate a training plan")
    plan_cmds = plan.add_subparsers(dest="plan_command", required=True)
    show = plan_cmds.add_parser("show", help="the plan's phases and every knob at chosen epochs")
    add_plan_args(show)
    show.add_argument(
        "--epochs", type=epoch_list, help="e.g. 1,31,100 (default: phase starts and ends)"
    )
    show.add_argument("--steps-per-epoch", type=positive_int, default=1)
    show.add_argument("--json", action="store_true", help="a JSON array, one object per epoch")
    show.add_argument("--plot", help="draw every schedule to this PNG")
    show.set_defaults(handler=cmd_plan_show)
    validate = plan_cmds.add_parser("validate", help="check a plan YAML; lists every problem")
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_plan_validate)

"""`tune-app train` and `tune-app continue`: in-process runs, no Ray."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tune_app.cli.args import (
    add_allow_other_data,
    add_run_args,
    build_spec,
    default_out,
    positive_int,
)
from tune_app.errors import InputError
from tune_app.training.metrics import BEST_VAL_FREE_LOSS, VAL_FREE_LOSS

if TYPE_CHECKING:
    from tune_app.runs.spec import RunSpec

__all__ = ["add_train_commands"]


def cmd_train(args: argparse.Namespace) -> int:
    """`tune-app train`: run a plan in this process (no Ray), with a progress bar; `--resume`
    goes on from a checkpoint, `--replay` reruns a `tune-app best` export.

    Args:
        args: the parsed command line (the run flags, `--out`, `--resume`, `--replay`,
            `--stop-after`, `--progress-every`, `--allow-other-data`).

    Returns:
        0, after printing the last and best val_free_loss (a diverged run raises
        DivergedError, which `main` turns into exit 1).
    """
    from tune_app.runs.local import run_train

    stop_after = args.stop_after
    if args.replay:
        from tune_app.runs.results import replay_spec

        spec, epoch = replay_spec(Path(args.replay))
        stop_after = stop_after or epoch
        spec.dataset()  # validate before writing anything
    else:
        state = _defaults_from_checkpoint(args) if args.resume else None
        spec, _ = build_spec(args)
        if state is not None:
            spec = _own_plan(args, spec, state)
    out = Path(args.out) if args.out else default_out("train")
    result = run_train(
        spec,
        out,
        progress_every=args.progress_every,
        resume=Path(args.resume) if args.resume else None,
        stop_after=stop_after,
        allow_other_data=args.allow_other_data,
    )
    last = result.history[-1] if result.history else {}
    print(
        f"done: {out}  val_free_loss {last.get(VAL_FREE_LOSS, float('nan')):.5f}  "
        f"best {last.get(BEST_VAL_FREE_LOSS, float('nan')):.5f}"
    )
    return 0


def _defaults_from_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """`train --resume CKPT`: the checkpoint's own data file, components (by name, in its
    order) and model, unless flags say else (another data file is then refused unless
    --allow-other-data; see runs/local.py). Returns the checkpoint's state."""
    from tune_app.training.data import check_recorded_data
    from tune_app.training.normalisation import Normalisation
    from tune_app.training.resumable import open_checkpoint

    state = open_checkpoint(args.resume)  # refused here (exit 2) when unreadable or unfit
    if args.data is None:
        args.data = state.get("data_path")
        check_recorded_data(args.data, f"checkpoint {args.resume}")
    recorded = Normalisation.from_dict(state.get("normalisation"))
    if recorded is not None and not args.components and not args.component:
        args.component = list(recorded.components)
    model = state.get("model_config") or {}
    for key in ("hidden", "layers", "dropout", "cell"):
        if getattr(args, key) is None and key in model:
            setattr(args, key, model[key])
    if args.input_len is None:
        args.input_len = (state.get("data_config") or {}).get("input_len")
    return state


def _own_plan(args: argparse.Namespace, spec: RunSpec, state: dict[str, Any]) -> RunSpec:
    """`train --resume CKPT` goes on with the plan the checkpoint was trained with (as
    `baseline --resume` goes on with the run's): a plan flag left out takes it from the
    checkpoint, one given that differs from it is refused (exit 2) before anything is written."""
    from tune_app.cli.resume import plan_conflicts
    from tune_app.plan.plan import Plan

    recorded = state["plan"]
    given = getattr(args, "given", None)
    if given is None:  # called without `main`: the plan flags that hold a value were given
        given = frozenset(
            dest for dest in ("plan", "phase_epochs", "overrides") if getattr(args, dest)
        )
    own = Plan.from_dict(recorded, f"checkpoint {args.resume}'s plan")
    plan_flags = {d: getattr(args, d) for d in ("plan", "phase_epochs", "overrides") if d in given}
    conflicts = plan_conflicts(plan_flags, recorded)
    if conflicts:
        differ = "; ".join(
            flag if theirs == own.shape else f"{flag} (the checkpoint's: {theirs})"
            for flag, theirs in conflicts
        )
        raise InputError(
            f"--resume: checkpoint {args.resume} goes on with the plan it was trained with "
            f"('{own.name}', {own.shape}), and {differ} would change it; drop "
            f"{'the flag' if len(conflicts) == 1 else 'these flags'} to resume it, or train more epochs with `tune-app continue --model_path "
            f"{args.resume} --epochs N --start_lr X --min_lr Y --output_dir DIR`"
        )
    done = int(state["epoch"])
    rest = (
        f"epochs {done + 1}-{own.total_epochs}"
        if done < own.total_epochs
        else "every epoch of it had run"
    )
    print(f"resuming {args.resume} after epoch {done} with its own plan ({own.shape}): {rest}")
    return spec.with_plan(own)


def cmd_continue(args: argparse.Namespace) -> int:
    """`tune-app continue`: the seed's `continue_training.py`, flag for flag: more epochs from a
    checkpoint with a cosine learning rate from `--start_lr` to `--min_lr`.

    Args:
        args: the parsed command line (`--model_path`, `--epochs`, `--start_lr`, `--min_lr`,
            `--output_dir`, `--data`, `--allow-other-data`).

    Returns:
        0, after printing where best_model_combined.pth is and its val_free_loss.
    """
    from tune_app.runs.local import run_continue

    result = run_continue(
        Path(args.model_path),
        args.epochs,
        args.start_lr,
        args.min_lr,
        Path(args.output_dir),
        args.data,
        progress_every=args.progress_every,
        allow_other_data=args.allow_other_data,
    )
    best = result.history[-1][BEST_VAL_FREE_LOSS]
    print(
        f"done: {Path(args.output_dir) / 'best_model_combined.pth'} (best val_free_loss {best:.5f})"
    )
    return 0


def add_train_commands(commands: Any) -> None:
    """Register `tune-app train` and `tune-app continue`.

    Args:
        commands: the parser's subcommands (`add_subparsers`).
    """
    train = commands.add_parser("train", help="run a plan in this process (no Ray)")
    add_run_args(train)
    train.add_argument("--out", help="run directory (default results/train-TIMESTAMP)")
    train.add_argument("--resume", help="checkpoint directory to resume from")
    add_allow_other_data(train)
    train.add_argument("--progress-every", type=positive_int, default=1)
    train.add_argument("--stop-after", type=positive_int, help="stop after this epoch")
    train.add_argument(
        "--replay",
        metavar="EXPORT",
        help="rerun a `tune-app best` export: its plan, model, data, seed",
    )
    train.set_defaults(handler=cmd_train)

    cont = commands.add_parser("continue", help="the seed's continue_training.py, flag for flag")
    cont.add_argument(
        "--model_path", required=True, help="checkpoint dir or best_model_combined.pth"
    )
    cont.add_argument("--epochs", type=positive_int, required=True)
    cont.add_argument("--start_lr", type=float, required=True)
    cont.add_argument("--min_lr", type=float, required=True)
    cont.add_argument("--output_dir", required=True)
    cont.add_argument("--data", help="the data file (default: the one the checkpoint trained on)")
    add_allow_other_data(cont)
    cont.add_argument("--progress-every", type=positive_int, default=10)
    cont.set_defaults(handler=cmd_continue)

"""`tune-app train` and `tune-app continue`: in-process runs, no Ray."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tune_app.cli.args import (
    add_allow_other_data,
    add_run_args,
    build_spec,
    component_names,
    default_out,
    positive_int,
    typed,
)
from tune_app.errors import InputError, Interrupted
from tune_app.training.configs import DataConfig, ModelConfig, TrainConfig
from tune_app.training.metrics import BEST_VAL_FREE_LOSS, VAL_FREE_LOSS

if TYPE_CHECKING:
    from tune_app.runs.spec import RunSpec

__all__ = ["add_train_commands"]

# the settings a checkpoint records, by section of its spec, and the flags that set them
_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


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
            spec = _own_spec(spec, state, args.resume)
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
    with _done(out, args):
        print(
            f"done: {out}  val_free_loss {last.get(VAL_FREE_LOSS, float('nan')):.5f}  "
            f"best {last.get(BEST_VAL_FREE_LOSS, float('nan')):.5f}"
        )
    return 0


@contextmanager
def _done(out: Path, args: argparse.Namespace) -> Iterator[None]:
    """The last line of a run whose files are all written: Ctrl-C there says where the result
    is (running the command again would train it all again); once it is printed the command
    has finished (`args.finished`: `main` turns a Ctrl-C after it into the command's own exit
    code, not "nothing was saved yet")."""
    try:
        yield
        args.finished = True
    except KeyboardInterrupt:
        raise Interrupted(note=f"every epoch had run; the result is in {out}") from None


def _defaults_from_checkpoint(args: argparse.Namespace) -> dict[str, Any]:
    """`train --resume CKPT` goes on with the run the checkpoint recorded, as `baseline
    --resume` goes on with the run's (cli/resume.py): its plan, model, components, data
    settings (windows, stride, fill) and trainer settings (seed, batch size, ...). A flag left
    out takes the checkpoint's value; one given that differs from it is refused (exit 2, each
    named with the checkpoint's value) before anything is written. Its own data file too,
    unless --data names another (refused unless --allow-other-data; see runs/local.py).

    Returns:
        The checkpoint's state.
    """
    from tune_app.cli.resume import checkpoint_conflicts
    from tune_app.training.data import check_recorded_data
    from tune_app.training.resumable import open_checkpoint

    state = open_checkpoint(args.resume)  # refused here (exit 2) when unreadable or unfit
    given = getattr(args, "given", None)
    if given is None:  # called without `main`: the flags that hold a value were given
        given = typed(args)
    typed_values = {dest: getattr(args, dest) for dest in given if hasattr(args, dest)}
    recorded = _recorded_spec(state)
    own = _own_components(state)
    conflicts = checkpoint_conflicts(typed_values, recorded, component_names(args), own)
    if conflicts:
        raise InputError(_conflicts_message(args.resume, recorded["plan"], conflicts))
    if args.data is None:
        args.data = state.get("data_path")
        check_recorded_data(args.data, f"checkpoint {args.resume}")
    if own is not None and not args.components and not args.component:
        args.component = list(own)
    for section, cls in _SECTIONS.items():
        for key in (f.name for f in fields(cls) if f.name != "components"):
            if key in vars(args) and getattr(args, key) is None and key in recorded[section]:
                setattr(args, key, recorded[section][key])  # a flag left out: the checkpoint's
    return state


def _recorded_spec(state: dict[str, Any]) -> dict[str, Any]:
    """The spec a checkpoint recorded, by section, as a run's manifest holds it."""
    return {
        "plan": state["plan"],
        "model": dict(state.get("model_config") or {}),
        "data": dict(state.get("data_config") or {}),
        "train": dict(state.get("train_config") or {}),
    }


def _own_components(state: dict[str, Any]) -> tuple[str, ...] | None:
    """The components a checkpoint trained on, in its order (None: not recorded)."""
    from tune_app.training.normalisation import Normalisation

    recorded = Normalisation.from_dict(state.get("normalisation"))
    if recorded is not None:
        return tuple(recorded.components)
    names = state.get("components") or (state.get("data_config") or {}).get("components")
    return tuple(names) if names else None


def _conflicts_message(checkpoint: str, plan: dict[str, Any], conflicts: list[Any]) -> str:
    """Why `train --resume` refuses the flags given: each with the checkpoint's own value."""
    from tune_app.plan.plan import Plan

    own = Plan.from_dict(plan, f"checkpoint {checkpoint}'s plan")
    lines = "\n".join(f"  - {flag} (the checkpoint's: {theirs})" for flag, theirs in conflicts)
    plan_flags = ("--plan", "--set", "--phase-epochs")
    more = (
        f"; more epochs after its plan: `tune-app continue --model_path {checkpoint} "
        "--epochs N --start_lr X --min_lr Y --output_dir DIR`"
        if any(flag.startswith(plan_flags) for flag, _ in conflicts)
        else ""
    )
    return (
        f"--resume: checkpoint {checkpoint} goes on with the plan it was trained with "
        f"('{own.name}', {own.shape}) and its own model, data and trainer settings, and "
        f"{len(conflicts)} flag(s) given differ from them:\n{lines}\n"
        f"drop {'the flag' if len(conflicts) == 1 else 'these flags'} to resume it, or start a "
        f"new run with them (without --resume){more}"
    )


def _own_spec(spec: RunSpec, state: dict[str, Any], resume: str) -> RunSpec:
    """The spec `train --resume` trains: the checkpoint's own plan, data settings and trainer
    settings whole (the fields no flag sets too, such as the split fractions), with the
    components and device the flags' spec has (this process trains on the CPU)."""
    from tune_app.plan.plan import Plan

    own = Plan.from_dict(state["plan"], f"checkpoint {resume}'s plan")
    recorded = _recorded_spec(state)
    known = {f.name for f in fields(DataConfig)}  # an older checkpoint's other keys dropped
    data = DataConfig.from_dict({k: v for k, v in recorded["data"].items() if k in known})
    data = replace(data, components=spec.data.components)
    train = replace(TrainConfig.from_dict(recorded["train"]), device=spec.train.device)
    done = int(state["epoch"])
    rest = (
        f"epochs {done + 1}-{own.total_epochs}"
        if done < own.total_epochs
        else "every epoch of it had run"
    )
    print(f"resuming {resume} after epoch {done} with its own plan ({own.shape}): {rest}")
    return replace(spec.with_plan(own), data=data, train=train)


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
    with _done(Path(args.output_dir), args):
        print(
            f"done: {Path(args.output_dir) / 'best_model_combined.pth'} "
            f"(best val_free_loss {best:.5f})"
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

"""`tune-app`: argument parsing, exit codes (0 ok, 2 bad input, 1 failure) and one call per command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from tune_app.errors import DivergedError, InputError, RunFailed

if TYPE_CHECKING:
    from tune_app.runs.spec import RunSpec

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int, _non_negative_int = _whole(1), _whole(0)


def _epoch_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 1,31,100, got {text!r}") from None


def _add_plan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", help="plan YAML (default: the shipped seed_500 plan)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a plan field, phases numbered from 1: --set phases.2.alpha=0.7",
    )
    parser.add_argument(
        "--phase-epochs", type=_positive_int, help="shorten every phase to N epochs"
    )


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    """Everything that defines a training run: plan, data, model, trainer settings."""
    _add_plan_args(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="long-format parquet/CSV (default: built-in synthetic data)")
    data.add_argument("--components", help="comma-separated component columns (default: all)")
    data.add_argument(
        "--fill", choices=["ffill"], help="fill NaN/inf by carrying the last value forward"
    )
    data.add_argument("--input-len", type=_positive_int, help="input window (default 48)")
    data.add_argument("--output-len", type=_positive_int, default=24)
    data.add_argument("--stride", type=_positive_int, default=1, help="step between windows")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model-config", help="JSON/YAML model config (e.g. from `tune-app capacity`)"
    )
    model.add_argument("--hidden", type=_positive_int, help="hidden units (default 64)")
    model.add_argument("--layers", type=_positive_int, help="recurrent layers (default 1)")
    model.add_argument("--dropout", type=float, help="dropout (default 0)")
    model.add_argument("--cell", choices=["gru", "lstm"], help="recurrent cell (default gru)")
    trainer = parser.add_argument_group("trainer")
    trainer.add_argument("--seed", type=int, default=0)
    trainer.add_argument("--batch-size", type=_positive_int, default=64)
    trainer.add_argument(
        "--checkpoint-every",
        type=_non_negative_int,
        default=0,
        help="extra checkpoints every N epochs (phase boundaries always)",
    )
    trainer.add_argument(
        "--rank-alpha", type=float, default=0.6, help="alpha of the fixed ranking objective"
    )
    trainer.add_argument(
        "--rank-max-lag", type=_positive_int, default=20, help="max_lag of the ranking objective"
    )
    trainer.add_argument("--threads", type=_positive_int, default=1, help="torch threads per trial")


def _add_allow_other_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-other-data",
        action="store_true",
        help="resume on a data file other than the checkpoint's own (its fingerprint differs)",
    )


def build_spec(args: argparse.Namespace, device: str = "cpu") -> RunSpec:
    from tune_app.plan.plan import load_plan
    from tune_app.runs.spec import RunSpec, load_model_config
    from tune_app.training.data import DataConfig
    from tune_app.training.model import ModelConfig
    from tune_app.training.trainer import TrainConfig

    plan = load_plan(args.plan, args.overrides, args.phase_epochs)
    components = tuple(c.strip() for c in args.components.split(",")) if args.components else None
    model_raw, data_raw = load_model_config(args.model_config) if args.model_config else ({}, {})
    data = DataConfig(
        # a capacity search's window length comes with its model config, unless given here
        input_len=args.input_len or int(data_raw.get("input_len", 48)),
        output_len=args.output_len,
        stride=args.stride,
        components=components,
        fill=args.fill,
    )
    spec = RunSpec(
        plan=plan, model=ModelConfig(), data=data, train=TrainConfig(), data_path=args.data
    )
    table = spec.open_table()
    model_raw.setdefault("components", len(table.components))
    for key in ("hidden", "layers", "dropout", "cell"):
        if getattr(args, key) is not None:
            model_raw[key] = getattr(args, key)
    if not 0.0 <= args.rank_alpha <= 1.0:
        raise InputError(f"--rank-alpha: must lie in [0, 1] (got {args.rank_alpha})")
    train = TrainConfig(
        seed=args.seed,
        batch_size=args.batch_size,
        checkpoint_every=args.checkpoint_every,
        rank_alpha=args.rank_alpha,
        rank_max_lag=args.rank_max_lag,
        threads=args.threads,
        device=device,
    )
    spec = RunSpec(
        plan=plan,
        model=ModelConfig.from_dict(model_raw),
        data=data,
        train=train,
        data_path=args.data,
    )
    spec.dataset(table)  # validates lengths and components before any work
    return spec


def _default_out(kind: str) -> Path:
    return Path("results") / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"


# ---------------------------------------------------------------- plan
def cmd_plan_show(args: argparse.Namespace) -> int:
    from tune_app.plan.plan import load_plan
    from tune_app.plan.view import default_epochs, plan_rows, plan_table, plot_plan

    plan = load_plan(args.plan, args.overrides, args.phase_epochs)
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
    from tune_app.plan.plan import load_plan

    plan = load_plan(args.file)
    print(f"{args.file}: ok ({len(plan.phases)} phases, {plan.total_epochs} epochs)")
    return 0


# ---------------------------------------------------------------- data
def cmd_data_make(args: argparse.Namespace) -> int:
    from tune_app.training.checkpoint import atomic_write_bytes
    from tune_app.training.synthetic import make_synthetic

    frame = make_synthetic(args.series, args.length, args.components, args.seed)
    out = Path(args.out)
    if out.suffix == ".csv":
        atomic_write_bytes(out, frame.to_csv(index=False).encode())
    elif out.suffix == ".parquet":
        atomic_write_bytes(out, frame.to_parquet(index=False))
    else:
        raise InputError(f"--out {out}: name a .parquet or .csv file")
    print(f"wrote {out}: {args.series} series x {args.length} steps x {args.components} components")
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from tune_app.training.data import DataConfig, describe, read_series

    components = tuple(args.components.split(",")) if args.components else None
    print(describe(read_series(args.file, DataConfig(components=components, fill=args.fill))))
    return 0


# ---------------------------------------------------------------- in-process training
def cmd_train(args: argparse.Namespace) -> int:
    from tune_app.runs.local import run_train

    stop_after = args.stop_after
    if args.replay:
        from tune_app.runs.results import replay_spec

        spec, epoch = replay_spec(Path(args.replay))
        stop_after = stop_after or epoch
        spec.dataset()  # validate before writing anything
    else:
        spec = build_spec(args)
    out = Path(args.out) if args.out else _default_out("train")
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
        f"done: {out}  val_free_loss {last.get('val_free_loss', float('nan')):.5f}  "
        f"best {last.get('best_val_free_loss', float('nan')):.5f}"
    )
    return 0


def cmd_continue(args: argparse.Namespace) -> int:
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
    best = result.history[-1]["best_val_free_loss"]
    print(
        f"done: {Path(args.output_dir) / 'best_model_combined.pth'} (best val_free_loss {best:.5f})"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tune-app",
        description="Run a multi-phase training plan as a Ray Tune trial, search the plan's "
        "modifications with PBT (capacity with Optuna), and export the best checkpoint with the "
        "schedule that produced it. Exit codes: 0 ok, 2 bad input, 1 failure.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    plan = commands.add_parser("plan", help="show, plot or validate a training plan")
    plan_cmds = plan.add_subparsers(dest="plan_command", required=True)
    show = plan_cmds.add_parser("show", help="the plan's phases and every knob at chosen epochs")
    _add_plan_args(show)
    show.add_argument(
        "--epochs", type=_epoch_list, help="e.g. 1,31,100 (default: phase starts and ends)"
    )
    show.add_argument("--steps-per-epoch", type=_positive_int, default=1)
    show.add_argument("--json", action="store_true", help="a JSON array, one object per epoch")
    show.add_argument("--plot", help="draw every schedule to this PNG")
    show.set_defaults(handler=cmd_plan_show)
    validate = plan_cmds.add_parser("validate", help="check a plan YAML; lists every problem")
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_plan_validate)

    data = commands.add_parser("data", help="make or inspect data")
    data_cmds = data.add_subparsers(dest="data_command", required=True)
    make = data_cmds.add_parser("make-synthetic", help="write the built-in synthetic data set")
    make.add_argument("--out", required=True, help=".parquet or .csv")
    make.add_argument("--series", type=_positive_int, default=6)
    make.add_argument("--length", type=_positive_int, default=400)
    make.add_argument("--components", type=_positive_int, default=3)
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(handler=cmd_data_make)
    inspect = data_cmds.add_parser("inspect", help="series, lengths, components, stats, problems")
    inspect.add_argument("file")
    inspect.add_argument("--components")
    inspect.add_argument("--fill", choices=["ffill"])
    inspect.set_defaults(handler=cmd_data_inspect)

    train = commands.add_parser("train", help="run a plan in this process (no Ray)")
    _add_run_args(train)
    train.add_argument("--out", help="run directory (default results/train-TIMESTAMP)")
    train.add_argument("--resume", help="checkpoint directory to resume from")
    _add_allow_other_data(train)
    train.add_argument("--progress-every", type=_positive_int, default=1)
    train.add_argument("--stop-after", type=_positive_int, help="stop after this epoch")
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
    cont.add_argument("--epochs", type=_positive_int, required=True)
    cont.add_argument("--start_lr", type=float, required=True)
    cont.add_argument("--min_lr", type=float, required=True)
    cont.add_argument("--output_dir", required=True)
    cont.add_argument("--data", help="the data file (default: the one the checkpoint trained on)")
    _add_allow_other_data(cont)
    cont.add_argument("--progress-every", type=_positive_int, default=10)
    cont.set_defaults(handler=cmd_continue)

    from tune_app.cli.results import add_result_commands

    add_result_commands(commands, _positive_int)
    from tune_app.cli.runs import add_run_commands

    add_run_commands(commands, _add_run_args)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except InputError as exc:
        print(f"tune-app: error: {exc}", file=sys.stderr)
        return 2
    except (DivergedError, RunFailed) as exc:
        print(f"tune-app: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tune-app: interrupted; resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

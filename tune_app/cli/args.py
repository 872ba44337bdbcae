"""What the commands share: argument types, flag groups, and `build_spec` (flags -> run)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tune_app.errors import InputError

if TYPE_CHECKING:
    from tune_app.runs.spec import RunSpec
    from tune_app.training.data import SeriesTable

__all__ = [
    "add_allow_other_data",
    "add_component_args",
    "add_plan_args",
    "add_run_args",
    "build_spec",
    "component_names",
    "default_out",
    "epoch_list",
    "non_negative_int",
    "positive_int",
    "print_notes",
]


def whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum.

    Args:
        minimum: the smallest value accepted.

    Returns:
        The parser argparse calls on the flag's text: it returns the number, or raises
        `argparse.ArgumentTypeError` (argparse then exits 2 naming the flag).
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


positive_int, non_negative_int = whole(1), whole(0)


def epoch_list(text: str) -> list[int]:
    """An argparse type: comma-separated epochs (`--epochs 1,31,100`).

    Args:
        text: the flag's text.

    Returns:
        The epochs, in the order given (empty parts skipped).

    Raises:
        ArgumentTypeError: a part is not a whole number (argparse exits 2 naming the flag).
    """
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 1,31,100, got {text!r}") from None


def add_plan_args(parser: argparse.ArgumentParser) -> None:
    """The flags that choose and shape the plan: `--plan FILE`, the repeatable `--set PATH=VALUE`
    (phases numbered from 1) and `--phase-epochs N`.

    Args:
        parser: the command's parser.
    """
    parser.add_argument("--plan", help="plan YAML (default: the shipped seed_500 plan)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a plan field, phases numbered from 1: --set phases.2.alpha=0.7",
    )
    parser.add_argument("--phase-epochs", type=positive_int, help="shorten every phase to N epochs")


def add_component_args(parser: Any) -> None:
    """`--components a,b` and the repeatable `--component NAME` (a name may hold a comma).

    Args:
        parser: the command's parser, or an argument group of it.
    """
    parser.add_argument(
        "--components", help="comma-separated component columns, in order (default: all)"
    )
    parser.add_argument(
        "--component",
        action="append",
        metavar="NAME",
        help="a component column, repeatable, in order; for names with a comma ('Druck, bar')",
    )


def component_names(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The components `--components` and `--component` name, in that order.

    Args:
        args: the parsed command line.

    Returns:
        The names, or None for every numeric column of the data.

    Raises:
        InputError: a name given twice.
    """
    names = [c.strip() for c in (args.components or "").split(",") if c.strip()]
    names += list(getattr(args, "component", None) or [])
    twice = sorted({repr(name) for name in names if names.count(name) > 1})
    if twice:
        raise InputError(f"--component(s): {', '.join(twice)} named twice; name each once")
    return tuple(names) or None


def add_run_args(parser: argparse.ArgumentParser, plans_given: bool = False) -> None:
    """Everything that defines a training run: plan, data, model, trainer settings.

    Args:
        parser: the command's parser.
        plans_given: the command takes its plans and seeds otherwise (`compare A B --seeds`):
            no --plan, --set or --seed, only --phase-epochs (`build_spec` then gives the seed
            plan, shortened, and seed 0).
    """
    if plans_given:
        parser.add_argument(
            "--phase-epochs", type=positive_int, help="shorten every phase to N epochs"
        )
        parser.set_defaults(plan=None, overrides=[], seed=0)
    else:
        add_plan_args(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="long-format parquet/CSV (default: built-in synthetic data)")
    add_component_args(data)
    data.add_argument(
        "--fill",
        choices=["ffill"],
        help="fill NaN/inf and missing steps by carrying the last value forward",
    )
    data.add_argument("--input-len", type=positive_int, help="input window (default 48)")
    data.add_argument("--output-len", type=positive_int, default=24)
    data.add_argument("--stride", type=positive_int, default=1, help="step between windows")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model-config", help="JSON/YAML model config (e.g. from `tune-app capacity`)"
    )
    model.add_argument("--hidden", type=positive_int, help="hidden units (default 64)")
    model.add_argument("--layers", type=positive_int, help="recurrent layers (default 1)")
    model.add_argument("--dropout", type=float, help="dropout (default 0)")
    model.add_argument("--cell", choices=["gru", "lstm"], help="recurrent cell (default gru)")
    trainer = parser.add_argument_group("trainer")
    if not plans_given:
        trainer.add_argument("--seed", type=int, default=0)
    trainer.add_argument("--batch-size", type=positive_int, default=64)
    trainer.add_argument(
        "--checkpoint-every",
        type=non_negative_int,
        default=0,
        help="extra checkpoints every N epochs (phase boundaries always)",
    )
    trainer.add_argument(
        "--rank-alpha", type=float, default=0.6, help="alpha of the fixed ranking objective"
    )
    trainer.add_argument(
        "--rank-max-lag", type=positive_int, default=20, help="max_lag of the ranking objective"
    )
    trainer.add_argument("--threads", type=positive_int, default=1, help="torch threads per trial")


def add_allow_other_data(parser: argparse.ArgumentParser) -> None:
    """`--allow-other-data`: resume on a data file whose fingerprint differs from the
    checkpoint's.

    Args:
        parser: the command's parser.
    """
    parser.add_argument(
        "--allow-other-data",
        action="store_true",
        help="resume on a data file other than the checkpoint's own (its fingerprint differs)",
    )


def build_spec(args: argparse.Namespace, device: str = "cpu") -> tuple[RunSpec, SeriesTable]:
    """The run the flags describe, and its data read and validated once.

    Args:
        args: the parsed command line (plan, data, model and trainer flags; `add_run_args`).
        device: where trials train ("cpu", or "cuda" with --gpus-per-trial > 0).

    Returns:
        The RunSpec (plan, model, data and trainer settings, the data file's absolute path or
        its URI) and the data as read (its notes printed on stderr).

    Raises:
        InputError: a bad plan, data file, model config or flag, before any work starts.
    """
    from tune_app.plan.plan import load_plan
    from tune_app.runs.spec import RunSpec, load_model_config
    from tune_app.training.data import DataConfig, absolute_data_path
    from tune_app.training.model import ModelConfig
    from tune_app.training.trainer import TrainConfig

    plan = load_plan(args.plan, args.overrides, args.phase_epochs)
    components = component_names(args)
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
    flags = ("seed", "batch_size", "checkpoint_every", "rank_alpha", "rank_max_lag", "threads")
    train = TrainConfig(**{flag: getattr(args, flag) for flag in flags}, device=device)
    spec = RunSpec(
        plan=plan,
        model=ModelConfig.from_dict(model_raw),
        data=data,
        train=train,
        # recorded absolute (a Ray trial's working directory is another folder), read as typed
        data_path=absolute_data_path(args.data),
    )
    print_notes(spec.dataset(table).notes)  # validates lengths and components before any work
    return spec, table


def print_notes(notes: Iterable[str]) -> None:
    """Each note (a column ignored, precision lost in a file, ...) as one line on stderr.

    Args:
        notes: the notes, one line each.
    """
    for note in notes:
        print(f"tune-app: note: {note}", file=sys.stderr)


def default_out(kind: str) -> Path:
    """Where a command writes when `--out` is not given.

    Args:
        kind: the command (`train`, ...).

    Returns:
        `results/<kind>-<YYYYmmdd-HHMMSS>`, the time now.
    """
    return Path("results") / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"

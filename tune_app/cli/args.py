"""What the commands share: argument types, flag groups, the flags backed by a settings
dataclass (`add_field`, `settings`), and `build_spec` (flags -> run).

A flag that sets a dataclass field defaults to None: its default is the dataclass's, defined
there only and shown in `--help` from there, and a flag given is one whose value is not None.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tune_app.errors import InputError
from tune_app.training.configs import CELL_NAMES, DataConfig, ModelConfig, TrainConfig

if TYPE_CHECKING:
    from tune_app.runs.spec import RunSpec
    from tune_app.training.data import SeriesTable

__all__ = [
    "add_allow_other_data",
    "add_component_args",
    "add_field",
    "add_plan_args",
    "add_run_args",
    "build_spec",
    "component_names",
    "default_out",
    "epoch_list",
    "field_values",
    "flag",
    "given_values",
    "non_negative_int",
    "positive_int",
    "print_notes",
    "settings",
    "typed",
]

Settings = TypeVar("Settings")
# what the parser sets itself, never typed: the subcommand's name and its function
PARSER_DESTS = frozenset({"command", "handler"})


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


def flag(dest: str) -> str:
    """The flag of an argparse dest.

    Args:
        dest: the dest, e.g. `batch_size`.

    Returns:
        The flag, e.g. `--batch-size`.
    """
    return "--" + dest.replace("_", "-")


def _default(cls: type, name: str) -> Any:
    (found,) = [f for f in fields(cls) if f.name == name]
    if found.default is MISSING:
        raise TypeError(f"{cls.__name__}.{name} has no plain default to show")
    return found.default


def add_field(container: Any, cls: type, name: str, help: str = "", **kwargs: Any) -> None:
    """Add the flag of field `name` of dataclass `cls` (`--name-with-dashes`).

    Its argparse default is None, so a flag given is one whose value is not None; its help ends
    with the field's default, read from the dataclass (nothing is added for a default of None
    or False: the help says in words what happens then).

    Args:
        container: a parser or an argument group.
        cls: the dataclass whose field the flag sets.
        name: the field, which is also the flag's dest.
        help: what the flag does.
        **kwargs: `add_argument`'s others (type, choices, action, metavar).
    """
    default = _default(cls, name)
    if default is not None and default is not False:
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        help = f"{help} (default {shown})" if help else f"default {shown}"
    container.add_argument(flag(name), dest=name, default=None, help=help or None, **kwargs)


def typed(args: argparse.Namespace) -> frozenset[str]:
    """The arguments typed on the command line that `args` was parsed from (their dests).

    A flag that sets a settings field, and every flag the run commands compare with a run's
    record, defaults to None: typed means not None. Positional arguments are typed too.

    Args:
        args: what `build_parser().parse_args` returned, before any command changed it.

    Returns:
        The dests whose value is not None, but for those the parser sets itself.
    """
    return frozenset(
        dest for dest, value in vars(args).items() if value is not None and dest not in PARSER_DESTS
    )


def given_values(args: argparse.Namespace) -> dict[str, Any]:
    """The flags typed with their values: what `--resume` compares with a recorded run.

    Args:
        args: the parsed flags; `args.given` (set by `main`, see `typed`) names those typed.

    Returns:
        Dest -> value of each flag typed.
    """
    return {dest: getattr(args, dest) for dest in sorted(getattr(args, "given", ()))}


def field_values(
    cls: type, args: argparse.Namespace | Mapping[str, Any], skip: Iterable[str] = ()
) -> dict[str, Any]:
    """The fields of dataclass `cls` that the flags set: those whose value is not None.

    Args:
        cls: a settings dataclass.
        args: the parsed flags (or a mapping of dest -> value).
        skip: fields set otherwise (a flag of that name means something else).

    Returns:
        Field name -> the flag's value.
    """
    values = args if isinstance(args, Mapping) else vars(args)
    skipped = set(skip)
    return {
        f.name: values[f.name]
        for f in fields(cls)
        if f.name not in skipped and values.get(f.name) is not None
    }


def settings(
    cls: type[Settings], args: argparse.Namespace | Mapping[str, Any], **fixed: Any
) -> Settings:
    """An instance of dataclass `cls`: the fields the flags set, `fixed` (fields set
    otherwise: the device, the components two flags name), the dataclass's defaults for the rest.

    Args:
        cls: a settings dataclass (`TrainConfig`, `Launch`, `SearchOptions`, ...).
        args: the parsed flags (or a mapping of dest -> value).
        **fixed: fields set otherwise.

    Returns:
        The settings.
    """
    return cls(**field_values(cls, args, skip=fixed), **fixed)


def add_run_args(parser: argparse.ArgumentParser, plans_given: bool = False) -> None:
    """Everything that defines a training run: plan, data, model, trainer settings.

    Args:
        parser: the command's parser.
        plans_given: the command takes its plans and seeds otherwise (`compare A B --seeds`):
            no --plan, --set or --seed, only --phase-epochs (`build_spec` then gives the seed
            plan, shortened, and the trainer's default seed).
    """
    if plans_given:
        parser.add_argument(
            "--phase-epochs", type=positive_int, help="shorten every phase to N epochs"
        )
    else:
        add_plan_args(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--data", help="long-format parquet/CSV (default: built-in synthetic data)")
    add_component_args(data)
    add_field(
        data,
        DataConfig,
        "fill",
        choices=["ffill"],
        help="fill NaN/inf and missing steps by carrying the last value forward",
    )
    add_field(data, DataConfig, "input_len", type=positive_int, help="input window")
    add_field(data, DataConfig, "output_len", type=positive_int, help="output window")
    add_field(data, DataConfig, "stride", type=positive_int, help="step between windows")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model-config", help="JSON/YAML model config (e.g. from `tune-app capacity`)"
    )
    add_field(model, ModelConfig, "hidden", type=positive_int, help="hidden units")
    add_field(model, ModelConfig, "layers", type=positive_int, help="recurrent layers")
    add_field(model, ModelConfig, "dropout", type=float, help="dropout")
    add_field(model, ModelConfig, "cell", choices=CELL_NAMES, help="recurrent cell")
    trainer = parser.add_argument_group("trainer")
    if not plans_given:
        add_field(trainer, TrainConfig, "seed", type=int, help="the trial's random seed")
    add_field(trainer, TrainConfig, "batch_size", type=positive_int, help="windows per batch")
    add_field(
        trainer,
        TrainConfig,
        "checkpoint_every",
        type=non_negative_int,
        help="extra checkpoints every N epochs (phase boundaries always)",
    )
    add_field(
        trainer, TrainConfig, "rank_alpha", type=float, help="alpha of the fixed ranking objective"
    )
    add_field(
        trainer,
        TrainConfig,
        "rank_max_lag",
        type=positive_int,
        help="max_lag of the ranking objective",
    )
    add_field(trainer, TrainConfig, "threads", type=positive_int, help="torch threads per trial")


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
        args: the parsed flags of a command that took `add_run_args`; a setting left out (None)
            takes its dataclass's default, or a --model-config file's value.
        device: where the trials train ("cpu" or "cuda").

    Returns:
        The RunSpec (plan, model, data and trainer settings, the data file's absolute path or
        its URI) and the data as read (its notes printed on stderr).

    Raises:
        InputError: a bad plan, data file, model config or flag, before any work starts.
    """
    from tune_app.plan.plan import load_plan
    from tune_app.runs.spec import RunSpec, load_model_config
    from tune_app.training.data import absolute_data_path, open_series

    plan = load_plan(
        getattr(args, "plan", None), getattr(args, "overrides", None) or [], args.phase_epochs
    )
    model_raw, data_raw = load_model_config(args.model_config) if args.model_config else ({}, {})
    # a capacity search's window length comes with its model config, unless given here
    from_file = {"input_len": int(data_raw["input_len"])} if "input_len" in data_raw else {}
    flags = field_values(DataConfig, args, skip=["components"])
    data = DataConfig(**{**from_file, **flags}, components=component_names(args))
    table = open_series(args.data, data)
    model_raw.setdefault("components", len(table.components))
    model_raw.update(field_values(ModelConfig, args, skip=["components"]))
    train = settings(TrainConfig, args, device=device)
    if not 0.0 <= train.rank_alpha <= 1.0:
        raise InputError(f"--rank-alpha: must lie in [0, 1] (got {train.rank_alpha})")
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

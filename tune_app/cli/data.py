"""`tune-app data make-synthetic | inspect`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tune_app.cli.args import add_component_args, component_names, positive_int
from tune_app.errors import InputError

__all__ = ["add_data_commands"]


def cmd_data_make(args: argparse.Namespace) -> int:
    """`tune-app data make-synthetic --out FILE`: write the built-in synthetic data set.

    Args:
        args: the parsed command line (`--out`, `--series`, `--length`, `--components`,
            `--seed`).

    Returns:
        0, after printing what was written.

    Raises:
        InputError: `--out` is neither .parquet nor .csv.
    """
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
    """`tune-app data inspect FILE`: print the file's series, lengths, components, statistics
    and problems (gaps and irregular timestamps listed, not refused).

    Args:
        args: the parsed command line (the file, components, `--fill`).

    Returns:
        0, after printing the description.
    """
    from tune_app.training.data import DataConfig, read_series
    from tune_app.training.summary import describe

    config = DataConfig(components=component_names(args), fill=args.fill)
    print(describe(read_series(args.file, config, allow_gaps=True)))
    return 0


def add_data_commands(commands: Any) -> None:
    """Register `tune-app data make-synthetic` and `tune-app data inspect`.

    Args:
        commands: the parser's subcommands (`add_subparsers`).
    """
    data = commands.add_parser("data", help="make or inspect data")
    data_cmds = data.add_subparsers(dest="data_command", required=True)
    make = data_cmds.add_parser("make-synthetic", help="write the built-in synthetic data set")
    make.add_argument("--out", required=True, help=".parquet or .csv")
    make.add_argument("--series", type=positive_int, default=6)
    make.add_argument("--length", type=positive_int, default=400)
    make.add_argument("--components", type=positive_int, default=3)
    make.add_argument("--seed", type=int, default=0)
    make.set_defaults(handler=cmd_data_make)
    inspect = data_cmds.add_parser("inspect", help="series, lengths, components, stats, problems")
    inspect.add_argument("file")
    add_component_args(inspect)
    inspect.add_argument("--fill", choices=["ffill"])
    inspect.set_defaults(handler=cmd_data_inspect)

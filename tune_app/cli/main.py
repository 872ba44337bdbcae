"""`tune-app`: the parser, exit codes (0 ok, 2 bad input, 1 failure, 130 interrupted), dispatch."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Sequence

from tune_app.cli.certify import add_certify_command
from tune_app.cli.compare import add_compare_commands
from tune_app.cli.data import add_data_commands
from tune_app.cli.plan import add_plan_commands
from tune_app.cli.results import add_result_commands
from tune_app.cli.runs import add_run_commands
from tune_app.cli.train import add_train_commands
from tune_app.errors import DivergedError, InputError, Interrupted, RunFailed

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tune-app",
        description="Run a multi-phase training plan as a Ray Tune trial, search the plan's "
        "modifications with PBT (capacity with Optuna), and export the best checkpoint with the "
        "schedule that produced it. Exit codes: 0 ok, 2 bad input, 1 failure.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    add_plan_commands(commands)
    add_data_commands(commands)
    add_train_commands(commands)
    add_result_commands(commands)
    add_run_commands(commands)
    add_compare_commands(commands)
    add_certify_command(commands)
    return parser


def given_flags(argv: Sequence[str]) -> frozenset[str]:
    """The options typed in `argv` (their `dest`s), not those argparse filled with defaults:
    `--resume` compares only these with the run's settings.

    Args:
        argv: a command line that `build_parser()` accepts.

    Returns:
        The dests of the options given, abbreviations included.
    """
    parser = build_parser()
    options: set[str] = set()
    parsers = [parser]
    while parsers:  # the parser and every subcommand's: a default that is never set
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.option_strings:
                action.default = argparse.SUPPRESS
                options.add(action.dest)
    return frozenset(dest for dest in vars(parser.parse_args(argv)) if dest in options)


def with_flags(argv: Sequence[str], flags: dict[str, str | None]) -> list[str]:
    """`argv` with `flags` set: each one's old occurrence (and value) dropped, then appended."""
    out, skip = [], False
    for token in argv:
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        if name in flags:
            skip = flags[name] is not None and "=" not in token
            continue
        out.append(token)
    for name, value in flags.items():
        out += [name] if value is None else [name, value]
    return out


def resume_hint(argv: Sequence[str], exc: KeyboardInterrupt) -> str:
    """What to run after Ctrl-C: tune_app's own command that resumes the run."""
    if isinstance(exc, Interrupted) and exc.flags:
        command = "resume with: tune-app " + shlex.join(with_flags(argv, exc.flags))
        return f"{exc.note}; {command}" if exc.note else command
    if isinstance(exc, Interrupted) and exc.note:
        return exc.note
    return "nothing was saved yet; run the command again"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.given = given_flags(argv)
    handler: Handler = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()  # a reader that left (`| head`) shows here, not at interpreter exit
        return code
    except InputError as exc:
        print(f"tune-app: error: {exc}", file=sys.stderr)
        return 2
    except (DivergedError, RunFailed) as exc:
        flags = getattr(exc, "flags", None)
        again = f"; resume with: tune-app {shlex.join(with_flags(argv, flags))}" if flags else ""
        print(f"tune-app: {exc}{again}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"tune-app: interrupted; {resume_hint(argv, exc)}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:  # what no layer turned into a message: the disk, the permissions
        where = f" {exc.filename}" if exc.filename else ""
        print(f"tune-app: could not read or write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _closed_pipe() -> int:
    """`tune-app ... | head` closed the pipe: stop quietly, as cat and grep do. stdout is
    pointed at devnull so the interpreter's final flush finds no closed pipe either."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a writer the reader left


if __name__ == "__main__":
    sys.exit(main())

"""`tune-app`: the parser, exit codes (0 ok, 2 bad input, 1 failure, 130 interrupted), dispatch."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Callable, Sequence

from tune_app.cli.args import typed
from tune_app.cli.certify import add_certify_command
from tune_app.cli.compare import add_compare_commands
from tune_app.cli.data import add_data_commands
from tune_app.cli.plan import add_plan_commands
from tune_app.cli.results import add_result_commands
from tune_app.cli.runs import add_run_commands
from tune_app.cli.train import add_train_commands
from tune_app.errors import DivergedError, InputError, Interrupted, RunFailed

__all__ = ["build_parser", "main", "run"]

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The `tune-app` parser: every command group registers its subcommands, each with its
    handler (`set_defaults(handler=...)`).

    Returns:
        The parser.
    """
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
    """The arguments typed in `argv` (their dests), not the defaults: `--resume` compares only
    these with the run's settings. Every flag the run commands compare defaults to None, so
    typed means not None (`args.typed`).

    Args:
        argv: a command line that `build_parser()` accepts.

    Returns:
        The dests of the arguments given, abbreviations resolved.
    """
    return typed(build_parser().parse_args(argv))


def with_flags(argv: Sequence[str], flags: dict[str, str | None]) -> list[str]:
    """A command line with `flags` set: each one's old occurrence (and its value) dropped, then
    the flag appended, so the printed command resumes the run it names.

    Args:
        argv: the command line as typed (without `tune-app`).
        flags: flag -> value (None: a switch, such as `--resume`).

    Returns:
        The new command line.
    """
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


def resume_hint(argv: Sequence[str], exc: KeyboardInterrupt, resuming: bool = False) -> str:
    """What to run after Ctrl-C.

    Args:
        argv: the command line as typed (without `tune-app`).
        exc: the interrupt; an `Interrupted` carries the flags (or a note) that resume the run.
        resuming: the command was a `--resume` (interrupted before the run went on, its
            checkpoints stand: the same command again continues it).

    Returns:
        `resume with: tune-app ...`, the interrupt's note, or that nothing was saved yet.
    """
    if isinstance(exc, Interrupted) and exc.flags:
        command = "resume with: tune-app " + shlex.join(with_flags(argv, exc.flags))
        return f"{exc.note}; {command}" if exc.note else command
    if isinstance(exc, Interrupted) and exc.note:
        return exc.note
    if resuming:  # stopped before the run went on (fresh-s4): its checkpoints stand
        return "the run was not resumed yet, nothing of it changed; run the same command again"
    return "nothing was saved yet; run the command again"


def main(argv: Sequence[str] | None = None) -> int:
    """`tune-app`: parse the command line, run the command's handler, and turn what it raises
    into one line on stderr and an exit code.

    Args:
        argv: the arguments after `tune-app` (None: `sys.argv[1:]`).

    Returns:
        The exit code: 0 ok, 2 bad input (`InputError`, before any work; argparse's own
        usage errors exit 2 too), 1 a failed or diverged run or a file that could not be
        read or written, 130 Ctrl-C (with the command that resumes, where there is one), 141
        when the reader of the output left (`| head`).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.given = typed(args)
    handler: Handler = args.handler
    try:
        if "address" in vars(args):  # a Ray command (each has --address): checked before Ray
            _check_ray_setup(args)
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
        if getattr(args, "finished", False):  # after the command's last line: it had ended
            return 0
        hint = resume_hint(argv, exc, resuming=getattr(args, "resume", False))
        print(f"tune-app: interrupted; {hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:  # what no layer turned into a message: the disk, the permissions
        where = f" {exc.filename}" if exc.filename else ""
        print(f"tune-app: could not read or write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _check_ray_setup(args: argparse.Namespace) -> None:
    """What a Ray command checks first, before Tune, torch or the data are loaded: the
    environment Ray reads when it is imported (tune/ray_env.py), and the cluster the run
    joins, if any (its address, the token, the cluster's answer: tune/cluster.py), so that a
    join that cannot work fails in seconds, not after the data are read.

    Raises:
        InputError: one line naming the setting and the fix.
    """
    import os

    from tune_app.errors import InputError
    from tune_app.tune.ray_env import check_environment, from_environment, target

    check_environment(os.environ)  # before Ray is imported: some settings crash its import
    if where := target(args.address):
        from tune_app.tune.cluster import check_cluster  # Ray's core only: not Tune, not torch

        try:
            check_cluster(where)
        except InputError as error:
            if args.address:
                raise
            raise from_environment(error, where) from None


def _closed_pipe() -> int:
    """`tune-app ... | head` closed the pipe: stop quietly, as cat and grep do. stdout is
    pointed at devnull so the interpreter's final flush finds no closed pipe either."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, what a shell reports for a writer the reader left


def run() -> int:
    """The `tune-app` console script (and `python -m tune_app.cli`): `main`, then, when the
    command used Ray, Ray shut down with SIGTERM ignored (`tune.cluster.leave_quietly`), so
    nothing of Ray's is printed after tune-app's last line and the exit code stays its own.

    Once `main` has returned, the command has ended and its last line said how (`done: ...`,
    or the error and the command that goes on). The process still has to shut Ray down and
    unload torch (about a second), and Python restores the default SIGINT action while it
    exits: a Ctrl-C then killed it with status 130 and no word, after it had printed its
    result. Now a Ctrl-C while Ray shuts down ends the process at once with the command's own
    exit code (a Ray that hangs can still be left), and one after that, in the interpreter's
    teardown, is ignored.

    Returns:
        `main`'s exit code.
    """
    import os
    import signal

    code = 1  # main raised: an unexpected error, its traceback follows

    def quit_now(signum: int, frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    try:
        code = main()
        return code
    finally:
        signal.signal(signal.SIGINT, quit_now)
        if "ray" in sys.modules:
            from tune_app.tune.cluster import leave_quietly

            leave_quietly()
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(run())

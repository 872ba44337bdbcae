"""The commands of `tune-app` that read runs and checkpoints back: best, report, evaluate, generate."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tune_app.cli.args import positive_int, print_notes
from tune_app.errors import InputError
from tune_app.training.metrics import RANK_METRIC, RANK_MODE

__all__ = ["add_result_commands"]


def _print_search_summary(run: Any, config: Any, metric: str) -> None:
    from tune_app.runs.results import trial_table

    rows = trial_table(run, metric)
    print(f"{'trial':<14} {'control':<8} {'epochs':>6} {'best ' + metric:>20}")
    for row in rows:
        print(
            f"{row['folder']:<14} {'yes' if row['control'] else '':<8} {row['epochs']:>6} {row[f'best_{metric}']:>20.6f}"
        )
    control = next((r for r in rows if r["control"]), None)
    if control is not None:
        ratio = config.value / control[f"best_{metric}"]
        print(
            f"winner {_folder(config)}: {config.value:.6f} = {ratio:.3f} x the control's best "
            f"({control[f'best_{metric}']:.6f}, the plan as written): selection scores "
            "(optimistic: they chose the winner)"
        )


def _folder(config: Any) -> str:
    """The exported trial's folder name (`member-02`, `trial-03`): its checkpoint's parent."""
    return str(config.checkpoint).rstrip("/").rsplit("/", 2)[-2]


def _wrapped(head: str, items: list[str], width: int = 100) -> list[str]:
    """`head` then `items` joined by ", ", in lines of at most `width` (an item never split)."""
    lines = [head]
    for number, item in enumerate(items):
        if number and len(lines[-1]) + len(item) + 2 > width:
            lines[-1] += ","
            lines.append(" " * (len(head) + 1) + item)
        else:
            lines[-1] += (", " if number else " ") + item
    return lines


def _print_modification_evidence(run: Any) -> None:
    import textwrap

    from tune_app.analysis.text import (
        EFFECTS_EXPLAINED,
        exploit_effects,
        readable_effects,
        winner_modifications,
    )

    print("the winner's lineage and the modifications in force:")
    for line in winner_modifications(run):
        print(f"  {line}")
    effects = exploit_effects(run)
    if not len(effects):
        return
    print("after each exploit:")
    print(textwrap.fill(EFFECTS_EXPLAINED, 100, initial_indent="  ", subsequent_indent="  "))
    table = readable_effects(effects)
    header, *rows = table.drop(columns=["parameters changed"]).to_string(index=False).splitlines()
    print(header)
    for row, changed in zip(rows, table["parameters changed"], strict=True):
        print(row)
        for line in _wrapped("    parameters changed:", changed.split(", ")):
            print(line)


FILL_HELP = "fill NaN/inf and missing steps by carrying the last value forward"


def _out_dir(given: str | None, run: Any, name: str) -> Path:
    """--out, else RUN/NAME for a local run, else ./NAME (a remote run's folder is not ours to write)."""
    if given:
        return Path(given)
    return Path(run.location.path) / name if run.location.is_local else Path(name)


def _refuse_a_compare_run(run: Any, command: str) -> None:
    """`best` and `report` need a run with a winner; a compare run trains the same plans on
    several seeds, so its best trial is only the luckiest seed.

    Raises:
        InputError: for a compare run, one line: what the folder is (a search's certify/ or
            ablate/ run, or a compare run with its verdict) and the command to run instead.
    """
    import shlex

    from tune_app.cli.commands import resume_command
    from tune_app.runs.records import MANIFEST, CompareResult, RunManifest

    if run.kind != "compare":
        return
    location, parent = run.location, run.location.parent
    search = parent.join(MANIFEST).exists() and RunManifest.read(parent).kind == "search"
    if search and location.name in ("certify", "ablate"):
        what = "certification" if location.name == "certify" else "ablations"
        does = "copies its certificate into the export" if command == "best" else "opens with it"
        raise InputError(
            f"RUN {location.uri}: the {what} of the search run {parent.uri} (a compare run: "
            f"plans trained from scratch on fresh seeds, no winner to {command}); run "
            f"`tune-app {command} {shlex.quote(parent.uri)}` instead: it {does}"
        )
    arms = " and ".join(f"{a['label']} ({a['source']})" for a in run.manifest.arms) or "A and B"
    seeds = run.manifest.seeds
    result = CompareResult.read(location)
    verdict = (
        f"its verdict (comparison.json): {result.comparisons[0].mean.text}"
        if result and result.comparisons
        else "its comparison.json is not written yet (the run was cut short)"
    )
    train = (
        "; to get a model of the plan you choose, train it with `tune-app baseline --plan "
        "PLAN.yaml` and export that run with `tune-app best`"
        if command == "best"
        else ""
    )
    raise InputError(
        f"RUN {location.uri}: a compare run (plans {arms}, each trained from scratch on "
        f"{seeds or 'several'} seeds): it has no winner to {command}, its best trial is only "
        f"the luckiest seed; {verdict}. `{resume_command(run.manifest, location)}` prints its "
        f"per-seed table again (a finished run trains nothing){train}"
    )


def cmd_best(args: argparse.Namespace) -> int:
    """`tune-app best RUN`: export the run's best checkpoint (weights, plan.yaml that replays it,
    config.json, lineage.json, metrics.parquet, and a search's certificate when it is about
    this checkpoint) into `--out`, whole or not at all; a search also prints the trials, the
    winner against the control (selection scores), its lineage and what followed each
    exploit.

    Args:
        args: the parsed command line (the run, `--out`, `--metric`, `--mode`).

    Returns:
        0, after printing where the export is.
    """
    from tune_app.runs.results import export_best, open_run

    run = open_run(args.run)
    _refuse_a_compare_run(run, "best")
    out = _out_dir(args.out, run, "best")
    config = export_best(run, out, args.metric, args.mode)
    if run.kind == "search":
        _print_search_summary(run, config, args.metric)
        _print_modification_evidence(run)
    copied = _carry_certificate(run, config, out) if run.kind == "search" else False
    print(
        f"best: trial {_folder(config)} at epoch {config.epoch}: {args.metric} = {config.value:.6f}\n"
        f"exported to {out}/: best_model.pth plan.yaml config.json lineage.json metrics.parquet"
        + (" certificate.json" if copied else "")
    )
    return 0


def _carry_certificate(run: Any, config: Any, out: Path) -> bool:
    """Copy the run's certificate into the export and print its verdict, if it certifies
    this very checkpoint; else say why not, or how to get one. Returns whether it was copied."""
    import textwrap

    from tune_app.analysis.certificate import ablation_lines, certificate_lines, not_certified
    from tune_app.runs.records import CERTIFICATE, Certificate
    from tune_app.training.checkpoint import atomic_write_bytes

    def say(line: str) -> None:
        print(textwrap.fill(line, 100, subsequent_indent="  ", break_on_hyphens=False))

    certificate = Certificate.read(run.location)
    if certificate is None:
        say(not_certified(run.location.uri))
        return False
    if (certificate.winner, certificate.winner_epoch) != (config.trial, config.epoch):
        say(
            f"the run's certificate is about trial {certificate.winner} at epoch "
            f"{certificate.winner_epoch}, not this export's checkpoint: not copied"
        )
        return False
    for line in [*certificate_lines(certificate), *ablation_lines(certificate)]:
        say(line)
    atomic_write_bytes(out / CERTIFICATE, certificate.to_json())
    return True


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`tune-app evaluate CHECKPOINT`: score free-running forecasts against persistence and
    seasonal naive, per component and as their mean, on a split of the data (read and
    normalised as the model was trained).

    Args:
        args: the parsed command line (checkpoint, `--data`, `--fill`, `--split`, `--season`,
            `--json`).

    Returns:
        0, after printing the scores (a table, or JSON).
    """
    from tune_app.analysis.evaluate import dataset_for, evaluate, format_scores, load_model

    loaded = load_model(args.checkpoint)
    dataset = dataset_for(loaded, args.data, args.fill)
    print_notes(dataset.notes)
    report = evaluate(loaded, dataset, args.split, args.season)
    print(json.dumps(report, indent=2) if args.json else format_scores(report))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """`tune-app generate CHECKPOINT --series ID`: a free-running continuation of one series next
    to the truth, printed or written to `--out`; `--plot` draws it.

    Args:
        args: the parsed command line (checkpoint, `--data`, `--fill`, `--series`, `--steps`,
            `--out`, `--plot`).

    Returns:
        0, after printing or writing the steps.

    Raises:
        InputError: `--out` names neither a .parquet nor a .csv file (before any work).
    """
    from tune_app.analysis.evaluate import dataset_for, generate, load_model, plot_generation
    from tune_app.training.checkpoint import atomic_write_bytes

    suffix = Path(args.out).suffix.lower() if args.out else None
    if suffix not in (None, ".parquet", ".csv"):
        raise InputError(f"--out {args.out}: name a .parquet or .csv file")
    loaded = load_model(args.checkpoint)
    dataset = dataset_for(loaded, args.data, args.fill)
    print_notes(dataset.notes)
    frame, context = generate(loaded, dataset, args.series, args.steps)
    if args.out:
        written = (
            frame.to_csv(index=False).encode()
            if suffix == ".csv"
            else frame.to_parquet(index=False)
        )
        atomic_write_bytes(Path(args.out), written)
        print(f"wrote {args.out}: {len(frame)} generated steps of series {args.series}")
    else:
        print(frame.to_string(index=False, max_rows=40))
    if args.plot:
        print(f"plot: {plot_generation(frame, context, list(dataset.components), Path(args.plot))}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`tune-app report RUN`: one self-contained HTML page and a Markdown twin (`analysis/page.py`)
    into `--out`, whole or not at all.

    Args:
        args: the parsed command line (the run, `--out`).

    Returns:
        0, after printing the two files' paths.
    """
    from tune_app.analysis.page import write_report
    from tune_app.runs.results import open_run

    run = open_run(args.run)
    _refuse_a_compare_run(run, "report")
    out = _out_dir(args.out, run, "report")
    page, twin = write_report(run, out)
    print(f"report: {page} (self-contained) and {twin}")
    return 0


def add_result_commands(commands: Any) -> None:
    """Register `tune-app best`, `report`, `evaluate` and `generate`.

    Args:
        commands: the parser's subcommands (`add_subparsers`).
    """
    best = commands.add_parser(
        "best", help="export the best checkpoint of a run, with its plan and lineage"
    )
    best.add_argument("run", help="run directory or URI")
    best.add_argument(
        "--out", help="export directory (default RUN/best, or ./best for remote runs)"
    )
    best.add_argument("--metric", default=RANK_METRIC, help=f"(default {RANK_METRIC})")
    best.add_argument("--mode", default=RANK_MODE, choices=["min", "max"])
    best.set_defaults(handler=cmd_best)

    report = commands.add_parser("report", help="an HTML page and a Markdown twin about a run")
    report.add_argument("run", help="run directory or URI")
    report.add_argument(
        "--out", help="directory for report.html, report.md and the plots (default RUN/report)"
    )
    report.set_defaults(handler=cmd_report)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint against naive forecasts")
    evaluate.add_argument("checkpoint", help="a `tune-app best` export or a checkpoint directory")
    evaluate.add_argument("--data", help="the data file (default: the one it was trained on)")
    evaluate.add_argument("--fill", choices=["ffill"], help=FILL_HELP)
    evaluate.add_argument("--split", default="test", choices=["train", "val", "test"])
    evaluate.add_argument(
        "--season",
        type=positive_int,
        help="seasonal-naive period in steps (default: found from the data: ACF peak, timestamps)",
    )
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    generate = commands.add_parser(
        "generate", help="generate a continuation of a series, next to the truth"
    )
    generate.add_argument("checkpoint", help="a `tune-app best` export or a checkpoint directory")
    generate.add_argument("--data", help="the data file (default: the one it was trained on)")
    generate.add_argument("--fill", choices=["ffill"], help=FILL_HELP)
    generate.add_argument("--series", required=True, help="series_id to continue")
    generate.add_argument(
        "--steps", type=positive_int, help="steps to generate (default: output length)"
    )
    generate.add_argument("--out", help="write the generated steps to this .parquet or .csv")
    generate.add_argument("--plot", help="draw context, truth and generation to this PNG")
    generate.set_defaults(handler=cmd_generate)

"""`tune-app certify RUN [--ablate]`: the search's winner against its control, on fresh seeds.

compare(the control's plan, the winner's plan) on seeds the search did not use, as a compare run
inside the search run (`RUN/certify/`); with `--ablate`, the winner's plan with one family of
modifications removed at a time, each against the full winner's plan on the same seeds
(`RUN/ablate/`, paired with `RUN/certify/`'s winner trials). The verdicts go into
`RUN/certificate.json` (records.Certificate), which `best` copies and `report` opens with.
Each part that has finished is not run again; one cut short goes on with `--resume`.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tune_app.cli.compare import add_seed_args, cost_line, failed_trials, score_and_write
from tune_app.errors import InputError, Interrupted, RunFailed

if TYPE_CHECKING:
    from tune_app.runs.records import Comparison, RunManifest
    from tune_app.runs.results import Run
    from tune_app.runs.spec import RunSpec
    from tune_app.runs.storage import Location
    from tune_app.training.data import SeriesTable

__all__ = ["add_certify_command"]

CERTIFY, ABLATE = "certify", "ablate"  # the compare runs' folders inside the search run


def _finished(run: Run) -> list[Any]:
    total = sum(int(p["epochs"]) for p in run.manifest.spec["plan"]["phases"])
    return [
        t for t in run.trials if not t.diverged and any(c.epoch >= total for c in t.checkpoints)
    ]


def _open_search(uri: str) -> Run:
    """The search run to certify; refuses another kind, or a search with no finished trial."""
    from tune_app.runs.results import open_run

    run = open_run(uri)
    if run.kind != "search":
        raise InputError(
            f"RUN {uri}: a {run.kind} run; certify compares a search's winner with its control "
            "(compare any two plans with `tune-app compare A B`)"
        )
    if not _finished(run):
        raise InputError(
            f"RUN {uri}: no trial has finished the plan yet; finish the search first "
            f"(`tune-app search --resume --name {run.location.name}`), then certify it"
        )
    return run


def _own_data(run: Run) -> tuple[RunSpec, SeriesTable]:
    from tune_app.runs.spec import RunSpec

    spec = RunSpec.from_dict(run.manifest.spec)
    try:
        table = spec.open_table()
    except InputError as exc:
        raise InputError(
            f"RUN {run.location.uri}: its data {spec.data_path} cannot be read from here ({exc}); "
            "certify from the folder the search started in"
        ) from None
    if run.manifest.data_fingerprint and not table.matches(run.manifest.data_fingerprint):
        raise InputError(
            f"RUN {run.location.uri}: its data {spec.data_path or 'synthetic'} changed since the "
            "search (its fingerprint differs); put back the file it trained on"
        )
    return spec, table


def _state(folder: Location) -> tuple[str, RunManifest | None]:
    """ "new" (nothing there), "started" (cut short) or "done" (comparison.json written)."""
    from tune_app.runs.records import COMPARISON, MANIFEST, RunManifest

    if not folder.join(MANIFEST).exists():
        return "new", None
    manifest = RunManifest.read(folder)
    return ("done" if folder.join(COMPARISON).exists() else "started"), manifest


def _seeds(args: argparse.Namespace, recorded: RunManifest | None, search_seed: int) -> list[int]:
    given: frozenset[str] = getattr(args, "given", frozenset())
    if recorded is not None and recorded.seeds and recorded.seed_offset is not None:
        seeds = list(range(recorded.seed_offset, recorded.seed_offset + recorded.seeds))
        asked = (args.seed_offset, args.seeds)
        if {"seeds", "seed_offset"} & given and asked != (seeds[0], len(seeds)):
            raise InputError(
                f"--seeds/--seed-offset: this run is being certified on seeds {seeds[0]}-"
                f"{seeds[-1]}; drop the flags, or move RUN/{CERTIFY}, RUN/{ABLATE} and "
                "RUN/certificate.json away to certify on other seeds"
            )
        return seeds
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    if search_seed in seeds:
        raise InputError(
            f"--seed-offset {args.seed_offset}: the seeds {seeds[0]}-{seeds[-1]} include the "
            f"search's own seed {search_seed}; a certificate needs seeds the search did not use: "
            f"e.g. --seed-offset {search_seed + 1}"
        )
    return seeds


def _plan_seconds(run: Run) -> float | None:
    """The search's median seconds per epoch (its epochs ran under the same load)."""
    values = [
        float(v)
        for t in run.trials
        if "seconds" in t.metrics
        for v in t.metrics["seconds"]
        if math.isfinite(float(v))
    ]
    return sorted(values)[len(values) // 2] if values else None


def _check_same_arms(folder: Location, manifest: RunManifest | None, arms: list[Any]) -> None:
    if manifest is None:
        return
    recorded = {arm["label"]: arm["fingerprint"] for arm in manifest.arms}
    wanted = {arm.label: arm.plan.fingerprint for arm in arms}
    if recorded != wanted:
        raise InputError(
            f"{folder.uri} holds a certification of other plans ({recorded}; now {wanted}: the "
            f"search's winner changed since); move {folder.uri} and RUN/certificate.json away "
            "to certify the new winner"
        )


def _compare(
    folder: Location,
    state: str,
    arms: list[Any],
    seeds: list[int],
    launch_args: dict[str, Any],
    context: tuple[RunSpec, SeriesTable, float | None, str],
) -> None:
    """Run (or resume) the compare run in `folder` unless it is done."""
    from tune_app.tune.compare import run_compare
    from tune_app.tune.runner import Launch

    if state == "done":
        return
    spec, table, seconds, what = context
    launch = Launch(name=folder.name, resume=state == "started", **launch_args)
    epochs = spec.plan.total_epochs

    def announce(slots: int) -> None:
        trials = len(arms) * len(seeds)
        print(f"certify: {what} x {len(seeds)} seeds = {cost_line(trials, epochs, slots, seconds)}")

    grid, location = run_compare(spec, table, arms, seeds, launch, announce)
    failures = failed_trials(grid)
    if failures:
        raise RunFailed(
            "; ".join(failures) + f"; {len(failures)} trial(s) of {location.uri} failed: run "
            "`tune-app certify` again with --resume to retry them (finished ones are kept)"
        )


def _verdicts(
    folders: dict[str, Location],
    states: dict[str, tuple[str, RunManifest | None]],
    arms: list[Any],
    ablated: list[Any],
) -> tuple[Comparison, list[Comparison]]:
    """The certify run's comparison and the ablations': read back where an earlier command
    wrote them, else scored now (and written)."""
    from tune_app.analysis.certificate import CONTROL, NAMES, WINNER
    from tune_app.runs.records import CompareResult

    if states[CERTIFY][0] == "done" and (found := CompareResult.read(folders[CERTIFY])):
        (main,) = found.comparisons
    else:
        (main,) = score_and_write(folders[CERTIFY], [(CONTROL, WINNER)], NAMES)
    if states[ABLATE][0] == "done" and (found := CompareResult.read(folders[ABLATE])):
        return main, list(found.comparisons)  # an earlier --ablate's, kept
    if not ablated:
        return main, []
    names = {WINNER: NAMES[WINNER], **{a.label: a.source for a in ablated}}
    winner = next(a.record() for a in arms if a.label == WINNER)
    pairs = [(WINNER, a.label) for a in ablated]
    return main, score_and_write(folders[ABLATE], pairs, names, (main.b_scores, [winner]))


def cmd_certify(args: argparse.Namespace) -> int:
    """`tune-app certify RUN`: the control's plan against the winner's, trained from scratch on
    fresh seeds inside the search run (`RUN/certify/`; with `--ablate` also the winner's plan
    less one family of modifications at a time, `RUN/ablate/`), written as
    `RUN/certificate.json`; prints the comparison and the verdicts.

    Args:
        args: the parsed command line (its `given`: the flags typed, for `--resume`).

    Returns:
        0 once the certificate is written (also when the winner is the plan as written: a
        certificate saying so, nothing trained).

    Raises:
        InputError: not a finished search run, its data gone or changed, a part cut short
            without `--resume`, other seeds or plans than the part started with, or resources
            no node has.
        Interrupted: Ctrl-C, with the flag that resumes it (`--resume`).
    """
    from tune_app.analysis.certificate import (
        CONTROL,
        WINNER,
        ablation_lines,
        certificate_lines,
        rule_epochs,
    )
    from tune_app.analysis.certification import comparison_lines
    from tune_app.analysis.outcome import member_label
    from tune_app.plan.ablation import families_in, without
    from tune_app.plan.plan import Plan
    from tune_app.runs.records import CERTIFICATE, Certificate
    from tune_app.runs.results import find_best
    from tune_app.tune.compare import Arm
    from tune_app.tune.resources import check_resources

    if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0:
        raise InputError(
            f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0 (got {args.cpus_per_trial}, "
            f"{args.gpus_per_trial})"
        )
    run = _open_search(args.run)
    trial, checkpoint = find_best(run)
    label = member_label(trial)
    control = next((t for t in run.trials if t.member and t.member.control), None)
    winner_plan = Plan.from_dict(checkpoint.meta.plan)
    control_plan = Plan.from_dict(run.manifest.spec["plan"])
    certificate = Certificate(
        run=run.location.uri,
        winner=trial.trial_id,
        winner_label=label,
        winner_epoch=checkpoint.epoch,
        control=control.trial_id if control else None,
        comparison=None,
        created=time.time(),
    )
    out = run.location.join(CERTIFICATE)
    if winner_plan.fingerprint == control_plan.fingerprint:
        note = (
            f"the winner ({label}) trained on the plan as written, the control's: the search "
            "found no modification to certify"
        )
        out.write_bytes(replace(certificate, note=note).to_json())
        print(f"certify: {note}\ncertificate: {out.uri}")
        return 0
    spec, table = _own_data(run)
    folders = {name: run.location.join(name) for name in (CERTIFY, ABLATE)}
    states = {name: _state(folder) for name, folder in folders.items()}
    for name, (state, _) in states.items():
        if state == "started" and not args.resume:
            raise InputError(
                f"RUN {args.run}: its {name} run ({folders[name].uri}) was cut short; pass "
                "--resume to go on with it (finished trials are kept)"
            )
    seeds = _seeds(args, states[CERTIFY][1], spec.train.seed)
    arms = [
        Arm(CONTROL, control_plan, "the control's plan: the plan as written"),
        Arm(WINNER, winner_plan, f"the winner's plan: {label} at epoch {checkpoint.epoch}"),
    ]
    _check_same_arms(folders[CERTIFY], states[CERTIFY][1], arms)
    rules = rule_epochs(run, trial, checkpoint)
    ablated = []
    for family in families_in(winner_plan, rules) if args.ablate else []:
        plan = without(winner_plan, family, rules)
        ablated.append(
            Arm(f"no-{family.replace(' ', '-')}", plan, f"the winner's plan without {family}")
        )
    if ablated:
        _check_same_arms(folders[ABLATE], states[ABLATE][1], ablated)
    check_resources(args.address, args.cpus_per_trial, args.gpus_per_trial, args.wait_for_resources)
    launch_args = {
        "storage": run.location.uri,
        "address": args.address,
        "cpus_per_trial": args.cpus_per_trial,
        "gpus_per_trial": args.gpus_per_trial,
        "max_failures": args.max_failures,
    }
    seconds = _plan_seconds(run)
    try:
        what = f"the control's and the winner's plan ({label} at epoch {checkpoint.epoch})"
        context = (spec, table, seconds, what)
        _compare(folders[CERTIFY], states[CERTIFY][0], arms, seeds, launch_args, context)
        if ablated:
            labels = ", ".join(a.label for a in ablated)
            context = (spec, table, seconds, f"the winner's plan less one family each ({labels})")
            _compare(folders[ABLATE], states[ABLATE][0], ablated, seeds, launch_args, context)
        main, ablations = _verdicts(folders, states, arms, ablated)
    except KeyboardInterrupt:  # Ctrl-C in a compare run or while scoring: certify --resume
        raise Interrupted({"--resume": None}) from None
    if args.ablate and not ablated:
        print("ablate: the winner's plan uses no family of modifications to remove")
    certificate = replace(certificate, comparison=main, ablations=tuple(ablations))
    out.write_bytes(certificate.to_json())
    print("\n".join(comparison_lines(main)))
    print()
    print("\n".join([*certificate_lines(certificate), *ablation_lines(certificate)]))
    print(
        f"\ncertificate: {out.uri}; `tune-app best {args.run}` copies it into the export, "
        f"`tune-app report {args.run}` opens with it"
    )
    return 0


def add_certify_command(commands: Any) -> None:
    """Register `tune-app certify RUN` (seeds, `--ablate`, Ray's launch flags).

    Args:
        commands: the parser's subcommands (`add_subparsers`).
    """
    certify = commands.add_parser(
        "certify",
        help="a search's winner against its control, trained on fresh seeds: certificate.json",
    )
    certify.add_argument("run", help="a search run (directory or URI)")
    add_seed_args(certify)
    certify.add_argument(
        "--ablate",
        action="store_true",
        help="also the winner's plan with one family of modifications removed at a time, each "
        "against the full winner's plan on the same seeds: which one carried the gain",
    )
    group = certify.add_argument_group("Ray Tune")
    group.add_argument(
        "--resume", action="store_true", help="go on with a certification that was cut short"
    )
    group.add_argument("--address", help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT")
    group.add_argument("--cpus-per-trial", type=float, default=1.0)
    group.add_argument("--gpus-per-trial", type=float, default=0.0)
    group.add_argument("--max-failures", type=int, default=2)
    group.add_argument(
        "--wait-for-resources",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="on a cluster, how long to wait for a node with a trial's resources (default 60)",
    )
    certify.set_defaults(handler=cmd_certify)

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
import shlex
import sys
import time
from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tune_app.cli.args import settings
from tune_app.cli.compare import add_seed_args, check_seed_count, failed_trials, score_and_write
from tune_app.cli.cost import Cost, cost_line, epoch_seconds, remaining
from tune_app.errors import InputError, Interrupted, NothingToResume, RunClaimed, RunFailed
from tune_app.tune.options import CompareOptions, Launch

if TYPE_CHECKING:
    from tune_app.plan.plan import Plan
    from tune_app.runs.records import Comparison, RunManifest
    from tune_app.runs.results import Run
    from tune_app.runs.spec import RunSpec
    from tune_app.runs.storage import Location
    from tune_app.training.data import SeriesTable
    from tune_app.tune.compare import Arm

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
        storage = shlex.quote(run.location.parent.uri)
        raise InputError(
            f"RUN {uri}: no trial has finished the plan yet; finish the search first "
            f"(`tune-app search --resume --name {shlex.quote(run.location.name)} --storage "
            f"{storage}`), then certify it"
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
    """ "new" (nothing there), "started" (cut short, or a trial failed: --resume runs it
    again) or "done" (comparison.json written, every trial finished or diverged)."""
    from tune_app.runs.records import MANIFEST, CompareResult, RunManifest

    if not folder.join(MANIFEST).exists():
        return "new", None
    manifest = RunManifest.read(folder)
    found = CompareResult.read(folder)
    failed = found is None or any(
        score.status == "failed"
        for comparison in found.comparisons
        for score in (*comparison.a_scores, *comparison.b_scores)
    )
    return ("started" if failed else "done"), manifest


def _seeds(
    args: argparse.Namespace, recorded: RunManifest | None, search_seed: int, run: Location
) -> list[int]:
    from tune_app.runs.records import CERTIFICATE

    given: frozenset[str] = getattr(args, "given", frozenset())
    asked = settings(CompareOptions, args)
    if recorded is not None and recorded.seeds and recorded.seed_offset is not None:
        seeds = list(range(recorded.seed_offset, recorded.seed_offset + recorded.seeds))
        if {"seeds", "seed_offset"} & given and asked.seed_list != seeds:
            raise InputError(
                f"--seeds/--seed-offset: this run is being certified on seeds {seeds[0]}-"
                f"{seeds[-1]}; drop the flags, or move {run.join(CERTIFY).uri}, "
                f"{run.join(ABLATE).uri} and {run.join(CERTIFICATE).uri} away to certify on "
                "other seeds"
            )
        return seeds
    seeds = asked.seed_list
    if search_seed in seeds:
        raise InputError(
            f"--seed-offset {asked.seed_offset}: the seeds {seeds[0]}-{seeds[-1]} include the "
            f"search's own seed {search_seed}; a certificate needs seeds the search did not use: "
            f"e.g. --seed-offset {search_seed + 1}"
        )
    return seeds


def _check_same_arms(folder: Location, manifest: RunManifest | None, arms: list[Any]) -> None:
    from tune_app.runs.records import CERTIFICATE

    if manifest is None:
        return
    recorded = {arm["label"]: arm["fingerprint"] for arm in manifest.arms}
    wanted = {arm.label: arm.plan.fingerprint for arm in arms}
    if recorded != wanted:
        raise InputError(
            f"{folder.uri} holds a certification of other plans ({recorded}; now {wanted}: the "
            f"search's winner changed since); move {folder.uri} and "
            f"{folder.parent.join(CERTIFICATE).uri} away to certify the new winner"
        )


def _compare(
    folder: Location,
    state: str,
    arms: list[Any],
    seeds: list[int],
    base: Launch,
    context: tuple[RunSpec, SeriesTable, float | None, str],
) -> list[str]:
    """Run (or resume) the compare run in `folder` unless it is done, as `base` says where
    and how (its name and resume set here). Returns one line per trial that failed (it counts
    against its plan; `--resume` runs it again)."""
    from tune_app.tune.compare import run_compare

    if state == "done":
        return []
    spec, table, seconds, what = context
    launch = replace(base, name=folder.name, resume=state == "started")
    epochs = spec.plan.total_epochs
    left, left_epochs, ended = remaining(folder, [a.label for a in arms], seeds, epochs)
    cost = Cost(left, left_epochs, epochs, len(arms) * len(seeds), ended, seconds)

    def announce(slots: int, ray_start: float) -> None:
        print(f"certify: {what} x {len(seeds)} seeds: {cost_line(cost, slots, ray_start)}")

    certify_again = f"tune-app certify {shlex.quote(folder.parent.uri)}"
    try:
        grid, _ = run_compare(spec, table, arms, seeds, launch, announce)
    except RunClaimed as exc:
        raise InputError(
            f"RUN {folder.parent.uri}: its {folder.name} run ({folder.uri}) is held by another "
            f"command ({exc.owner or 'another process'}); wait for it to end, then "
            f"`{certify_again} --resume`"
        ) from None
    except NothingToResume:
        raise InputError(
            f"RUN {folder.parent.uri}: its {folder.name} run ({folder.uri}) stopped before Ray "
            f"saved its state, so nothing of it can be resumed; move {folder.uri} away and run "
            f"`{certify_again}` again"
        ) from None
    return failed_trials(grid)


def _main_verdict(folder: Location, state: str) -> Comparison:
    """The certify run's comparison: read back where an earlier command wrote it, else
    scored now (and written)."""
    from tune_app.analysis.certificate import CONTROL, NAMES, WINNER
    from tune_app.runs.records import CompareResult

    if state == "done" and (found := CompareResult.read(folder)):
        (main,) = found.comparisons
        return main
    (main,) = score_and_write(folder, [(CONTROL, WINNER)], NAMES)
    return main


def _earlier_ablations(folder: Location, state: str) -> list[Comparison]:
    """The ablations an earlier `--ablate` finished (kept by a later certify), else none."""
    from tune_app.runs.records import CompareResult

    if state == "done" and (found := CompareResult.read(folder)):
        return list(found.comparisons)
    return []


def _ablations(
    folder: Location, main: Comparison, arms: list[Any], ablated: list[Any]
) -> list[Comparison]:
    """Score the ablate run: each ablated plan against the certify run's winner trials."""
    from tune_app.analysis.certificate import NAMES, WINNER

    names = {WINNER: NAMES[WINNER], **{a.label: a.source for a in ablated}}
    winner = next(a.record() for a in arms if a.label == WINNER)
    pairs = [(WINNER, a.label) for a in ablated]
    return score_and_write(folder, pairs, names, (main.b_scores, [winner]))


def _ablation_arms(winner_plan: Plan, rules: Collection[int]) -> list[Arm]:
    """The winner's plan less one family of modifications at a time (`plan/ablation.py`), an
    arm each ("no-lr-scale"); none where the plan uses no family.

    Args:
        winner_plan: the winner's plan.
        rules: the epochs where a boundary rule of the winner changed its plan.

    Returns:
        The ablated arms, in `families_in`'s order.
    """
    from tune_app.plan.ablation import families_in, without
    from tune_app.tune.compare import Arm

    return [
        Arm(
            f"no-{family.replace(' ', '-')}",
            without(winner_plan, family, rules),
            f"the winner's plan without {family}",
        )
        for family in families_in(winner_plan, rules)
    ]


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
            no node has, or `--seeds` under 2.
        RunFailed: a trial failed (counted against its plan; the certificate is written all
            the same), with the flag that runs it again (`--resume`).
        Interrupted: Ctrl-C, with the flag that resumes it (`--resume`); during the ablations
            the certificate is already written and kept.
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
    from tune_app.plan.plan import Plan
    from tune_app.runs.records import CERTIFICATE, Certificate
    from tune_app.runs.results import find_best
    from tune_app.tune.compare import Arm
    from tune_app.tune.preflight import check_trial_resources, unrestorable
    from tune_app.tune.resources import check_resources

    check_seed_count(args)
    base: Launch = settings(Launch, args)
    check_trial_resources(base)
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
        if state == "started" and not base.resume:
            raise InputError(
                f"RUN {args.run}: its {name} run ({folders[name].uri}) was cut short; pass "
                "--resume to go on with it (finished trials are kept)"
            )
        broken = unrestorable(folders[name]) if state == "started" else None
        if broken is not None:  # Ray's state of it cut short (a full disk): named before Ray
            raise InputError(
                f"RUN {args.run}: its {name} run ({folders[name].uri}) cannot be resumed: Ray "
                f"restores it from {broken[0].uri}, which {broken[1]}; move "
                f"{folders[name].uri} away and run "
                f"`tune-app certify {shlex.quote(run.location.uri)}` again"
            )
    seeds = _seeds(args, states[CERTIFY][1], spec.train.seed, run.location)
    arms = [
        Arm(CONTROL, control_plan, "the control's plan: the plan as written"),
        Arm(WINNER, winner_plan, f"the winner's plan: {label} at epoch {checkpoint.epoch}"),
    ]
    _check_same_arms(folders[CERTIFY], states[CERTIFY][1], arms)
    ablated = (
        _ablation_arms(winner_plan, rule_epochs(run, trial, checkpoint)) if args.ablate else []
    )
    if ablated:
        _check_same_arms(folders[ABLATE], states[ABLATE][1], ablated)
    check_resources(base.address, base.cpus_per_trial, base.gpus_per_trial, base.wait_for_resources)
    base = replace(base, storage=run.location.uri)
    seconds = epoch_seconds(run)  # the search's epochs ran under the same load
    try:
        what = f"the control's and the winner's plan ({label} at epoch {checkpoint.epoch})"
        context = (spec, table, seconds, what)
        failures = _compare(folders[CERTIFY], states[CERTIFY][0], arms, seeds, base, context)
        main = _main_verdict(folders[CERTIFY], states[CERTIFY][0])
    except KeyboardInterrupt:  # Ctrl-C in the certify run or while scoring it: certify --resume
        raise Interrupted({"--resume": None}) from None
    earlier = _earlier_ablations(folders[ABLATE], states[ABLATE][0])
    certificate = replace(certificate, comparison=main, ablations=tuple(earlier))
    out.write_bytes(certificate.to_json())  # before any ablation: a crash there keeps it
    print("\n".join(comparison_lines(main)))
    print()
    print("\n".join(certificate_lines(certificate)))
    print(f"certificate written: {out.uri}")
    if ablated and not earlier:
        labels = ", ".join(a.label for a in ablated)
        try:
            context = (spec, table, seconds, f"the winner's plan less one family each ({labels})")
            failures += _compare(folders[ABLATE], states[ABLATE][0], ablated, seeds, base, context)
            ablations = _ablations(folders[ABLATE], main, arms, ablated)
        except KeyboardInterrupt:  # the certificate is kept; --resume goes on with the ablations
            raise Interrupted(
                {"--resume": None},
                note=f"the certificate is written ({out.uri}); the ablations were cut short",
            ) from None
        certificate = replace(certificate, ablations=tuple(ablations))
        out.write_bytes(certificate.to_json())
        print()
    elif args.ablate and not ablated:
        print("ablate: the winner's plan uses no family of modifications to remove")
    if certificate.ablations:
        print("\n".join(ablation_lines(certificate)))
        print(f"ablations added to the certificate: {out.uri}")
    print(
        f"\n`tune-app best {args.run}` copies the certificate into the export, "
        f"`tune-app report {args.run}` opens with it"
    )
    if failures:
        print("\n".join(failures), file=sys.stderr)
        raise RunFailed(
            f"{len(failures)} trial(s) failed (each counted against its plan above; Ray's "
            "traceback is in its folder's error.txt); --resume runs them again and keeps the "
            "finished ones",
            {"--resume": None},
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
        default=None,  # typed means not None (`args.given`)
        help="also the winner's plan with one family of modifications removed at a time, each "
        "against the full winner's plan on the same seeds: which one carried the gain",
    )
    from tune_app.cli.runs import add_launch_args

    add_launch_args(
        certify, named=False, resume_help="go on with a certification that was cut short"
    )
    certify.set_defaults(handler=cmd_certify)

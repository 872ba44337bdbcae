"""`tune-app compare A B`: does plan B beat plan A beyond seed noise? (`certify`: cli/certify.py)

A and B are plan YAML files, `tune-app best` exports (their plan.yaml; their model, data and
trainer settings fill the flags left out) or `seed` (the shipped plan, shortened by
`--phase-epochs`). Both are trained from scratch on the same seeds as Ray Tune trials
(tune/compare.py), each scored on the test split at its best-validation checkpoint
(analysis/comparison.py), and compared seed by seed (analysis/certification.py). Every check
runs before Ray starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tune_app.cli.args import add_field, add_run_args, flag, non_negative_int, settings
from tune_app.errors import InputError, Interrupted, RunFailed
from tune_app.tune.options import CompareOptions, Launch

if TYPE_CHECKING:
    from tune_app.plan.plan import Plan
    from tune_app.runs.records import ArmScore, Comparison, ExportConfig, RunManifest
    from tune_app.runs.storage import Location
    from tune_app.training.data import SeriesTable

__all__ = [
    "add_compare_commands",
    "add_seed_args",
    "adopt_recorded",
    "check_plans",
    "check_seed_count",
    "failed_trials",
    "score_and_write",
]

SEED = "seed"  # the word for the shipped plan
MIN_SEEDS = 2  # the fewest seeds a t interval can be computed from
# the flags an export's config.json fixes: flag dest -> (section of ExportConfig, key)
FIXED = {
    "hidden": ("model", "hidden"),
    "layers": ("model", "layers"),
    "dropout": ("model", "dropout"),
    "cell": ("model", "cell"),
    "input_len": ("data", "input_len"),
    "output_len": ("data", "output_len"),
    "stride": ("data", "stride"),
    "batch_size": ("train", "batch_size"),
    "rank_alpha": ("train", "rank_alpha"),
    "rank_max_lag": ("train", "rank_max_lag"),
}


@dataclass(frozen=True)
class PlanSource:
    """A plan as the command line named it: the plan, where it came from in words, and, for
    a `tune-app best` export, its config.json and its epochs' median seconds."""

    plan: Plan
    source: str
    export: ExportConfig | None = None
    seconds: float | None = None


def _a_run_not_a_plan(folder: Path) -> str:
    """What to give instead of a run's folder, by the run's kind."""
    import shlex

    from tune_app.runs.records import RunManifest
    from tune_app.runs.storage import locate

    try:
        manifest: RunManifest | None = RunManifest.read(locate(folder))
    except InputError:
        manifest = None
    kind = manifest.kind if manifest else "unknown"
    quoted = shlex.quote(str(folder))
    best = f"export its best checkpoint with `tune-app best {quoted}` and compare the export"
    if kind == "search":
        return (
            f"a search run, not a plan; certify its winner against its control with "
            f"`tune-app certify {quoted}`, or {best}"
        )
    if kind == "compare" and manifest is not None:
        named = ", ".join(str(a.get("argument") or a["source"]) for a in manifest.arms)
        return f"a compare run, not a plan; compare its plans ({named}) by their files"
    return f"a {kind} run, not a plan; {best}"


def _export(which: str, folder: Path) -> PlanSource:
    import pandas as pd

    from tune_app.plan.plan import Plan
    from tune_app.runs.records import (
        EXPORT_CONFIG,
        EXPORT_PLAN,
        MANIFEST,
        METRICS_FILE,
        ExportConfig,
    )

    if (folder / MANIFEST).is_file():
        raise InputError(f"{which} {folder}: {_a_run_not_a_plan(folder)}")
    if not (folder / EXPORT_CONFIG).is_file() or not (folder / EXPORT_PLAN).is_file():
        raise InputError(
            f"{which} {folder}: not a `tune-app best` export (config.json and plan.yaml needed); "
            "give a plan YAML file, an export folder, or seed"
        )
    try:
        config = ExportConfig.from_dict(json.loads((folder / EXPORT_CONFIG).read_text()))
    except (ValueError, TypeError) as exc:
        raise InputError(f"{which} {folder}: unreadable {EXPORT_CONFIG} ({exc})") from None
    plan = Plan.from_yaml((folder / EXPORT_PLAN).read_bytes(), f"{which} {folder / EXPORT_PLAN}")
    seconds = None
    if (folder / METRICS_FILE).is_file():
        frame = pd.read_parquet(folder / METRICS_FILE)
        if "seconds" in frame and len(frame):
            seconds = float(frame["seconds"].median())
    where = f"export {folder}: trial {config.trial} at epoch {config.epoch} of {config.run}"
    return PlanSource(plan, where, config, seconds)


def resolve_plan(which: str, text: str, phase_epochs: int | None) -> PlanSource:
    """The plan `text` names: `seed`, an export folder, or a plan YAML file; `--phase-epochs`
    shortens the shipped plan and a plan file without modifications (an export's or a
    modified plan's epochs are fixed).

    Args:
        which: "A" or "B", for messages.
        text: the command line's plan argument.
        phase_epochs: `--phase-epochs`, or None.

    Returns:
        The plan, where it came from in words, and the export (with its settings and epoch
        time) when it is one.

    Raises:
        InputError: nothing of the kind at `text`, or a plan that does not load.
    """
    from tune_app.plan.plan import SEED_PLAN, Plan, load_plan, read_plan_dict

    if text in (SEED, SEED_PLAN):
        plan = load_plan(None, (), phase_epochs)
        return PlanSource(plan, f"seed: the shipped {SEED_PLAN} plan, {plan.shape}")
    path = Path(text)
    if path.is_dir():
        return _export(which, path)
    if not path.is_file():
        raise InputError(
            f"{which} {text!r}: no such plan file or export; give a plan YAML file, a "
            "`tune-app best` export folder, or seed (the shipped plan)"
        )
    try:
        raw, source = read_plan_dict(path)
    except InputError as exc:  # one line naming the file: say which plan and what to give
        problem = str(exc).removeprefix(f"{path}: ")
        raise InputError(
            f"{which} {text}: {problem}; give a plan YAML file, a `tune-app best` export "
            "folder, or seed (the shipped plan)"
        ) from None
    plan = Plan.from_dict(raw, source)
    if phase_epochs is not None and not plan.modifications:
        plan = plan.with_phase_epochs(phase_epochs)
    return PlanSource(plan, f"plan file {text}, {plan.shape}")


def adopt_exports(args: argparse.Namespace, sources: dict[str, PlanSource]) -> None:
    """Fill the flags left out with the settings the exports among `sources` trained with
    (model, window lengths, stride, batch size, ranking objective, components, data file).

    Args:
        args: the parsed command line; changed in place.
        sources: "A" and "B"'s plans (`resolve_plan`).

    Raises:
        InputError: two exports with different settings, or a flag given that differs from an
            export's (each named, with the export's value).
    """
    from tune_app.training.data import absolute_data_path

    exports = {which: s.export for which, s in sources.items() if s.export is not None}
    if not exports:
        return
    given: frozenset[str] = getattr(args, "given", frozenset())
    problems = []
    settings: dict[str, tuple[Any, ...]] = {
        dest: tuple(getattr(e, section).get(key) for e in exports.values())
        for dest, (section, key) in FIXED.items()
    }
    settings["components"] = tuple(",".join(e.components) for e in exports.values())
    # a path as runs record it now (absolute), so an older export's relative one compares
    settings["data"] = tuple(absolute_data_path(e.data_path) for e in exports.values())
    for dest, values in settings.items():
        mine = getattr(args, dest, None)
        if dest == "data":
            mine = absolute_data_path(mine)
        if len(set(map(repr, values))) > 1:
            shown = ", ".join(f"{w}'s {v!r}" for w, v in zip(exports, values, strict=True))
            problems.append(f"A and B were trained with different {dest}: {shown}")
        elif dest in given and mine != values[0]:
            problems.append(
                f"{flag(dest)} {getattr(args, dest)} (the export {next(iter(exports))} was "
                f"trained with {values[0]!r}; drop the flag)"
            )
        elif dest not in given:
            setattr(args, dest, values[0])
    if problems:
        raise InputError(
            "compare: both plans train with the same model, data and trainer settings, and "
            + "; ".join(problems)
        )


def _weights_lengths(plan: Plan) -> set[int]:
    lengths = {len(p.component_weights) for p in plan.phases if p.component_weights}
    return lengths | {len(m.component_weights) for m in plan.modifications if m.component_weights}


def check_plans(sources: dict[str, PlanSource], table: SeriesTable, data_given: bool) -> None:
    """Refuse plans that cannot be compared on `table` (before Ray starts): plans for other
    components (an export trained on other columns, component weights of another length), an
    export's data file changed since, or plans of different shapes (phases' lengths).

    Args:
        sources: "A" and "B"'s plans (`resolve_plan`).
        table: the data both train on.
        data_given: `--data` was typed (an export's changed data is then not refused).

    Raises:
        InputError: naming the plan, what is wrong and the fix.
    """
    components = list(table.components)
    for which, source in sources.items():
        export = source.export
        if export is not None and list(export.components) != components:
            raise InputError(
                f"{which} ({source.source}) was trained on components {list(export.components)}; "
                f"the data has {components}: compare it on its own data (--data, --components)"
            )
        if (
            export is not None
            and not data_given
            and export.data_fingerprint
            and not table.matches(export.data_fingerprint)
        ):
            raise InputError(
                f"{which} ({source.source}): its data {export.data_path or 'synthetic'} changed "
                "since it was trained (its fingerprint differs); put the file back, or pass "
                "--data to compare on other data"
            )
        wrong = sorted(n for n in _weights_lengths(source.plan) if n != len(components))
        if wrong:
            raise InputError(
                f"{which} ({source.source}) is a plan for {wrong[0]} components (its component "
                f"weights), the data has {len(components)} ({', '.join(components)}): compare it "
                "on the data it was made for (--data, --components)"
            )
    shapes = {which: source.plan.shape for which, source in sources.items()}
    if len(set(shapes.values())) > 1:
        # the length to shorten to: a plan's whose epochs are fixed (an export, a modified plan)
        fixed = [s.plan for s in sources.values() if s.export is not None or s.plan.modifications]
        lengths = [
            p.epochs for plan in fixed or [s.plan for s in sources.values()] for p in plan.phases
        ]
        shown = "; ".join(f"{w} is {shape}" for w, shape in shapes.items())
        raise InputError(
            f"A and B differ in shape ({shown}): both must train for the same epochs; pass "
            f"--phase-epochs {min(lengths)} (it shortens `seed` and plan files without "
            "modifications) or compare plans of one shape"
        )


def failed_trials(grid: Any) -> list[str]:
    """What the trials that failed said (Ray's traceback stays in the trial folder's error.txt).

    Args:
        grid: Ray Tune's ResultGrid.

    Returns:
        One line per failed trial: its error's last line, at most 300 characters.
    """
    lines = []
    for result in grid:
        try:
            error = result.error
        except Exception as exc:
            error = exc
        if error is not None:
            text = [line for line in str(error).splitlines() if line.strip()]
            lines.append(f"trial failed: {(text[-1] if text else repr(error))[:300]}")
    return lines


def score_and_write(
    location: Location,
    pairs: Sequence[tuple[str, str]],
    names: dict[str, str],
    more: tuple[Sequence[ArmScore], Sequence[dict[str, Any]]] = ((), ()),
) -> list[Comparison]:
    """Score a finished compare run's trials, compare `pairs` and write its comparison.json.

    Args:
        location: the compare run.
        pairs: (A label, B label) to compare.
        names: how the verdicts name the labels.
        more: scores and arm records of another run on the same seeds (a certificate's
            ablation pairs with the certify run's winner).

    Returns:
        The comparisons, as written.
    """
    from tune_app.analysis.comparison import comparisons, score_trials
    from tune_app.runs.records import COMPARISON, CompareResult
    from tune_app.runs.results import open_run

    run = open_run(location.uri)
    scores, naive = score_trials(run)
    found = comparisons(run, pairs, names, [*scores, *more[0]], naive, more[1])
    location.join(COMPARISON).write_bytes(CompareResult(tuple(found), time.time()).to_json())
    return found


def _check_resumed_arms(manifest: Any, sources: dict[str, PlanSource]) -> None:
    recorded = {arm["label"]: arm for arm in manifest.arms}
    differ = [
        f"{which} ({source.source}, plan {source.plan.fingerprint}; the run's: "
        f"{recorded[which]['source']}, plan {recorded[which]['fingerprint']})"
        for which, source in sources.items()
        if which in recorded and recorded[which]["fingerprint"] != source.plan.fingerprint
    ]
    if differ:
        raise InputError(
            f"--resume: the compare run {manifest.name!r} goes on with the plans it started "
            f"with, and {'; '.join(differ)} differ; give the same A and B, or start a new run "
            "with another --name"
        )


def _recorded_run(args: argparse.Namespace) -> RunManifest | None:
    """The manifest of the compare run `--resume --name` names, None where there is none (the
    launch's checks then say why: no run there, or a run of another kind)."""
    from tune_app.runs.records import MANIFEST, RunManifest

    launch: Launch = settings(Launch, args)
    if not launch.resume or not launch.name:
        return None
    location = launch.location("compare")
    if not location.join(MANIFEST).exists():
        return None
    manifest = RunManifest.read(location)
    return manifest if manifest.kind == "compare" else None


def adopt_recorded(args: argparse.Namespace, manifest: RunManifest) -> None:
    """Fill the flags left out of a `--resume` that shape the plans and the data before the
    launch: the compare run's phase length (which `seed` and plan files are shortened to), its
    data file, components and window, so A and B resolve to the plans it trains and the plans
    are checked against its own data (which `resume_run` then reads once). The flags given are
    left as they are: `resume_run` refuses those that differ, and goes on with the run's own
    model and trainer settings.

    Args:
        args: the parsed command line; changed in place.
        manifest: the compare run's record (`tune_app_run.json`).
    """
    from tune_app.training.configs import DataConfig

    given: frozenset[str] = getattr(args, "given", frozenset())
    spec = manifest.spec
    lengths = {int(p["epochs"]) for arm in manifest.arms for p in arm["plan"]["phases"]}
    if "phase_epochs" not in given and len(lengths) == 1:
        args.phase_epochs = lengths.pop()
    if "data" not in given:
        args.data = spec.get("data_path")
    recorded = spec.get("data") or {}
    if not {"components", "component"} & given:
        components = recorded.get("components")
        args.components, args.component = None, list(components) if components else None
    for key in (f.name for f in fields(DataConfig) if f.name != "components"):
        if key not in given and hasattr(args, key) and recorded.get(key) is not None:
            setattr(args, key, recorded[key])


def cmd_compare(args: argparse.Namespace) -> int:
    """`tune-app compare A B`: plans A and B trained from scratch on paired seeds as Ray Tune
    trials, each scored on the test split; prints the cost before, the comparison and its
    verdict after, and writes `comparison.json` in the run.

    Args:
        args: the parsed command line (its `given`: the flags typed, for `--resume`).

    Returns:
        0 with the comparison written.

    Raises:
        InputError: a plan, export, flag or data that cannot be compared, or `--seeds` under 2
            (before Ray starts).
        RunFailed: a trial failed (counted against its plan; `--resume` retries it), or no
            trial of either plan has a score.
        Interrupted: Ctrl-C anywhere in the run or its scoring, with this run's own
            `--resume --name --storage` (a note instead where nothing was saved yet).
    """
    from tune_app.analysis.certification import comparison_lines
    from tune_app.cli.cost import Cost, cost_line, epoch_seconds, remaining
    from tune_app.cli.runs import prepare_run
    from tune_app.runs.records import MANIFEST
    from tune_app.tune.compare import Arm, run_compare

    check_seed_count(args)
    recorded = _recorded_run(args)
    if recorded is not None:  # --resume: the run's own settings, unless given (then checked)
        adopt_recorded(args, recorded)
    sources = {
        "A": resolve_plan("A", args.a, args.phase_epochs),
        "B": resolve_plan("B", args.b, args.phase_epochs),
    }
    data_given = "data" in getattr(args, "given", frozenset())
    adopt_exports(args, sources)
    run = prepare_run(
        args, "compare", check=lambda run: check_plans(sources, run.table, data_given)
    )
    resumed, spec, table = run.resumed, run.spec, run.table
    if resumed is not None:
        _check_resumed_arms(resumed.manifest, sources)
    given = {"A": args.a, "B": args.b}
    arms = [Arm(which, s.plan, s.source, given[which]) for which, s in sources.items()]
    seeds: list[int] = run.options.seed_list  # a resumed run's own (`resume_run`)
    launch = replace(run.launch, name=run.launch.run_name("compare"))  # named now: Ctrl-C's advice
    location = launch.location("compare")
    epochs = spec.plan.total_epochs
    left, left_epochs, ended = remaining(location, [a.label for a in arms], seeds, epochs)
    seconds = next((s.seconds for s in sources.values() if s.seconds), None)
    if resumed is not None and seconds is None:
        from tune_app.runs.results import open_run

        seconds = epoch_seconds(open_run(location.uri))  # the run's own epochs so far
    cost = Cost(left, left_epochs, epochs, len(arms) * len(seeds), ended, seconds)

    def announce(slots: int, ray_start: float) -> None:
        print(f"compare: 2 plans x {len(seeds)} seeds: {cost_line(cost, slots, ray_start)}")

    flags: dict[str, str | None] = {
        "--resume": None,
        "--name": location.name,
        "--storage": launch.storage,
    }
    try:
        grid, location = run_compare(spec, table, arms, seeds, launch, announce)
        failures = failed_trials(grid)
        (comparison,) = score_and_write(location, [("A", "B")], {"A": "A", "B": "B"})
    except KeyboardInterrupt:  # anywhere in the run or its scoring: this run's own --resume
        if location.join(MANIFEST).exists():
            raise Interrupted(flags) from None
        raise Interrupted(note="nothing was saved yet; run the command again") from None
    print("\n".join(comparison_lines(comparison)))
    print(f"\nrun: {location.uri} (comparison.json)")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        raise RunFailed(
            f"{len(failures)} trial(s) failed (each counted against its plan above; Ray's "
            f"traceback is in its folder's error.txt); --resume runs them again and keeps the "
            f"finished ones: the run is {location.uri}",
            flags,
        )
    if comparison.mean.verdict == "no result":
        raise RunFailed(
            "no trial of either plan has a score: every one diverged or failed; lower the plans' "
            "learning rate (or gradient clip) and compare again"
        )
    return 0


def check_seed_count(args: argparse.Namespace) -> None:
    """Refuse `--seeds` under 2 before any work: an interval over seeds needs two.

    Args:
        args: the parsed command line (`--seeds`, None when not given: the default).

    Raises:
        InputError: one line, naming the value and the fix.
    """
    seeds = settings(CompareOptions, args).seeds
    if seeds < MIN_SEEDS:
        raise InputError(
            f"--seeds {seeds}: a confidence interval needs at least {MIN_SEEDS} seeds (each "
            f"plan trains once on each); pass --seeds {MIN_SEEDS} or more (default "
            f"{CompareOptions().seeds})"
        )


def add_seed_args(parser: argparse.ArgumentParser) -> None:
    """Add `--seeds` and `--seed-offset` (`CompareOptions`' fields).

    Args:
        parser: the command's parser (compare, certify).
    """
    add_field(
        parser,
        CompareOptions,
        "seeds",
        type=int,
        help=f"paired seeds, >= {MIN_SEEDS}: each plan trains once on each (with 5 seeds "
        "Wilcoxon's p cannot go below 0.0625, the verdict rests on the t interval)",
    )
    add_field(
        parser,
        CompareOptions,
        "seed_offset",
        type=non_negative_int,
        help="the first seed, away from a search's seeds",
    )


def add_compare_commands(commands: Any) -> None:
    """Register `tune-app compare A B` (seeds, the run flags but the plan's, Ray's launch flags).

    Args:
        commands: the parser's subcommands (`add_subparsers`).
    """
    from tune_app.cli.runs import add_launch_args

    compare = commands.add_parser(
        "compare",
        help="train plans A and B from scratch on paired seeds; does B beat A beyond seed noise?",
    )
    compare.add_argument("a", metavar="A", help="plan YAML, `tune-app best` export, or seed")
    compare.add_argument("b", metavar="B", help="plan YAML, `tune-app best` export, or seed")
    add_seed_args(compare)
    add_run_args(compare, plans_given=True)
    add_launch_args(compare)
    compare.set_defaults(handler=cmd_compare)

"""`--resume` of baseline, search, capacity and compare: a run goes on with its own settings.

Ray restores a run's trials, scheduler and run config from its storage; flags that describe the
run (plan, data, model, trainer, search settings) would be ignored without a word. So a flag given
on the command line whose value differs from what the run recorded in `tune_app_run.json` is
refused (exit 2) before Ray starts, and the trials go on with the run's own data, never the
command line's default. Flags left out never count: only the ones typed are compared
(`args.given`: the flags not None). Which flags describe the run comes from the dataclasses: the
fields of ModelConfig, DataConfig and TrainConfig, and the fields each command's options and
`Launch` make with `options.kept` (what the manifest records). Where and with what resources the
run goes on (--storage, --address, --cpus-per-trial, ...) may change.

`resume_run` is the one function that decides: given the run's record and the flags typed, it
returns what the run goes on with (its spec, data, search space and settings) or refuses.

A search or capacity run also goes on with the search space it started with, whatever its file
says now: Ray restores the scheduler (PBT) or searcher (Optuna) pickled in the run's `tuner.pkl`
when it first started, and with it the space. So the space file that would be loaded (the
`--space` given, else the run's own file, else the package's, which an upgrade may change) is
compared with the space the manifest recorded, and a change is refused, each parameter named.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from tune_app import __version__
from tune_app.cli.commands import resume_command, train_resume_command
from tune_app.errors import InputError
from tune_app.plan.plan import Plan, apply_overrides, read_plan_dict
from tune_app.plan.search_space import SearchSpace, load_space, space_changes
from tune_app.runs.lock import running_owner
from tune_app.runs.records import MANIFEST, RunManifest, scan_checkpoints
from tune_app.runs.spec import RunSpec, load_model_config
from tune_app.runs.storage import Location
from tune_app.training.configs import DataConfig, ModelConfig, TrainConfig
from tune_app.training.data import SeriesTable, absolute_data_path, open_series
from tune_app.tune.options import OPTIONS, Launch, from_record, kept_settings
from tune_app.tune.preflight import unrestorable

__all__ = ["SPACES", "Resumed", "checkpoint_conflicts", "plan_conflicts", "resume_run"]

# the spec's sections that flags set, by field (`components` is the data's, named by two flags)
_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
# the command's search space: the package's default file and the space's kind
SPACES = {"search": ("modifications.yaml", "pbt"), "capacity": ("capacity.yaml", "capacity")}


Conflict = tuple[str, Any]  # (the flag as given, the run's own value)


@dataclass(frozen=True)
class Resumed:
    """The run to resume: its manifest, its own spec, its own data, (a search or capacity
    run that recorded it) its own search space, and its command's own settings (None for a
    baseline), as recorded."""

    manifest: RunManifest
    spec: RunSpec
    table: SeriesTable
    space: SearchSpace | None = None
    options: Any = None


def _flag(dest: str) -> str:
    return "--set" if dest == "overrides" else "--" + dest.replace("_", "-")


def _plain(value: Any) -> Any:
    """`value` as JSON gives it back (tuples as lists), to compare with what a run recorded."""
    return json.loads(json.dumps(value, default=float))


def _value_at(raw: Any, path: str) -> Any:
    """The value at a `--set` path (phases numbered from 1) in a raw plan, or None."""
    node = raw
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and 1 <= int(part) <= len(node):
            node = node[int(part) - 1]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def plan_conflicts(given: Mapping[str, Any], recorded: dict[str, Any]) -> list[Conflict]:
    """The plan flags given (`--plan`, `--set`, `--phase-epochs`) that a run's or a
    checkpoint's own plan contradicts.

    Args:
        given: the flags typed, by dest, with their values (`args.given`); flags left out
            never count.
        recorded: the plan the run or checkpoint recorded (`Plan.to_dict()`).

    Returns:
        (the flag as given, what the recorded plan has) for each flag that differs; a
        `--phase-epochs` or `--plan` equal to the recorded plan (a shortened one included)
        does not.

    Raises:
        InputError: the `--plan` file cannot be read.
    """
    out: list[Conflict] = []
    phase_epochs, overrides = given.get("phase_epochs"), list(given.get("overrides") or [])
    if "phase_epochs" in given:
        lengths = {phase.get("epochs") for phase in recorded.get("phases") or []}
        if lengths != {phase_epochs}:
            out.append((f"--phase-epochs {phase_epochs}", Plan.from_dict(recorded).shape))
    if "plan" in given:
        raw, _ = read_plan_dict(given["plan"])
        plan = Plan.from_dict(apply_overrides(raw, overrides), str(given["plan"]))
        lengths = {phase.get("epochs") for phase in recorded.get("phases") or []}
        if "phase_epochs" in given:
            candidates = [plan.with_phase_epochs(int(given["phase_epochs"]))]
        elif len(lengths) == 1 and not plan.modifications:  # the run may have been shortened
            candidates = [plan, plan.with_phase_epochs(int(next(iter(lengths))))]
        else:
            candidates = [plan]
        if not any(_plain(c.to_dict()) == _plain(recorded) for c in candidates):
            named = f"'{recorded.get('name', 'plan')}', {Plan.from_dict(recorded).shape}"
            out.append((f"--plan {given['plan']}", f"another plan ({named})"))
    elif "overrides" in given:
        for item in overrides:
            path = item.partition("=")[0]
            changed = apply_overrides(copy.deepcopy(recorded), [item])
            if _plain(Plan.from_dict(changed).to_dict()) != _plain(recorded):
                out.append((f"--set {item}", f"{path}={_value_at(recorded, path)!r}"))
    return out


def _field_conflicts(
    given: Mapping[str, Any],
    mine: Mapping[str, Mapping[str, Any]],
    recorded: Mapping[str, Any],
    named: tuple[str, ...] | None,
    own: tuple[str, ...] | None,
) -> list[Conflict]:
    """The model, data and trainer flags given (and a --model-config file's values, the
    components named) that differ from what a run or a checkpoint recorded.

    Args:
        given: the flags typed, by dest, with their values.
        mine: the spec the flags describe, by section (`RunSpec.to_dict()`'s model, data and
            train): a flag given is its value there.
        recorded: the spec the run or checkpoint recorded, by section.
        named: the components the flags name, in order.
        own: the components the run or checkpoint trained on (None: not recorded).
    """
    out: list[Conflict] = []
    for section, cls in _SECTIONS.items():
        for key in (f.name for f in fields(cls) if f.name != "components"):
            if key not in given:
                continue
            value, theirs = mine[section][key], (recorded.get(section) or {}).get(key)
            if _plain(value) != _plain(theirs):
                out.append((f"{_flag(key)} {given[key]}", theirs))
    named_given = given.keys() & {"components", "component"}
    if named_given and own is not None and tuple(named or ()) != tuple(own):
        shown = ", ".join(repr(c) for c in named or ())
        out.append((f"--component(s) {shown}", ", ".join(repr(c) for c in own)))
    if "model_config" in given:
        # the values the file sets, unless a flag given sets them (compared on their own)
        model_raw, data_raw = load_model_config(given["model_config"])
        fixed = [("model", k) for k in model_raw if k not in given]
        if "input_len" in data_raw and "input_len" not in given:
            fixed.append(("data", "input_len"))
        differ = [
            f"{key}={(recorded.get(section) or {}).get(key)!r}"
            for section, key in fixed
            if _plain(mine[section].get(key)) != _plain((recorded.get(section) or {}).get(key))
        ]
        if differ:
            out.append((f"--model-config {given['model_config']}", ", ".join(differ)))
    return out


def _spec_conflicts(
    given: Mapping[str, Any], built: RunSpec, manifest: RunManifest
) -> list[Conflict]:
    """The flags given that describe the run (plan, model, data, trainer) and differ from it."""
    recorded = manifest.spec
    mine = built.to_dict()
    if manifest.kind == "search" and not mine["train"]["checkpoint_every"]:
        # a search checkpoints at every round by default
        mine["train"] = {**mine["train"], "checkpoint_every": manifest.perturb_every}
    return [
        *plan_conflicts(given, recorded.get("plan") or {}),
        *_field_conflicts(given, mine, recorded, built.data.components, manifest.components),
    ]


def checkpoint_conflicts(
    given: Mapping[str, Any],
    recorded: Mapping[str, Any],
    named: tuple[str, ...] | None,
    own: tuple[str, ...] | None,
) -> list[Conflict]:
    """The flags given to `train --resume CHECKPOINT` that the checkpoint's own plan, model,
    data or trainer settings contradict: as `resume_run` for a Ray run, a checkpoint goes on
    with what it was trained with.

    Args:
        given: the flags typed, by dest, with their values (`args.given`); flags left out
            never count.
        recorded: the checkpoint's spec by section: `plan`, `model`, `data` and `train` (its
            `model_config`, `data_config` and `train_config`).
        named: the components the flags name, in order (None: none named).
        own: the components the checkpoint trained on (None: not recorded).

    Returns:
        (the flag as given, the checkpoint's value) for each flag that differs.

    Raises:
        InputError: the `--plan` or `--model-config` file cannot be read.
    """
    mine = {section: dict(recorded.get(section) or {}) for section in _SECTIONS}
    if "model_config" in given:  # the file's values, then the flags' (as build_spec does)
        model_raw, data_raw = load_model_config(given["model_config"])
        ModelConfig.from_dict({**mine["model"], **model_raw})  # an unknown key: refused here
        mine["model"].update(model_raw)
        if "input_len" in data_raw:
            mine["data"]["input_len"] = int(data_raw["input_len"])
    for section, cls in _SECTIONS.items():
        for key in (f.name for f in fields(cls) if f.name != "components"):
            if key in given:
                mine[section][key] = given[key]
    return [
        *plan_conflicts(given, recorded.get("plan") or {}),
        *_field_conflicts(given, mine, recorded, named, own),
    ]


def _own_table(
    given: Mapping[str, Any],
    manifest: RunManifest,
    spec: RunSpec,
    built: tuple[RunSpec, SeriesTable],
) -> tuple[SeriesTable | None, Conflict | None]:
    """The run's own data (read as the run read it), and a conflict if --data holds other data.
    The table the flags' spec already read (`built`) is used again where it was read the same
    way (--data given, the same data settings): a large file is not read twice."""
    recorded_path = manifest.spec.get("data_path")
    path = given.get("data", recorded_path)
    built_spec, built_table = built
    try:
        if absolute_data_path(path) == built_spec.data_path and spec.data == built_spec.data:
            table = built_table
        else:
            table = open_series(path, spec.data)
    except InputError as exc:
        if "data" in given:
            raise
        raise InputError(
            f"--resume: the run's data {recorded_path} cannot be read from here ({exc}); "
            "resume from the folder the run started in, or pass --data with the path of the "
            "same file"
        ) from None
    if not manifest.data_fingerprint or table.matches(manifest.data_fingerprint):
        return table, None
    own = recorded_path or "the built-in synthetic data"
    if "data" in given:
        return None, (f"--data {given['data']}", f"{own} (other data: its fingerprint differs)")
    raise InputError(
        f"--resume: the run's data {own} changed since the run started (its fingerprint differs); "
        "put back the file it trained on, or start a new run with another --name"
    )


def _setting_conflicts(
    given: Mapping[str, Any], manifest: RunManifest, options: Any
) -> list[Conflict]:
    """The command's own settings given (--population, --scheduler, ...) that differ from what
    the run goes on with: its recorded ones (an older run's unrecorded ones: what it went on
    with, `options.kept`)."""
    own = kept_settings(*([options] if options is not None else []), from_record(Launch, manifest))
    out: list[Conflict] = [
        (f"{_flag(key)} {given[key]}", "not recorded (an older run)" if theirs is None else theirs)
        for key, theirs in own.items()
        if key in given and _plain(given[key]) != _plain(theirs)
    ]
    if "space" in given and given["space"] != manifest.space:
        out.append((f"--space {given['space']}", manifest.space))
    return out


def _own_space(
    given: Mapping[str, Any], manifest: RunManifest, kind: str
) -> tuple[SearchSpace | None, str | None, list[str]]:
    """The run's own search space (from its manifest), the file that would be loaded now (None:
    the package's), and what that file changes in the run's space (one line a parameter).
    A run that recorded no space (an older one, or a baseline) goes on unchecked, as before."""
    if kind not in SPACES or manifest.space_content is None:
        return None, None, []
    default, space_kind = SPACES[kind]
    own = SearchSpace.from_dict(
        manifest.space_content, f"{manifest.space} (as the run recorded it)", manifest.space_file
    )
    if "space" in given:
        if given["space"] != manifest.space:
            return own, given["space"], []  # another file: named among the flags that differ
        path: str | None = given["space"]
    else:
        path = manifest.space_file
        if path is not None and not Path(path).is_file():
            return own, path, []  # the file is gone: no edit of it can be ignored
    return own, path, space_changes(own, load_space(path, default, space_kind))


def _space_message(
    kind: str, location: Location, manifest: RunManifest, path: str | None, changes: list[str]
) -> str:
    lines = "\n".join(f"  - {line}" for line in changes)
    if path is not None:
        where, fix = f"{path} differs from it now", f"restore {path}"
    else:  # the package's own space: changed by an upgrade, or by an edit of the package
        default = SPACES[kind][0]
        started = manifest.tune_app_version or "an older version"
        where = f"the package's search_spaces/{default} differs from it"
        fix = f"restore tune_app/search_spaces/{default}"
        if started != __version__:
            where += f" (the run started with tune_app {started}, this is {__version__})"
            fix = f"resume it with tune_app {started}"
    return (
        f"--resume: the {kind} run {location.name!r} goes on with the search space it started "
        f"with (recorded in its {MANIFEST}), and {where}; the run's value -> the file's:\n"
        f"{lines}\n{fix}, or start a new run with another --name"
    )


def _last_checkpoint(location: Location) -> tuple[Location, int] | None:
    """The newest whole checkpoint of any trial of the run at `location`, and its epoch."""
    found = [
        (checkpoint, meta.epoch)
        for trial in location.children()
        if trial.is_dir()
        for checkpoint, meta in scan_checkpoints(trial)
    ]
    return max(found, key=lambda item: item[1]) if found else None


def _unrestorable_message(kind: str, location: Location, file: Location, why: str) -> str:
    """Why the run cannot be resumed (Ray's state file `file` `why`), and what goes on: a
    baseline's last good checkpoint in this process, the best checkpoint exported, a new run."""
    head = (
        f"--resume: the {kind} run {location.name!r} cannot be resumed: Ray restores it from "
        f"{file.uri}, which {why}"
    )
    again = "start the run again with another --name"
    last = _last_checkpoint(location) if kind in ("baseline", "search", "capacity") else None
    if last is not None and kind == "baseline" and location.is_local:
        out = location.parent.join(f"{location.name}-train")
        return (
            f"{head}; its last good checkpoint (epoch {last[1]}) goes on in this process, "
            f"without Ray: `{train_resume_command(last[0], out)}`; or {again}"
        )
    if last is not None:
        return (
            f"{head}; `tune-app best {location.uri}` still exports the best checkpoint it "
            f"kept; {again}"
        )
    return f"{head}; {again}"


def resume_run(
    kind: str,
    location: Location,
    given: Mapping[str, Any],
    built: RunSpec,
    built_table: SeriesTable,
) -> Resumed:
    """The run at `location` to resume with `tune-app KIND --resume`: what it keeps, or why not.

    Args:
        kind: "baseline", "search", "capacity" or "compare".
        location: the run's folder (--storage and --name).
        given: the flags typed on the command line, by dest, with their values.
        built: the spec the flags describe (`build_spec`), for the values of the flags given.
        built_table: the data `build_spec` read, used again where the run reads the same.

    Returns:
        The run's manifest, its own spec, its own data, its own search space and its command's
        own settings (`options.from_record`).

    Raises:
        InputError: no run there (or one still starting, named by its process), a run of
            another kind, Ray's state of it that a full disk cut short (named, with what goes
            on from it: tune/preflight.py's `unrestorable`), its data unreadable or changed,
            flags that differ from the run's settings (each named, with the run's value), or a
            search space file that differs from the run's space (each parameter named).
    """
    if not location.join(MANIFEST).exists():
        owner = running_owner(location)
        if owner is not None:  # launched seconds ago: Ray is starting, the manifest comes next
            raise InputError(
                f"--resume: run {location.name} is starting ({owner.describe()}) and still "
                f"going, so there is nothing to resume: wait for it to end, or stop it (Ctrl-C "
                "in its terminal), then --resume"
            )
        raise InputError(
            f"--resume: no run to resume at {location.uri} (no {MANIFEST}); check --name and "
            "--storage (a run stopped before it wrote anything starts again with the same "
            "command without --resume)"
        )
    manifest = RunManifest.read(location)
    if manifest.kind != kind:
        raise InputError(
            f"--name {location.name}: a {manifest.kind} run, not a {kind} run; resume it with "
            f"`{resume_command(manifest, location)}`"
        )
    broken = unrestorable(location)
    if broken is not None:
        raise InputError(_unrestorable_message(kind, location, *broken))
    spec = RunSpec.from_dict(manifest.spec)
    options = from_record(OPTIONS[kind], manifest) if kind in OPTIONS else None
    table, data_conflict = _own_table(given, manifest, spec, (built, built_table))
    # the file the data was read from now, as an absolute path (a run from before paths were
    # recorded so, or a file given with --data at another place): where the run's data is
    read_from = given.get("data", spec.data_path)
    spec = replace(spec, data_path=absolute_data_path(read_from))
    conflicts = [
        *([data_conflict] if data_conflict else []),
        *_spec_conflicts(given, built, manifest),
    ]
    conflicts += _setting_conflicts(given, manifest, options)
    space, space_path, changes = _own_space(given, manifest, kind)
    problems = []
    if conflicts:
        lines = "\n".join(f"  - {flag} (the run's: {theirs})" for flag, theirs in conflicts)
        problems.append(
            f"--resume: the {kind} run {location.name!r} goes on with the settings it started "
            f"with, and {len(conflicts)} flag(s) given differ from them:\n{lines}\n"
            "drop these flags to continue the run, or start a new run with another --name"
        )
    if changes:
        problems.append(_space_message(kind, location, manifest, space_path, changes))
    if problems:
        raise InputError("\n".join(problems))
    assert table is not None
    return Resumed(manifest, spec, table, space, options)

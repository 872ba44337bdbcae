"""Flags and settings (issue 23): every default defined once, in its dataclass; "given" is
"not None" without argparse's private names; what a resumed run keeps and refuses, and the
checks a run makes before Ray starts, are plain functions that need no Ray."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest

from tune_app.cli.main import build_parser, given_flags
from tune_app.errors import InputError
from tune_app.runs.records import RunManifest
from tune_app.training.configs import DataConfig, ModelConfig, TrainConfig
from tune_app.tune.options import (
    OPTIONS,
    CapacityOptions,
    CompareOptions,
    Launch,
    SearchOptions,
    from_record,
    kept_names,
)

PACKAGE = Path(__file__).resolve().parents[1] / "tune_app"
SETTINGS = (
    ModelConfig,
    DataConfig,
    TrainConfig,
    Launch,
    SearchOptions,
    CapacityOptions,
    CompareOptions,
)
FIELDS = {f.name for cls in SETTINGS for f in fields(cls)}
# each command that takes settings flags, with the positionals it needs
COMMANDS = {
    "baseline": [],
    "search": [],
    "capacity": [],
    "compare": ["seed", "seed"],
    "certify": ["RUN"],
    "train": [],
}
RAY_COMMANDS = {"baseline": set(), "search": set(), "capacity": set(), "compare": {"a", "b"}}


def _private_argparse_names() -> set[str]:
    parser = argparse.ArgumentParser()
    objects = [argparse, parser, parser.add_argument_group("g"), parser.add_subparsers()]
    objects.append(parser.add_argument("--x"))
    return {
        name
        for obj in objects
        for name in dir(obj)
        if name.startswith("_") and not name.startswith("__")
    }


def test_no_private_argparse_names_in_tune_app():
    private = _private_argparse_names()
    assert {"_actions", "_SubParsersAction", "_option_string_actions"} <= private
    found = []
    for file in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            names = []
            if isinstance(node, ast.Attribute) and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            ):
                names.append(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
                names += [alias.name for alias in node.names]
            found += [f"{file.name}:{node.lineno}: {n}" for n in names if n in private]
    assert not found, found


def test_the_flags_stop_at_the_command_line():
    """The flags become settings once, in cli/: below it (and in the resume decision) only
    dataclasses and plain mappings travel, never argparse's namespace."""
    importers = sorted(
        str(file.relative_to(PACKAGE))
        for file in PACKAGE.rglob("*.py")
        if "argparse" in file.read_text()
    )
    outside = [m for m in importers if not m.startswith("cli/") and m != "demo.py"]
    assert outside == [] and "cli/resume.py" not in importers, importers


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_settings_flag_defaults_to_none(command: str):
    """One definition per default: a flag that sets a settings field leaves it to the
    dataclass (None when not typed), so no default is written twice."""
    args = vars(build_parser().parse_args([command, *COMMANDS[command]]))
    backed = {dest: value for dest, value in args.items() if dest in FIELDS}
    assert len(backed) >= 6, backed  # the command does take settings flags
    assert {dest: v for dest, v in backed.items() if v is not None} == {}


@pytest.mark.parametrize("command", sorted(RAY_COMMANDS))
def test_a_command_line_with_no_flags_gives_none(command: str):
    assert given_flags([command, *COMMANDS[command]]) == RAY_COMMANDS[command]
    typed = [command, *COMMANDS[command], "--hidden", "8", "--max-fail", "3", "--resume"]
    assert given_flags(typed) == RAY_COMMANDS[command] | {"hidden", "max_failures", "resume"}


@pytest.mark.parametrize(
    ("command", "cls", "name", "flag"),
    [
        ("train", TrainConfig, "batch_size", "--batch-size"),
        ("train", DataConfig, "output_len", "--output-len"),
        ("search", SearchOptions, "population", "--population"),
        ("capacity", Launch, "storage", "--storage"),
        ("compare", CompareOptions, "seed_offset", "--seed-offset"),
    ],
)
def test_help_shows_the_dataclass_default(command, cls, name, flag, monkeypatch, capsys):
    """The help reads the default from the dataclass: change it there and the help follows."""
    field = next(f for f in fields(cls) if f.name == name)
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert f"(default {field.default})" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setattr(field, "default", 7777)
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "(default 7777)" in help_text and flag in help_text


def test_build_spec_takes_the_dataclass_defaults_and_the_flags_given():
    from tune_app.cli.args import build_spec

    args = build_parser().parse_args(["search", "--phase-epochs", "1", "--batch-size", "16"])
    spec, table = build_spec(args)
    assert spec.train == TrainConfig(batch_size=16)
    assert spec.data == DataConfig()
    assert spec.model == ModelConfig(components=len(table.components))


def test_kept_settings_are_what_a_manifest_records():
    recorded = {f.name for f in fields(RunManifest)}
    for cls in (*OPTIONS.values(), Launch):
        assert kept_names(cls) and set(kept_names(cls)) <= recorded, cls
    assert "storage" not in kept_names(Launch)  # where a run goes may change on --resume


def test_an_older_runs_unrecorded_settings_are_what_it_went_on_with():
    older = RunManifest(kind="search", name="old", population=6)
    options = from_record(SearchOptions, older)
    assert (options.population, options.quantile_fraction) == (6, 0.25)
    assert options.selection == "truncation" and options.perturb_every is None


def test_the_parser_loads_without_torch_numpy_or_ray():
    code = (
        "import sys; from tune_app.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'pyarrow', 'ray') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


# -- the checks before Ray starts -----------------------------------------------------------


def _spec(phase_epochs: int = 1, **train: object):  # type: ignore[no-untyped-def]
    from tune_app.plan.plan import load_plan
    from tune_app.runs.spec import RunSpec

    return RunSpec(
        load_plan(phase_epochs=phase_epochs), ModelConfig(), DataConfig(), TrainConfig(**train)
    )


def test_check_search_resolves_the_interval_and_the_checkpoints():
    from tune_app.tune.preflight import check_search

    spec, options = check_search(_spec(2), SearchOptions())
    assert options.perturb_every == 2 and spec.train.checkpoint_every == 2
    spec, options = check_search(_spec(2, checkpoint_every=1), SearchOptions(perturb_every=4))
    assert options.perturb_every == 4 and spec.train.checkpoint_every == 1


@pytest.mark.parametrize(
    ("options", "train", "message"),
    [
        (SearchOptions(quantile_fraction=0.7), {}, "--quantile-fraction: must lie in (0, 0.5]"),
        (SearchOptions(perturb_every=0), {}, "--perturb-every: must be >= 1 epoch"),
        (SearchOptions(perturb_every=10), {}, "--perturb-every 10: no round would run"),
        (SearchOptions(population=1), {}, "--population: must be >= 2"),
        (SearchOptions(selection="best"), {}, "--selection best: use one of"),
        (SearchOptions(perturb_every=3), {"checkpoint_every": 2}, "use a multiple of 2"),
    ],
)
def test_check_search_refuses_bad_settings(options, train, message):
    from tune_app.tune.preflight import check_search

    with pytest.raises(InputError) as info:
        check_search(_spec(2, **train), options)
    assert message in str(info.value)


def test_check_capacity_and_launch():
    from tune_app.tune.preflight import check_capacity, check_launch

    assert check_capacity(_spec(3), CapacityOptions()).grace_epochs == 3
    assert check_capacity(_spec(3), CapacityOptions(grace_epochs=1)).grace_epochs == 1
    with pytest.raises(InputError, match="--trials: must be >= 1"):
        check_capacity(_spec(), CapacityOptions(trials=0))
    with pytest.raises(InputError, match="--resume: also pass --name"):
        check_launch(Launch(resume=True))
    with pytest.raises(InputError, match="--cpus-per-trial must be > 0"):
        check_launch(Launch(cpus_per_trial=0))


# -- what a resumed run keeps and refuses ---------------------------------------------------


@pytest.fixture
def search_run(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A search run's manifest as `run_search` writes it: population 3, rounds every epoch."""
    from tune_app.plan.search_space import load_space
    from tune_app.runs.manifest import space_record, write_manifest
    from tune_app.runs.storage import locate
    from tune_app.tune.options import kept_settings
    from tune_app.tune.preflight import check_search

    spec, options = check_search(_spec(1), SearchOptions(population=3))
    table = spec.open_table()
    settings = {**kept_settings(options, Launch()), **space_record(load_space(None, *SPACE))}
    (tmp_path / "run").mkdir()
    write_manifest(locate(tmp_path / "run"), "search", spec, table, settings)
    return locate(tmp_path / "run"), spec, table


SPACE = ("modifications.yaml", "pbt")


def test_resume_keeps_the_runs_own_settings(search_run):
    from tune_app.cli.resume import resume_run

    location, spec, table = search_run
    resumed = resume_run("search", location, {}, _spec(5), table)  # the flags' spec: 5 epochs
    assert resumed.spec == spec and resumed.options == SearchOptions(population=3, perturb_every=1)
    assert resumed.space is not None
    given = {"population": 3, "storage": "elsewhere", "cpus_per_trial": 0.5, "resume": True}
    assert resume_run("search", location, given, spec, table).options.population == 3


@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ({"population": 5}, "--population 5 (the run's: 3)"),
        ({"max_failures": 0}, "--max-failures 0 (the run's: 2)"),
        ({"scheduler": "pb2"}, "--scheduler pb2 (the run's: pbt)"),
        ({"hidden": 8}, "--hidden 8 (the run's: 64)"),
        ({"batch_size": 8, "stride": 2}, "2 flag(s) given differ"),
        ({"phase_epochs": 2}, "--phase-epochs 2 (the run's: 5 phases of 1 epoch)"),
    ],
)
def test_resume_refuses_flags_that_differ(search_run, given, refused):
    from tune_app.cli.args import field_values
    from tune_app.cli.resume import resume_run

    location, spec, table = search_run
    built = replace(  # the spec the flags describe, as build_spec makes it
        spec,
        model=replace(spec.model, **field_values(ModelConfig, given)),
        data=replace(spec.data, **field_values(DataConfig, given)),
        train=replace(spec.train, **field_values(TrainConfig, given)),
    )
    with pytest.raises(InputError) as info:
        resume_run("search", location, given, built, table)
    assert refused in str(info.value)


def test_resume_of_an_older_run_names_what_it_did_not_record(search_run):
    from tune_app.cli.resume import resume_run

    location, spec, table = search_run
    file = Path(location.path) / "tune_app_run.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "perturb_every": None}))
    with pytest.raises(InputError, match=r"--perturb-every 2 \(the run's: not recorded"):
        resume_run("search", location, {"perturb_every": 2}, spec, table)


def test_the_checks_and_resume_run_without_ray(tmp_path: Path):
    """The pre-Ray checks and the resume decision, in a process that never imports Ray."""
    code = f"""
import sys
from pathlib import Path
from tune_app.cli.resume import resume_run
from tune_app.errors import InputError
from tune_app.plan.plan import load_plan
from tune_app.runs.manifest import write_manifest
from tune_app.runs.spec import RunSpec
from tune_app.runs.storage import locate
from tune_app.training.configs import DataConfig, ModelConfig, TrainConfig
from tune_app.tune.options import Launch, SearchOptions, kept_settings
from tune_app.tune.preflight import check_launch, check_search

spec = RunSpec(load_plan(phase_epochs=1), ModelConfig(), DataConfig(), TrainConfig())
spec, options = check_search(spec, SearchOptions())
check_launch(Launch(name="run", storage={str(tmp_path)!r}))
table = spec.open_table()
Path({str(tmp_path)!r}, "run").mkdir()
location = locate(Path({str(tmp_path)!r}, "run"))
write_manifest(location, "search", spec, table, kept_settings(options, Launch()))
try:
    resume_run("search", location, {{"population": 9}}, spec, table)
except InputError as exc:
    print("refused:", "--population 9 (the run's: 4)" in str(exc))
print("kept:", resume_run("search", location, {{}}, spec, table).options == options)
print("ray:", "ray" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["refused: True", "kept: True", "ray: False"]


def test_the_capacity_export(tmp_path: Path):
    from tune_app.runs.results import export_capacity
    from tune_app.runs.storage import locate

    capacity = {"hidden": 32, "cell": "lstm", "input_len": 24}
    metrics = {"best_val_free_loss": 0.5, "trial_id": "trial-03"}
    out = export_capacity(locate(tmp_path), _spec(), capacity, metrics)
    written = json.loads(Path(out.path).read_text())
    assert written["model"] == {**ModelConfig().to_dict(), "hidden": 32, "cell": "lstm"}
    assert written["data"] == {"input_len": 24}
    assert (written["val_free_loss"], written["trial"]) == (0.5, "trial-03")

"""Bad input, a table of what users hit: exit 2, one message naming the problem and the fix,
no traceback, nothing written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny import TRAIN_FLAGS, export_train_checkpoint

from tune_app.cli import main
from tune_app.plan.plan import load_plan
from tune_app.training.synthetic import make_synthetic


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run, its `best`-style export, a checkpoint whose weights do not fit its
    model config, and a run whose best checkpoint lost its state.pt."""
    root = tmp_path_factory.mktemp("checkpoints")
    make_synthetic(series=2, length=200).to_parquet(root / "good.parquet")
    run = root / "run"
    assert (
        main(["train", "--data", str(root / "good.parquet"), *TRAIN_FLAGS, "--out", str(run)]) == 0
    )
    export_train_checkpoint(run, run / "checkpoints" / "epoch_00003", root / "export")
    state = torch.load(run / "checkpoints" / "epoch_00003" / "state.pt", weights_only=True)
    state["model_config"]["hidden"] = 64  # says hidden 64, holds hidden-16 weights
    torch.save(state, root / "mismatch.pt")
    broken = root / "broken_run" / "trial_0" / "checkpoint_000000"
    broken.mkdir(parents=True)
    shutil.copy(run / "checkpoints" / "epoch_00003" / "meta.json", broken / "meta.json")
    (root / "broken_run" / "trial_0" / "params.json").write_text("{}")
    (root / "broken_run" / "tune_app_run.json").write_text(json.dumps({"kind": "baseline"}))
    for name in ("modifications.yaml", "capacity.yaml"):  # a user's copies, to edit later
        shutil.copy(SPACES / name, root / f"my_{name}")
    _edit_space(
        root / "my_modifications.yaml", "teacher_forcing_shift", high=0.1
    )  # not the package's
    with contextlib.chdir(root):  # runs to resume, recorded as `search` and `baseline` do
        _record_run("search", "pbt-run", ["--phase-epochs", "1", "--population", "3"])
        _record_run("baseline", "base-run", ["--data", "good.parquet", "--phase-epochs", "1"])
        _record_run("search", "m2-run", ["--phase-epochs", "1", "--space", "my_modifications.yaml"])
        _record_run("capacity", "cap-run", ["--phase-epochs", "1", "--space", "my_capacity.yaml"])
    return root


def _edit_space(path: Path, param: str, **keys: object) -> None:
    """Edit one parameter of a space file, as a user would."""
    raw = yaml.safe_load(path.read_text())
    raw["params"][param].update(keys)
    path.write_text(yaml.safe_dump(raw))


def _record_run(kind: str, name: str, argv: list[str]) -> None:
    """A run's manifest (`tune_app_run.json`) as `tune-app KIND ARGV --hidden 16 --name NAME`
    writes it before Ray starts (a search with rounds every epoch)."""
    from tune_app.cli.args import build_spec
    from tune_app.cli.main import build_parser
    from tune_app.plan.search_space import load_space
    from tune_app.runs.storage import locate
    from tune_app.tune.runner import space_record, write_manifest

    args = build_parser().parse_args([kind, *argv, "--hidden", "16"])
    spec, table = build_spec(args)
    extra: dict = {"max_failures": 2}
    if kind == "search":  # a search checkpoints at every round
        spec = replace(spec, train=replace(spec.train, checkpoint_every=1))
        extra |= {
            "population": args.population,
            "perturb_every": 1,
            "scheduler": args.scheduler,
            "selection": args.selection,
            "quantile_fraction": args.quantile_fraction,
            **space_record(load_space(args.space, "modifications.yaml", "pbt")),
        }
    if kind == "capacity":
        extra |= {
            "trials": args.trials,
            "grace_epochs": 1,
            "max_concurrent": args.max_concurrent,
            **space_record(load_space(args.space, "capacity.yaml", "capacity")),
        }
    Path("results", name).mkdir(parents=True)
    write_manifest(locate(str(Path("results", name))), kind, spec, table, extra)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoints: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("export", "broken_run", "results"):
        shutil.copytree(checkpoints / name, tmp_path / name)
    for name in ("my_modifications.yaml", "my_capacity.yaml"):
        shutil.copy(checkpoints / name, tmp_path / name)
    shutil.copy(checkpoints / "mismatch.pt", tmp_path / "mismatch.pt")
    seed = load_plan().to_dict()
    seed["phases"][0]["teacher_forcing"] = {"linear": {"start": 1.2, "end": -0.1}}
    (tmp_path / "tf_both.yaml").write_text(yaml.safe_dump(seed))
    gapped = make_synthetic(series=2, length=200)
    gapped = gapped[~((gapped.series_id == "s00") & gapped.step.between(100, 139))]
    gapped.to_parquet(tmp_path / "gap.parquet")
    gapped.to_csv(tmp_path / "gap.csv", index=False)
    seed = load_plan().to_dict()
    seed["phases"][1]["alpha"] = 1.7
    (tmp_path / "bad_alpha.yaml").write_text(yaml.safe_dump(seed))
    seed = load_plan().to_dict()
    (tmp_path / "one_phase.yaml").write_text(yaml.safe_dump({**seed, "phases": seed["phases"][:1]}))
    (tmp_path / "broken.yaml").write_text("phases:\n  - epochs: 10\n    lr: [unclosed\n")
    (tmp_path / "unknown_key.yaml").write_text(
        yaml.safe_dump({**load_plan().to_dict(), "optimiser": "sgd"})
    )
    (tmp_path / "space.yaml").write_text(
        yaml.safe_dump(
            {"kind": "pbt", "params": {"alpha_shift": {"type": "float", "low": 1, "high": 0}}}
        )
    )
    (tmp_path / "hidden_space.yaml").write_text(
        yaml.safe_dump(
            # exactly as a user wrote it: no `kind` (the command's is assumed)
            {"params": {"hidden": {"type": "int", "low": 16, "high": 128, "mutate": "resample"}}}
        )
    )
    (tmp_path / "typo_space.yaml").write_text(
        yaml.safe_dump(
            {"kind": "pbt", "params": {"alpha_shfit": {"type": "float", "low": 0, "high": 1}}}
        )
    )
    (tmp_path / "weight_space.yaml").write_text(
        yaml.safe_dump(
            {
                "params": {
                    "component_weight": {
                        "type": "float",
                        "low": -0.5,
                        "high": 2.0,
                        "per_component": True,
                    }
                }
            }
        )
    )
    (tmp_path / "lr_space.yaml").write_text(
        yaml.safe_dump({"params": {"lr_scale": {"type": "float", "low": 0, "high": 2}}})
    )
    (tmp_path / "bool_space.yaml").write_text(
        yaml.safe_dump({"params": {"lr_restart": {"type": "bool", "low": 0, "high": 1}}})
    )
    frame = make_synthetic(series=2, length=200)
    frame.loc[50, "c1"] = np.nan
    frame.to_parquet(tmp_path / "nan.parquet")
    make_synthetic(series=2, length=200).drop(columns=["series_id"]).to_parquet(
        tmp_path / "no_id.parquet"
    )
    make_synthetic(series=2, length=200).to_parquet(tmp_path / "good.parquet")
    make_synthetic(series=2, length=300).to_parquet(tmp_path / "other.parquet")
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "empty.csv").write_text("series_id,step,c0\n")
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "state.pt").write_bytes(b"\x80\x02garbage")
    (tmp_path / "hello.pth").write_text("hello\n")  # not a torch file at all
    (tmp_path / "ckpt_dir").mkdir()
    (tmp_path / "ckpt_dir" / "state.pt").write_bytes(b"\x80\x02garbage")
    return tmp_path


SPACES = Path(__file__).resolve().parents[1] / "tune_app" / "search_spaces"
CONTINUE = ["continue", "--epochs", "5", "--start_lr", "1e-4", "--min_lr", "1e-5"]
GAP = "series 's00' misses 40 step(s) from step 100"
MISFIT = "weights do not fit the checkpoint's model config"

CASES = [
    (["plan", "validate", "bad_alpha.yaml"], "phases.2.alpha", "[0, 1]"),
    (  # every bad value of a schedule, not the first only
        ["plan", "validate", "tf_both.yaml"],
        "phases.1.teacher_forcing.linear.start: out of range (got 1.2)",
        "phases.1.teacher_forcing.linear.end: out of range (got -0.1)",
    ),
    (["plan", "validate", "broken.yaml"], "not valid YAML", "broken.yaml"),
    (["plan", "validate", "unknown_key.yaml"], "optimiser: unknown key", "a plan takes"),
    (["plan", "show", "--set", "phases.7.alpha=0.5"], "phases.7", "numbered from 1"),
    (["plan", "show", "--epochs", "0,501"], "--epochs", "1..500"),
    (["train", "--plan", "missing.yaml"], "--plan missing.yaml", "omit --plan"),
    (["train", "--data", "nan.parquet", "--phase-epochs", "1"], "NaN/inf", "--fill ffill"),
    (["train", "--data", "no_id.parquet"], "missing column", "series_id"),
    (["train", "--data", "notes.txt"], "not a parquet or CSV", ".parquet or .csv"),
    # fresh-s4: a folder said "no such file"; a file as --storage exited 1 after Ray started
    (["train", "--data", "not_a_run"], "a folder, not a file", "one .parquet or .csv file"),
    (
        ["baseline", "--storage", "notes.txt", "--phase-epochs", "1"],
        "a file, not a folder",
        "name a folder",
    ),
    (["train", "--data", "empty.csv"], "no rows", "empty.csv"),
    (
        ["train", "--data", "good.parquet", "--components", "c0,speed"],
        "no component column 'speed'",
        "'c0', 'c1', 'c2'",
    ),
    (["train", "--data", "good.parquet", "--input-len", "500"], "too short", "--input-len"),
    (
        ["train", "--resume", "corrupt", "--phase-epochs", "1"],
        "corrupt or truncated",
        "earlier checkpoint",
    ),
    (["search", "--population", "0", "--phase-epochs", "1"], "--population", ">= 2"),
    (
        ["search", "--space", "space.yaml", "--phase-epochs", "1"],
        "params.alpha_shift",
        "low < high",
    ),
    (
        ["search", "--space", "hidden_space.yaml", "--phase-epochs", "1"],
        "params.hidden: PBT cannot change 'hidden'",
        "search it with `tune-app capacity`",
    ),
    (
        ["search", "--space", "typo_space.yaml", "--phase-epochs", "1"],
        "unknown PBT parameter 'alpha_shfit'",
        "PBT can change: alpha_shift, teacher_forcing_shift",
    ),
    (  # a weight <= 0 would drop or reward a component in the training loss
        ["search", "--space", "weight_space.yaml", "--phase-epochs", "1"],
        "weight_space.yaml: 1 problem:\n  - params.component_weight.low: out of range (got -0.5)",
        "component_weight must be > 0",
    ),
    (  # a learning rate x 0 is no learning rate: refused before Ray starts
        ["search", "--space", "lr_space.yaml", "--phase-epochs", "1"],
        "lr_space.yaml: 1 problem:\n  - params.lr_scale.low: out of range (got 0.0)",
        "lr_scale must be in [0.001, 100]: it multiplies the plan's learning rate",
    ),
    (
        ["search", "--space", "bool_space.yaml", "--phase-epochs", "1"],
        "params.lr_restart.low: a bool has no bounds (got 0)",
        "a bool takes only type, per_component",
    ),
    # no round would run before the plan's end: refused, with a --perturb-every that works
    (
        ["search", "--perturb-every", "5", "--phase-epochs", "1"],
        "--perturb-every 5: no round would run: the plan is 5 epochs long (5 phases of 1 epoch)",
        "use e.g. --perturb-every 1",
    ),
    (
        ["search", "--perturb-every", "12", "--phase-epochs", "2"],
        "the plan is 10 epochs long",
        "use e.g. --perturb-every 2",
    ),
    (  # one phase, rounds at phase boundaries by default: none inside the plan
        ["search", "--plan", "one_phase.yaml", "--phase-epochs", "4"],
        "no round would run: rounds default to every phase (4 epochs): the plan is 4 epochs long",
        "use e.g. --perturb-every 2",
    ),
    (
        ["search", "--plan", "one_phase.yaml", "--phase-epochs", "1"],
        "the plan is 1 epoch long (1 phase of 1 epoch)",
        "lengthen the plan (e.g. --phase-epochs 2)",
    ),
    # --resume goes on with the run's own settings: a flag given that differs is refused
    (
        ["search", "--name", "pbt-run", "--resume", "--scheduler", "pb2"],
        "--scheduler pb2 (the run's: pbt)",
        "drop these flags to continue the run, or start a new run with another --name",
    ),
    (  # every flag that differs is named, with the run's value
        ["search", "--name", "pbt-run", "--resume", "--population", "8", "--hidden", "32"],
        "2 flag(s) given differ from them:\n  - --hidden 32 (the run's: 16)\n"
        "  - --population 8 (the run's: 3)",
        "start a new run with another --name",
    ),
    (  # Ray resumes with the scheduler the run started with, and so with its selection rule
        ["search", "--name", "pbt-run", "--resume", "--selection", "improvement"],
        "--selection improvement (the run's: truncation)",
        "drop these flags to continue the run, or start a new run with another --name",
    ),
    (
        ["search", "--name", "pbt-run", "--resume", "--phase-epochs", "2"],
        "--phase-epochs 2 (the run's: 5 phases of 1 epoch)",
        "drop these flags",
    ),
    (
        ["search", "--name", "pbt-run", "--resume", "--set", "phases.2.alpha=0.5"],
        "--set phases.2.alpha=0.5 (the run's: phases.2.alpha=0.75)",
        "drop these flags",
    ),
    (
        ["baseline", "--name", "base-run", "--resume", "--hidden", "64"],
        "--hidden 64 (the run's: 16)",
        "drop these flags",
    ),
    (
        ["baseline", "--name", "base-run", "--resume", "--data", "other.parquet"],
        # the run recorded its file's absolute path, and names it so
        "/good.parquet (other data: its fingerprint differs)",
        "  - --data other.parquet (the run's: /",
    ),
    (
        ["baseline", "--name", "base-run", "--resume", "--plan", "one_phase.yaml"],
        "--plan one_phase.yaml (the run's: another plan ('seed_500', 5 phases of 1 epoch))",
        "drop these flags",
    ),
    (
        ["baseline", "--name", "pbt-run", "--resume"],
        "--name pbt-run: a search run, not a baseline run",
        "tune-app search --resume --name pbt-run",
    ),
    (["search", "--name", "gone", "--resume"], "no run to resume at", "check --name and --storage"),
    # fresh-s4: after a Ctrl-C that left no folder, what to run instead
    (["baseline", "--name", "gone", "--resume"], "no run to resume at", "without --resume)"),
    (
        ["baseline", "--address", "127.0.0.1:9", "--phase-epochs", "1"],
        "no Ray cluster answers",
        "ray start --head",
    ),
    (["baseline", "--storage", "ftp2://x/y", "--phase-epochs", "1"], "not a storage URI", "s3://"),
    (["best", "not_a_run"], "not a tune_app run", "tune_app_run.json"),
    (["best", "ckpt_dir"], "a checkpoint, not a run", "tune-app evaluate"),
    ([*CONTINUE, "--model_path", "hello.pth", "--output_dir", "o"], "not a torch", "checkpoint"),
    (["best", "nowhere"], "no such run directory", "by default results/NAME"),
    (["evaluate", "not_a_run"], "not a `tune-app best` export", "checkpoint directory"),
    (
        [
            "continue",
            "--model_path",
            "corrupt",
            "--epochs",
            "5",
            "--start_lr",
            "1e-4",
            "--min_lr",
            "1e-5",
            "--output_dir",
            "out",
        ],
        "corrupt",
        "checkpoint",
    ),
    (  # the lr would rise: refused as a mistake, not run
        [
            "continue",
            "--model_path",
            "export",
            "--epochs",
            "5",
            "--start_lr",
            "1e-5",
            "--min_lr",
            "1e-3",
            "--output_dir",
            "out",
        ],
        "--min_lr 0.001 is above --start_lr 1e-05",
        "pass --min_lr <= --start_lr",
    ),
    # gaps in `step`: every training and evaluation command, before Ray starts
    (["train", "--data", "gap.parquet", "--phase-epochs", "1"], GAP, "--fill ffill"),
    (["train", "--data", "gap.csv", "--phase-epochs", "1"], GAP, "--fill ffill"),
    (["baseline", "--data", "gap.parquet", "--phase-epochs", "1"], GAP, "--fill ffill"),
    (["search", "--data", "gap.parquet", "--phase-epochs", "1"], GAP, "--fill ffill"),
    (["capacity", "--data", "gap.parquet", "--phase-epochs", "1"], GAP, "--fill ffill"),
    (["evaluate", "export", "--data", "gap.parquet"], GAP, "data inspect"),
    (
        ["generate", "export", "--data", "gap.parquet", "--series", "s00", "--out", "g.parquet"],
        GAP,
        "data inspect",
    ),
    (
        [*CONTINUE, "--model_path", "export", "--output_dir", "out", "--data", "gap.parquet"],
        GAP,
        "--fill ffill",
    ),
    # weights that do not fit their own model config, in every command that takes a checkpoint
    ([*CONTINUE, "--model_path", "mismatch.pt", "--output_dir", "out"], MISFIT, "hidden': 64"),
    (
        ["train", "--resume", "mismatch.pt", "--hidden", "64", "--phase-epochs", "1"],
        MISFIT,
        "another checkpoint",
    ),
    (["evaluate", "mismatch.pt"], MISFIT, "hidden': 64"),
    # resources no node has: refused before Ray starts, nothing written
    (
        ["baseline", "--cpus-per-trial", "10000", "--phase-epochs", "1"],
        "--cpus-per-trial 10000 but this machine has",
        "--address",
    ),
    (
        ["search", "--gpus-per-trial", "64", "--phase-epochs", "1"],
        "--gpus-per-trial 64 but this machine has",
        "--address",
    ),
    (
        ["capacity", "--cpus-per-trial", "10000", "--phase-epochs", "1"],
        "this machine has",
        "--cpus-per-trial",
    ),
    (["best", "broken_run"], "has no state.pt", "run `tune-app best` again"),
    # a run's name is one folder under --storage (fresh-s4: `a/b` split the run in two folders,
    # `../x` left the storage)
    *[
        ([*kind, "--name", name, "--phase-epochs", "1"], f"--name {name!r}", "--storage")
        for kind, name in [
            (["baseline"], "a/b"),
            (["search"], "../escape"),
            (["capacity"], ".."),
            (["baseline"], "."),
            (["baseline"], ""),
            (["compare", "seed", "seed"], "a\\b"),
        ]
    ],
]


@pytest.mark.parametrize(("argv", "problem", "fix"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_exits_2_with_one_clear_message(argv, problem, fix, workdir: Path, capsys):
    before = _files(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err and fix in err, err
    assert "Traceback" not in err
    assert err.count("tune-app: error:") == 1
    assert _files(workdir) == before, "bad input must not write anything"


class Reached(Exception):
    """Raised in place of starting Ray: the run function and what it was given."""


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["search", "--name", "pbt-run", "--resume"], "search"),
        (  # the flags the run started with, as the resume hint after Ctrl-C repeats them
            [
                *("search", "--phase-epochs", "1", "--pop", "3", "--hidden", "16"),
                *("--name", "pbt-run", "--scheduler", "pbt", "--perturb-every", "1"),
                *("--checkpoint-every", "0", "--quantile-fraction", "0.25", "--resume"),
                *("--selection", "truncation"),
            ],
            "search",
        ),
        (["baseline", "--name", "base-run", "--resume"], "baseline"),
        (
            [
                *("baseline", "--name", "base-run", "--resume", "--data", "good.parquet"),
                *("--plan", "seed_500", "--cpus-per-trial", "0.5", "--max-failures", "2"),
            ],
            "baseline",
        ),
    ],
)
def test_resume_goes_on_with_the_runs_own_settings(argv, kind, workdir: Path, monkeypatch):
    """Flags left out never count as conflicts (argparse's defaults are not the user's), and the
    run's own plan, model, search settings and data reach the runner, not the defaults."""
    from tune_app.training.data import open_series
    from tune_app.tune import runner

    def reached(*given):  # type: ignore[no-untyped-def]
        raise Reached(*given)

    monkeypatch.setattr(runner, f"run_{kind}", reached)
    with pytest.raises(Reached) as info:
        main(argv)
    spec, table, *rest = info.value.args
    assert spec.model.hidden == 16 and spec.plan.total_epochs == 5  # not 64 and 500
    if kind == "search":
        options = rest[1]
        assert (options.population, options.perturb_every, options.scheduler) == (3, 1, "pbt")
    else:  # its own data file, not the built-in synthetic data
        path = Path(spec.data_path)  # the file the run recorded, as an absolute path
        assert path.is_absolute() and path.name == "good.parquet", path
        assert table.fingerprint == open_series("good.parquet").fingerprint


def test_resume_reads_the_data_given_once(workdir: Path, monkeypatch):
    """--data given on --resume, read the way the run read it: the table the flags' spec read
    is the run's own (a large file is not read twice)."""
    from tune_app.cli import resume
    from tune_app.tune import runner

    def reached(*given):  # type: ignore[no-untyped-def]
        raise Reached(*given)

    def read_again(*_):  # type: ignore[no-untyped-def]
        raise AssertionError("the data was read a second time")

    monkeypatch.setattr(runner, "run_baseline", reached)
    monkeypatch.setattr(resume, "open_series", read_again)
    with pytest.raises(Reached) as info:
        main(["baseline", "--name", "base-run", "--resume", "--data", "good.parquet"])
    assert info.value.args[0].data_path == str(Path("good.parquet").resolve())


def _edit_manifest(run: str, **changes: object) -> None:
    path = Path("results", run, "tune_app_run.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _upgraded(run: str) -> None:
    """The run as an older tune_app recorded it, whose packaged space had wider bounds."""
    content = json.loads(Path("results", run, "tune_app_run.json").read_text())["space_content"]
    content["params"]["teacher_forcing_shift"]["high"] = 0.3
    _edit_manifest(run, space_content=content, tune_app_version="0.0.9")


LOW = "  - teacher_forcing_shift: low -0.3 -> -0.25\n"  # the edit below, as a resume names it
RESTORE = "restore my_modifications.yaml, or start a new run with another --name"


@pytest.mark.parametrize(
    ("change", "argv", "problems"),
    [
        (  # issue 15: an edited space file was ignored on --resume without a word
            lambda: _edit_space(Path("my_modifications.yaml"), "teacher_forcing_shift", low=-0.25),
            ["search", "--space", "my_modifications.yaml", "--name", "m2-run", "--resume"],
            [
                "the search run 'm2-run' goes on with the search space it started with "
                "(recorded in its tune_app_run.json), and my_modifications.yaml differs from it "
                "now; the run's value -> the file's:\n" + LOW + RESTORE
            ],
        ),
        (  # without --space: the run's own file, not the package's, is what it started with
            lambda: _edit_space(Path("my_modifications.yaml"), "teacher_forcing_shift", low=-0.25),
            ["search", "--name", "m2-run", "--resume"],
            [LOW + RESTORE],
        ),
        (  # flags and the space at once, in one message
            lambda: _edit_space(Path("my_modifications.yaml"), "teacher_forcing_shift", low=-0.25),
            ["search", "--name", "m2-run", "--resume", "--population", "8"],
            ["--population 8 (the run's: 4)", "drop these flags", LOW + RESTORE],
        ),
        (
            lambda: _edit_space(Path("my_capacity.yaml"), "hidden", high=64),
            ["capacity", "--name", "cap-run", "--resume"],
            ["and my_capacity.yaml differs", "  - hidden: high 128 -> 64\nrestore my_capacity"],
        ),
        (  # the packaged space changes with an upgrade
            lambda: _upgraded("pbt-run"),
            ["search", "--name", "pbt-run", "--resume"],
            [
                "the package's search_spaces/modifications.yaml differs from it (the run started "
                "with tune_app 0.0.9, this is ",
                "  - teacher_forcing_shift: high 0.3 -> 0.2\n",
                "resume it with tune_app 0.0.9, or start a new run with another --name",
            ],
        ),
    ],
    ids=["edited --space", "edited own file", "flags and space", "capacity", "upgraded"],
)
def test_resume_refuses_a_space_changed_since_the_run_started(
    change, argv, problems, workdir: Path, monkeypatch, capsys
):
    """Ray goes on with the space pickled in the run's tuner.pkl, whatever the file says now:
    a change is refused before Ray starts, each parameter named, nothing written."""
    import ray

    from tune_app.tune import runner

    def reached(*given):  # type: ignore[no-untyped-def]
        raise Reached(*given)

    monkeypatch.setattr(runner, f"run_{argv[0]}", reached)  # never Ray, even if not refused
    change()
    before = _files(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    for problem in problems:
        assert problem in err, err
    assert err.count("tune-app: error:") == 1 and "Traceback" not in err
    assert _files(workdir) == before
    assert not ray.is_initialized()


@pytest.mark.parametrize(
    ("change", "argv", "high"),
    [
        (lambda: None, ["search", "--name", "m2-run", "--resume"], 0.1),  # its own, unchanged
        (  # an older run recorded no space: resumed as before, unchecked
            lambda: (
                _edit_space(Path("my_modifications.yaml"), "teacher_forcing_shift", low=-0.25),
                _edit_manifest("m2-run", space_content=None, space_file=None),
            ),
            ["search", "--name", "m2-run", "--resume", "--space", "my_modifications.yaml"],
            0.1,
        ),
        (  # the run's file is gone: nothing edited can be ignored; its recorded space goes on
            lambda: Path("my_modifications.yaml").unlink(),
            ["search", "--name", "m2-run", "--resume"],
            0.1,
        ),
        (lambda: None, ["search", "--name", "pbt-run", "--resume"], 0.2),  # the package's
    ],
    ids=["own file", "older run", "file gone", "package's"],
)
def test_resume_goes_on_with_the_runs_own_space(change, argv, high, workdir: Path, monkeypatch):
    """What reaches run_search on --resume is the run's space, never the package's default
    in place of the run's own file (Ray's restored scheduler holds it; nothing may differ)."""
    from tune_app.tune import runner

    def reached(*given):  # type: ignore[no-untyped-def]
        raise Reached(*given)

    monkeypatch.setattr(runner, "run_search", reached)
    change()
    with pytest.raises(Reached) as info:
        main(argv)
    space = info.value.args[2]
    assert {p.name: p.high for p in space.params}["teacher_forcing_shift"] == high


def test_given_flags_are_the_typed_ones():
    from tune_app.cli.main import given_flags

    typed = ["search", "--pop", "3", "--set", "phases.1.alpha=0.5", "--resume", "--name", "x"]
    assert given_flags(typed) == {"population", "overrides", "resume", "name"}
    assert given_flags(["search"]) == set()


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--population", "many"],
        ["train", "--phase-epochs", "-1"],
        ["train", "--cell", "transformer"],
        ["plan", "show", "--steps-per-epoch", "0"],
    ],
)
def test_bad_flag_values_exit_2(argv, workdir: Path, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_no_traceback_from_the_real_console_script(workdir: Path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tune_app.cli", "plan", "validate", "bad_alpha.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert done.returncode == 2
    assert "phases.2.alpha" in done.stderr and "Traceback" not in done.stderr


def test_a_pbt_space_naming_model_capacity_stops_before_ray_starts(workdir: Path, capsys):
    """Failure 1 of issue 12: `hidden` in a PBT space was searched, named in trial names, and
    never applied. Now: exit 2, the known parameters listed, Ray never started."""
    import ray

    assert main(["search", "--space", "hidden_space.yaml", "--phase-epochs", "1"]) == 2
    err = capsys.readouterr().err
    for known in ("alpha_shift", "lr_restart", "curriculum_start", "component_weight"):
        assert known in err
    assert not ray.is_initialized()

"""Bad input, a table of what users hit: exit 2, one message naming the problem and the fix,
no traceback, nothing written."""

from __future__ import annotations

import json
import os
import shutil
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
    return root


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checkpoints: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("export", "broken_run"):
        shutil.copytree(checkpoints / name, tmp_path / name)
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
    (tmp_path / "notes.txt").write_text("not data")
    (tmp_path / "empty.csv").write_text("series_id,step,c0\n")
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "state.pt").write_bytes(b"\x80\x02garbage")
    (tmp_path / "hello.pth").write_text("hello\n")  # not a torch file at all
    (tmp_path / "ckpt_dir").mkdir()
    (tmp_path / "ckpt_dir" / "state.pt").write_bytes(b"\x80\x02garbage")
    return tmp_path


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
    (["train", "--data", "empty.csv"], "no rows", "empty.csv"),
    (
        ["train", "--data", "good.parquet", "--components", "c0,speed"],
        "unknown component",
        "c0, c1, c2",
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
    (
        ["search", "--space", "bool_space.yaml", "--phase-epochs", "1"],
        "params.lr_restart.low: a bool has no bounds (got 0)",
        "a bool takes only type, per_component",
    ),
    # no round would run before the plan's end: refused, with a --perturb-every that works
    (
        ["search", "--perturb-every", "5", "--phase-epochs", "1"],
        "--perturb-every 5: no round would run: the plan is 5 epochs long (5 phases of 1)",
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
        "the plan is 1 epoch long (1 phase of 1)",
        "lengthen the plan (e.g. --phase-epochs 2)",
    ),
    (
        ["baseline", "--address", "127.0.0.1:9", "--phase-epochs", "1"],
        "no Ray cluster answers",
        "ray start --head",
    ),
    (["baseline", "--storage", "ftp2://x/y", "--phase-epochs", "1"], "not a storage URI", "s3://"),
    (["best", "not_a_run"], "not a tune_app run", "tune_app_run.json"),
    (["best", "ckpt_dir"], "a checkpoint, not a run", "tune-app evaluate"),
    ([*CONTINUE, "--model_path", "hello.pth", "--output_dir", "o"], "not a torch", "checkpoint"),
    (["best", "nowhere"], "no such run directory", "--storage"),
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

"""`compare` and `certify`: bad input exits 2 before Ray starts (one message naming the value
and the fix, nothing written); good input reaches the launch with the plans and seeds asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny import TRAIN_FLAGS, export_train_checkpoint

from tune_app.cli import main
from tune_app.plan.modifications import Modification
from tune_app.plan.plan import load_plan
from tune_app.training.synthetic import make_synthetic

TINY = ["--phase-epochs", "1", "--hidden", "16", "--stride", "8"]


class Reached(Exception):
    """Raised in place of starting Ray, with what the launch was given."""


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _search_run(
    root: Path, name: str, *, finished: bool = True, modified: bool = True, **manifest: Any
) -> Path:
    """A search run as its records say it (manifest, members' checkpoint metas; no weights):
    3 members on the built-in synthetic data, 5 one-epoch phases, member-01 the winner."""
    from tune_app.cli.args import build_spec
    from tune_app.cli.main import build_parser
    from tune_app.runs.storage import locate
    from tune_app.tune.runner import write_manifest

    spec, table = build_spec(build_parser().parse_args(["search", *TINY]))
    run = root / name
    run.mkdir(parents=True)
    write_manifest(locate(run), "search", spec, table, {"population": 3, "perturb_every": 1})
    if manifest:
        raw = json.loads((run / "tune_app_run.json").read_text())
        (run / "tune_app_run.json").write_text(json.dumps({**raw, **manifest}))
    plan = spec.plan.apply(Modification(from_epoch=3, alpha_shift=-0.1)) if modified else spec.plan
    last = 5 if finished else 2
    for index, loss in enumerate([1.0, 0.5, 0.8]):
        trial = run / f"member-{index:02d}"
        trial.mkdir()
        member = {"index": index, "control": index == 0, "params": {}}
        (trial / "params.json").write_text(json.dumps({"member": member}))
        for epoch in range(1, last + 1):
            folder = trial / f"checkpoint_{epoch:06d}"
            folder.mkdir()
            meta = {
                "epoch": epoch, "phase": epoch, "metrics": {"val_free_loss": loss + 1 / epoch},
                "data_fingerprint": table.fingerprint, "components": list(table.components),
                "plan": (plan if index == 1 else spec.plan).to_dict(), "code_fingerprint": "",
                "versions": {},
            }  # fmt: skip
            (folder / "meta.json").write_text(json.dumps(meta))
    return run


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plans, exports and runs to compare and certify, made once."""
    root = tmp_path_factory.mktemp("compare")
    make_synthetic(series=2, length=200, components=2).to_parquet(root / "two.parquet")
    assert (
        main(
            ["train", "--data", str(root / "two.parquet"), *TRAIN_FLAGS, "--out", str(root / "t2")]
        )
        == 0
    )
    export_train_checkpoint(
        root / "t2", root / "t2" / "checkpoints" / "epoch_00005", root / "export2"
    )
    assert main(["train", *TRAIN_FLAGS, "--out", str(root / "t3")]) == 0
    export_train_checkpoint(root / "t3", root / "t3" / "checkpoints" / "epoch_00005", root / "export3")  # fmt: skip
    seed = load_plan().to_dict()
    seed["phases"][0]["component_weights"] = [1.0] * 7
    (root / "seven.yaml").write_text(yaml.safe_dump(seed))
    seed = load_plan().to_dict()
    (root / "three_phases.yaml").write_text(yaml.safe_dump({**seed, "phases": seed["phases"][:3]}))
    slow = load_plan().to_dict()
    slow["phases"][0]["lr"] = {"constant": 1e-6}
    (root / "slow.yaml").write_text(yaml.safe_dump(slow))
    (root / "results").mkdir()
    _search_run(root / "results", "done")
    _search_run(root / "results", "going", finished=False)
    _search_run(root / "results", "moved", data_fingerprint="not-the-data")
    _search_run(root / "results", "plain", modified=False)
    cut = _search_run(root / "results", "cut")
    (cut / "certify").mkdir()
    (cut / "certify" / "tune_app_run.json").write_text(json.dumps({"kind": "compare"}))
    base = root / "results" / "base"
    base.mkdir()
    (base / "tune_app_run.json").write_text(json.dumps({"kind": "baseline"}))
    return root


@pytest.fixture
def workdir(made: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import shutil

    from tune_app.tune import compare, runner

    for item in made.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy)(item, tmp_path / item.name)
    monkeypatch.chdir(tmp_path)

    def no_ray(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Ray started")

    def reached(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        raise Reached(spec, arms, seeds, launch)

    monkeypatch.setattr(runner, "init_ray", no_ray)
    monkeypatch.setattr(compare, "run_compare", reached)
    return tmp_path


CASES = [
    (["compare", "seed", "nowhere.yaml", *TINY], "B 'nowhere.yaml': no such plan file or export", "or seed"),
    (["compare", "seed", "seven.yaml", *TINY], "is a plan for 7 components", "the data has 3"),
    (["compare", "seed", "three_phases.yaml", *TINY], "A and B differ in shape", "same epochs"),
    (
        ["compare", "export3", "seed", "--phase-epochs", "4"],
        "A is 5 phases of 1 epoch; B is 5 phases of 4 epochs",
        "--phase-epochs 1",
    ),
    (
        ["compare", "seed", "export2", "--phase-epochs", "1", "--components", "c0,c1,c2"],
        "--components c0,c1,c2 (the export B was trained with 'c0,c1'",
        "drop the flag",
    ),
    (["compare", "seed", "export3", "--hidden", "32"], "--hidden 32 (the export B", "drop the flag"),
    (["compare", "seed", "results/done", *TINY], "a run, not a plan", "tune-app certify"),
    (["compare", "seed", "seed", "--resume"], "--resume: also pass --name", "--name"),
    (["compare", "seed", "seed", "--resume", "--name", "none"], "no run to resume", "--name"),
    (["certify", "results/nowhere"], "no such run directory", "--storage"),
    (["certify", "results/base"], "a baseline run", "tune-app compare A B"),
    (["certify", "results/going"], "no trial has finished the plan yet", "search --resume"),
    (["certify", "results/moved"], "changed since the search", "put back the file"),
    (["certify", "results/done", "--seed-offset", "0"], "include the search's own seed 0", "--seed-offset 1"),
    (["certify", "results/cut"], "was cut short", "pass --resume"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "problem", "fix"), CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_bad_input_exits_2_before_ray_starts(argv, problem, fix, workdir: Path, capsys):
    before = _files(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert problem in err and fix in err, err
    assert err.count("tune-app: error:") == 1 and "Traceback" not in err
    assert _files(workdir) == before, "bad input must not write anything"


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "seed", "seed", "--seeds", "0"],
        ["compare", "seed", "seed", "--seed-offset", "-1"],
        ["certify", "results/done", "--seeds", "0"],
    ],
)
def test_bad_seed_counts_exit_2(argv, workdir: Path, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "must be >=" in err and "Traceback" not in err


def test_compare_reaches_the_launch_with_both_plans_on_paired_seeds(workdir: Path):
    with pytest.raises(Reached) as info:
        main(["compare", "seed", "slow.yaml", *TINY, "--seeds", "3", "--seed-offset", "7"])
    spec, arms, seeds, launch = info.value.args
    assert [arm.label for arm in arms] == ["A", "B"]
    assert arms[0].plan.fingerprint == load_plan(phase_epochs=1).fingerprint
    assert arms[1].plan.phases[0].lr.at(0.5) == 1e-6 and arms[1].plan.shape == arms[0].plan.shape
    assert seeds == [7, 8, 9]
    assert spec.model.hidden == 16 and launch.name is None


def test_an_exports_settings_fill_the_flags_left_out(workdir: Path):
    with pytest.raises(Reached) as info:
        main(["compare", "seed", "export3", "--phase-epochs", "1"])
    spec, arms, _seeds, _launch = info.value.args
    exported = json.loads((workdir / "export3" / "config.json").read_text())
    assert spec.model.hidden == exported["model"]["hidden"] == 16
    assert spec.data.stride == exported["data"]["stride"] == 8
    assert "export export3: trial train at epoch 5" in arms[1].source


def test_an_exports_data_file_given_by_a_relative_path_is_the_same_file(
    workdir: Path, made: Path, monkeypatch
):
    """An export records its data file as an absolute path: `--data` naming that file
    relative to here is the same file, not a flag that differs."""
    monkeypatch.chdir(made)
    with pytest.raises(Reached) as info:
        main(["compare", "seed", str(workdir / "export2"), "--phase-epochs", "1", "--data", "two.parquet"])  # fmt: skip
    assert info.value.args[0].data_path == str(made / "two.parquet")


def test_certify_reaches_the_launch_with_the_control_and_the_winner(workdir: Path):
    with pytest.raises(Reached) as info:
        main(["certify", "results/done", "--seeds", "2"])
    _spec, arms, seeds, launch = info.value.args
    assert [arm.label for arm in arms] == ["control", "winner"]
    assert arms[0].plan.modifications == () and arms[1].plan.modifications[0].alpha_shift == -0.1
    assert seeds == [1000, 1001]
    assert (launch.name, launch.storage) == ("certify", str(workdir / "results" / "done"))


def test_certify_of_a_winner_that_is_the_control_writes_a_note_without_ray(workdir: Path, capsys):
    assert main(["certify", "results/plain"]) == 0
    certificate = json.loads((workdir / "results" / "plain" / "certificate.json").read_text())
    assert certificate["comparison"] is None
    assert "the search found no modification to certify" in certificate["note"]
    assert "no modification to certify" in capsys.readouterr().out


def test_compare_resume_refuses_other_plans(workdir: Path, capsys):
    from tune_app.cli.args import build_spec
    from tune_app.cli.main import build_parser
    from tune_app.runs.storage import locate
    from tune_app.tune.compare import Arm
    from tune_app.tune.runner import write_manifest

    spec, table = build_spec(build_parser().parse_args(["compare", "seed", "seed", *TINY]))
    arms = [Arm("A", spec.plan, "seed"), Arm("B", spec.plan, "seed")]
    (workdir / "results" / "c").mkdir()
    extra = {"seeds": 2, "seed_offset": 1000, "arms": [a.record() for a in arms]}
    write_manifest(locate(workdir / "results" / "c"), "compare", spec, table, extra)
    argv = ["compare", "seed", "slow.yaml", *TINY, "--resume", "--name", "c"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "goes on with the plans it started with" in err and "B (plan file slow.yaml" in err
    with pytest.raises(Reached) as info:  # the same plans: resumed, with the run's own seeds
        main(["compare", "seed", "seed", *TINY, "--resume", "--name", "c"])
    assert info.value.args[2] == [1000, 1001] and info.value.args[3].resume
    assert main([*argv[:3], *TINY, "--resume", "--name", "c", "--seeds", "4"]) == 2
    assert "--seeds 4 (the run's: 2)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (
            ["certify", "results/done", "--seeds", "2"],
            "resume with: tune-app certify results/done --seeds 2 --resume",
        ),
        (
            ["compare", "seed", "slow.yaml", *TINY, "--name", "c"],
            f"resume with: tune-app compare seed slow.yaml {' '.join(TINY)} --resume --name c "
            "--storage results",
        ),
    ],
)
def test_ctrl_c_says_how_to_resume(argv, hint, workdir: Path, monkeypatch, capsys):
    from tune_app.errors import Interrupted
    from tune_app.tune import compare

    def interrupted(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        # as tune/interrupt.py raises it from inside the compare run
        raise Interrupted({"--resume": None, "--name": launch.name, "--storage": launch.storage})

    monkeypatch.setattr(compare, "run_compare", interrupted)
    assert main(argv) == 130
    assert hint in capsys.readouterr().err

"""`compare` and `certify`: bad input exits 2 before Ray starts (one message naming the value
and the fix, nothing written); good input reaches the launch with the plans and seeds asked for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
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


def _compare_run(
    root: Path, name: str, train_dir: Path, *, seeds: int = 3, cut: dict[str, int] | None = None
) -> Path:
    """A finished compare run as Ray leaves it (manifest, trial folders with Tune's params.json
    and result.json, checkpoints), without Ray: every trial is a copy of the `tune-app train`
    run in `train_dir` (the shipped plan, 5 one-epoch phases), so all finished trials score
    the same. `cut` ends a trial early: {"B-1002": 2} keeps its checkpoints to epoch 2; a
    negative epoch also marks it diverged there (as the trainable reports it)."""
    import shutil

    from tune_app.plan.plan import Plan

    spec = json.loads((train_dir / "config.json").read_text())
    plan = spec["plan"]
    fingerprint = Plan.from_dict(plan).fingerprint
    arms = [
        {"label": label, "source": f"seed ({label})", "fingerprint": fingerprint, "plan": plan,
         "argument": "seed"}
        for label in ("A", "B")
    ]  # fmt: skip
    run = root / name
    run.mkdir(parents=True)
    manifest = {
        "kind": "compare", "name": name, "spec": spec, "components": ["c0", "c1", "c2"],
        "seeds": seeds, "seed_offset": 1000, "arms": arms, "max_failures": 2,
    }  # fmt: skip
    (run / "tune_app_run.json").write_text(json.dumps(manifest))
    checkpoints = sorted((train_dir / "checkpoints").iterdir())
    for seed in range(1000, 1000 + seeds):
        for label in ("A", "B"):
            trial = run / f"{label}-{seed}"
            trial.mkdir()
            arm = {"label": label, "seed": seed, "plan": plan}
            (trial / "params.json").write_text(json.dumps({"spec": spec, "arm": arm}))
            last = (cut or {}).get(trial.name, len(checkpoints))
            rows = [{"trial_id": f"t-{trial.name}", "epoch": e} for e in range(1, abs(last) + 1)]
            if last < 0:
                rows.append({"trial_id": f"t-{trial.name}", "epoch": -last, "diverged": 1.0})
            (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
            for number, checkpoint in enumerate(checkpoints[: abs(last)]):
                shutil.copytree(checkpoint, trial / f"checkpoint_{number:06d}")
    return run


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plans, exports and runs to compare and certify, made once."""
    import shutil

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
    (root / "binary.yaml").write_bytes(bytes(range(256)) * 8)  # not text at all
    (root / "table.csv").write_text("series_id,time,c0\ns0,0,1.0\n")  # YAML, not a mapping
    (root / "broken.yaml").write_text("phases:\n  - epochs: 1\n   lr: [\n")  # bad YAML
    shutil.copytree(root / "export3", root / "export_binary")
    (root / "export_binary" / "plan.yaml").write_bytes(b"PAR1\x00\x15\x04" * 64)
    (root / "results").mkdir()
    _search_run(root / "results", "done")
    _search_run(root / "results", "going", finished=False)
    _search_run(root / "results", "moved", data_fingerprint="not-the-data")
    _search_run(root / "results", "plain", modified=False)
    cut = _search_run(root / "results", "cut")
    (cut / "certify").mkdir()
    (cut / "certify" / "tune_app_run.json").write_text(json.dumps({"kind": "compare"}))
    _compare_run(root / "results", "diverged", root / "t3", cut={"B-1002": -2})
    _compare_run(root / "results", "failed", root / "t3", seeds=2, cut={"A-1001": 3})
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
    (["compare", "seed", "results/done", *TINY], "a search run, not a plan", "tune-app certify"),
    (["compare", "seed", "seed", "--resume"], "--resume: also pass --name", "--name"),
    (["compare", "seed", "seed", "--resume", "--name", "none"], "no run to resume", "--name"),
    (["certify", "results/nowhere"], "no such run directory", "by default results/NAME"),
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
    ("argv", "problem"),
    [
        (["compare", "seed", "binary.yaml", *TINY], "B binary.yaml: not a plan YAML file: binary"),
        (["compare", "two.parquet", "seed", *TINY], "A two.parquet: not a plan YAML file: binary"),
        (["compare", "seed", "table.csv", *TINY], "B table.csv: not a plan: expected a YAML mapping"),
        (["compare", "seed", "broken.yaml", *TINY], "B broken.yaml: not valid YAML: "),
        (
            ["compare", "export_binary", "seed", "--phase-epochs", "1"],
            "A export_binary/plan.yaml: not a plan YAML file: binary",
        ),
    ],
)  # fmt: skip
def test_a_file_that_is_not_a_plan_is_one_line(argv, problem, workdir: Path, capsys):
    before = _files(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err  # one line
    assert err.startswith(f"tune-app: error: {problem}"), err
    assert "give a plan YAML file" in err
    assert _files(workdir) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "seed", "seed", *TINY, "--seeds", "1"],
        ["compare", "seed", "seed", *TINY, "--seeds", "0"],
        ["certify", "results/done", "--seeds", "1"],
        ["certify", "results/done", "--seeds", "-3"],
    ],
)
def test_fewer_than_two_seeds_are_refused_in_one_line(argv, workdir: Path, capsys):
    before = _files(workdir)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert err.startswith(f"tune-app: error: --seeds {argv[argv.index('--seeds') + 1]}: ")
    assert "needs at least 2 seeds" in err and "pass --seeds 2 or more" in err
    assert _files(workdir) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "seed", "seed", "--seed-offset", "-1"],
        ["compare", "seed", "seed", "--seeds", "two"],
    ],
)
def test_bad_seed_counts_exit_2(argv, workdir: Path, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert ("must be >=" in err or "invalid int value" in err) and "Traceback" not in err


def test_compare_reaches_the_launch_with_both_plans_on_paired_seeds(workdir: Path):
    with pytest.raises(Reached) as info:
        main(["compare", "seed", "slow.yaml", *TINY, "--seeds", "3", "--seed-offset", "7"])
    spec, arms, seeds, launch = info.value.args
    assert [arm.label for arm in arms] == ["A", "B"]
    assert arms[0].plan.fingerprint == load_plan(phase_epochs=1).fingerprint
    assert arms[1].plan.phases[0].lr.at(0.5) == 1e-6 and arms[1].plan.shape == arms[0].plan.shape
    assert seeds == [7, 8, 9]
    assert spec.model.hidden == 16 and launch.name.startswith("compare-")  # named before Ray


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


# what Ctrl-C raises inside a run: Ray's interrupted fit (the run's --resume --name --storage),
# a trainer's own (`tune-app train`'s --resume CHECKPOINT --out DIR), a bare KeyboardInterrupt
RAYS = {"--resume": None, "--name": "{name}", "--storage": "{storage}"}
TRAINERS = {"--resume": "results/t/checkpoints/epoch_00002", "--out": "results/t"}


@pytest.mark.parametrize("raised", [RAYS, TRAINERS, None], ids=["ray", "trainer", "bare"])
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
        (
            ["compare", "seed", "slow.yaml", *TINY],  # the name the run was given: compare-...
            f"resume with: tune-app compare seed slow.yaml {' '.join(TINY)} --resume --name "
            "compare-",
        ),
    ],
    ids=["certify", "compare", "compare unnamed"],
)
def test_ctrl_c_says_how_to_resume(argv, hint, raised, workdir: Path, monkeypatch, capsys):
    """Whatever raised it inside the run, Ctrl-C in compare advises `tune-app compare ...
    --resume --name --storage` and in certify `tune-app certify RUN --resume`: never the
    trainer's `--resume CHECKPOINT --out DIR`, and never flags certify does not take."""
    from tune_app.errors import Interrupted
    from tune_app.runs.storage import locate
    from tune_app.tune import compare
    from tune_app.tune.runner import write_manifest

    def interrupted(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        location = locate(launch.storage).join(launch.name)
        Path(location.path).mkdir(parents=True)
        write_manifest(location, "compare", spec, table, {})  # the run has started
        if raised is None:
            raise KeyboardInterrupt
        flags = {
            k: v and v.format(name=launch.name, storage=launch.storage) for k, v in raised.items()
        }
        raise Interrupted(flags)

    monkeypatch.setattr(compare, "run_compare", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert hint in err, err
    assert "--out" not in err and "epoch_00002" not in err
    if argv[0] == "certify":
        assert "--name" not in err and "--storage" not in err
    import shlex

    from tune_app.cli.main import build_parser

    advised = shlex.split(err.split("resume with: tune-app ", 1)[1])
    assert build_parser().parse_args(advised).resume  # a command that parses


def test_ctrl_c_before_a_compare_run_started_says_to_run_it_again(workdir, monkeypatch, capsys):
    from tune_app.tune import compare

    def interrupted(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # while Ray starts: no run folder yet

    monkeypatch.setattr(compare, "run_compare", interrupted)
    assert main(["compare", "seed", "seed", *TINY, "--name", "c"]) == 130
    err = capsys.readouterr().err
    assert "nothing was saved yet; run the command again" in err and "--resume" not in err


def test_ctrl_c_before_a_resumed_run_went_on_says_to_run_the_same_command(
    workdir, monkeypatch, capsys
):
    """fresh-s4: a Ctrl-C in the first seconds of a --resume (before Ray) said "nothing was
    saved yet", of a run with its checkpoints."""
    from tune_app.cli import runs

    def interrupted(args, kind, check=None):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt  # as the data load, before the run goes on

    monkeypatch.setattr(runs, "prepare_run", interrupted)
    assert main(["baseline", *TINY, "--resume", "--name", "b"]) == 130
    err = capsys.readouterr().err
    assert "nothing was saved yet" not in err
    assert "the run was not resumed yet, nothing of it changed; run the same command again" in err
    assert main(["baseline", *TINY, "--name", "b"]) == 130  # a new run: nothing saved yet
    assert "nothing was saved yet; run the command again" in capsys.readouterr().err


def _finished_run(location_name: str, grid: list[Any] | None = None):  # type: ignore[no-untyped-def]
    """A stand-in for tune.compare.run_compare that "runs" the existing compare run of that
    name: Ray's result grid (`grid`, empty by default) and the run's folder."""
    from tune_app.runs.storage import locate

    def finished(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        return grid or [], locate(str(Path(launch.storage).absolute() / location_name))

    return finished


def test_a_diverged_trial_counts_against_its_plan_and_the_comparison_is_written(
    workdir: Path, monkeypatch, capsys
):
    from tune_app.runs.records import CompareResult
    from tune_app.runs.storage import locate
    from tune_app.tune import compare

    monkeypatch.setattr(compare, "run_compare", _finished_run("diverged"))
    argv = ["compare", "seed", "seed", *TINY, "--seeds", "3", "--resume", "--name", "diverged"]
    assert main(argv) == 0
    found = CompareResult.read(locate(workdir / "results" / "diverged"))
    assert found is not None
    (comparison,) = found.comparisons
    assert comparison.seeds == (1000, 1001, 1002) and comparison.left_out == ()
    diverged = comparison.b_scores[2]
    assert (diverged.status, diverged.mse_z) == ("diverged", None)  # not its epoch-2 weights
    assert comparison.mean.failed_b == (1002,) and comparison.mean.worse == 1
    assert comparison.mean.verdict == "worse"
    out = capsys.readouterr().out
    assert "verdict (test mse_z): B is worse than A: B diverged or failed on seed 1002" in out
    row = next(line for line in out.splitlines() if line.split()[:1] == ["1002"])
    assert "diverged" in row and "a loss for B" in row


def test_a_failed_trial_counts_against_its_plan_and_resume_runs_it_again(
    workdir: Path, monkeypatch, capsys
):
    from types import SimpleNamespace

    from tune_app.runs.records import CompareResult
    from tune_app.runs.storage import locate
    from tune_app.tune import compare

    grid = [SimpleNamespace(error=None), SimpleNamespace(error=RuntimeError("worker died\nOOM"))]
    monkeypatch.setattr(compare, "run_compare", _finished_run("failed", grid))
    argv = ["compare", "seed", "seed", *TINY, "--seeds", "2", "--resume", "--name", "failed"]
    assert main(argv) == 1
    found = CompareResult.read(locate(workdir / "results" / "failed"))
    assert found is not None
    (comparison,) = found.comparisons
    assert comparison.a_scores[1].status == "failed" and comparison.mean.failed_a == (1001,)
    assert comparison.mean.verdict == "better"
    captured = capsys.readouterr()
    assert "A failed: a loss for A" in captured.out
    assert "trial failed: OOM" in captured.err
    assert "resume with: tune-app compare seed seed" in captured.err and "--resume" in captured.err


def test_compare_resume_goes_on_with_the_runs_own_flags(workdir: Path):
    """The run trained 5 one-epoch phases, hidden 16, stride 8: `--resume` without those flags
    goes on with them (not the 100-epoch seed plan and the defaults)."""
    with pytest.raises(Reached) as info:
        main(["compare", "seed", "seed", "--resume", "--name", "diverged"])
    spec, arms, seeds, launch = info.value.args
    assert launch.resume and seeds == [1000, 1001, 1002]
    assert [arm.plan.shape for arm in arms] == ["5 phases of 1 epoch"] * 2
    assert (spec.model.hidden, spec.data.stride, spec.data_path) == (16, 8, None)
    assert spec.plan.total_epochs == 5


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--phase-epochs", "2"], "--phase-epochs 2 (the run's: 5 phases of 1 epoch)"),
        (["--hidden", "32"], "--hidden 32 (the run's: 16)"),
        (["--stride", "4"], "--stride 4 (the run's: 8)"),
    ],
)
def test_compare_resume_refuses_flags_that_differ_from_the_run(flags, said, workdir, capsys):
    assert main(["compare", "seed", "seed", *flags, "--resume", "--name", "diverged"]) == 2
    err = capsys.readouterr().err
    assert "goes on with the settings it started with" in err and said in err, err


def _hand_made(location, pairs, names, more=((), ())):  # type: ignore[no-untyped-def]
    """A stand-in for cli.compare.score_and_write: the winner 10 % lower on every seed."""
    from tune_app.analysis.certification import compare_scores
    from tune_app.runs.records import ArmScore

    (a, b), *_ = pairs
    scores = [ArmScore(a, s, f"{a}{s}", 5, 1.0, 1.0, {"c0": 1.0}) for s in (1000, 1001)]
    scores += [ArmScore(b, s, f"{b}{s}", 5, 0.9, 0.9 + s / 1e5, {"c0": 0.9}) for s in (1000, 1001)]
    return [compare_scores(scores, (a, a, "aaaa"), (b, b, "bbbb"), (a, b), ("persistence", 1.0))]


def test_certify_writes_the_certificate_before_any_ablation(workdir: Path, monkeypatch, capsys):
    """Ctrl-C in the ablations (here as Ray's interrupted fit raises it) keeps the certificate,
    already written and printed, and advises certify's own --resume."""
    from tune_app.cli import certify
    from tune_app.errors import Interrupted
    from tune_app.runs.records import Certificate
    from tune_app.runs.storage import locate
    from tune_app.tune import compare

    def run_compare(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        location = locate(launch.storage).join(launch.name)
        if launch.name == "ablate":
            assert (workdir / "results" / "done" / "certificate.json").is_file()  # already
            raise Interrupted(
                {"--resume": None, "--name": launch.name, "--storage": launch.storage}
            )
        return [], location

    monkeypatch.setattr(compare, "run_compare", run_compare)
    monkeypatch.setattr(certify, "score_and_write", _hand_made)
    assert main(["certify", "results/done", "--seeds", "2", "--ablate"]) == 130
    captured = capsys.readouterr()
    certificate = Certificate.read(locate(workdir / "results" / "done"))
    assert certificate is not None and certificate.comparison is not None
    assert certificate.comparison.mean.verdict == "better" and certificate.ablations == ()
    assert "Certified on 2 fresh seeds 1000-1001" in captured.out
    assert "certificate written: " in captured.out
    assert "the certificate is written" in captured.err
    assert "resume with: tune-app certify results/done --seeds 2 --ablate --resume" in captured.err
    assert "--name" not in captured.err and "--storage" not in captured.err


def _advised(err: str) -> list[str]:
    """The command a message advises in backquotes after `what` (without `tune-app`)."""
    import shlex

    return shlex.split(err.split("`tune-app ", 1)[1].split("`", 1)[0])


@pytest.mark.parametrize("command", ["best", "report"])
def test_best_and_report_of_a_compare_run_say_what_it_is_and_what_to_run(
    command, workdir: Path, capsys
):
    before = _files(workdir)
    assert main([command, "results/diverged"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert (
        "a compare run (plans A (seed (A)) and B (seed (B)), each trained from scratch on 3" in err
    )
    assert f"no winner to {command}" in err and "its verdict (comparison.json)" not in err
    advised = _advised(err)
    assert advised[:2] == ["compare", "seed"] and "--resume" in advised
    assert _files(workdir) == before
    with pytest.raises(Reached) as info:  # the advised command goes on with that very run
        main(advised)
    _spec, _arms, seeds, launch = info.value.args
    assert launch.resume and launch.name == "diverged" and seeds == [1000, 1001, 1002]


@pytest.mark.parametrize("command", ["best", "report"])
def test_best_and_report_of_a_searchs_certify_run_point_to_the_search(command, workdir, capsys):
    assert main([command, "results/cut/certify"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the certification of the search run" in err, err
    advised = _advised(err)
    assert advised[0] == command and Path(advised[1]) == workdir / "results" / "cut"
    from tune_app.cli.main import build_parser

    assert build_parser().parse_args(advised).run == advised[1]


def _parses(err: str) -> tuple[list[str], Any]:
    """The first command an error message advises in backquotes, parsed by the real parser
    (argparse exits on a flag the command does not take)."""
    from tune_app.cli.main import build_parser

    advised = _advised(err)
    return advised, build_parser().parse_args(advised)


def test_certify_of_an_unfinished_search_advises_a_search_resume_that_works(
    workdir: Path, monkeypatch, capsys
):
    from tune_app.tune import runner

    assert main(["certify", "results/going"]) == 2
    advised, parsed = _parses(capsys.readouterr().err)
    assert advised[:2] == ["search", "--resume"] and parsed.name == "going"
    assert Path(parsed.storage) == workdir / "results"

    def reached(spec, table, space, options, launch):  # type: ignore[no-untyped-def]
        raise Reached(launch)

    monkeypatch.setattr(runner, "run_search", reached)
    with pytest.raises(Reached) as info:  # it resumes that very run
        main(advised)
    (launch,) = info.value.args
    assert launch.resume and launch.location("search").path == str(workdir / "results" / "going")


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["compare", "results/done", "seed", *TINY], "certify"),
        (["compare", "seed", "seed", *TINY, "--resume", "--name", "done"], "search"),
        (["baseline", *TINY, "--resume", "--name", "diverged"], "compare"),
        (["search", *TINY, "--resume", "--name", "diverged"], "compare"),
    ],
)
def test_advice_about_another_kind_of_run_parses(argv, command, workdir: Path, capsys):
    assert main(argv) == 2
    advised, parsed = _parses(capsys.readouterr().err)
    assert advised[0] == command
    if command != "certify":
        assert parsed.resume and parsed.name == argv[-1]
        assert Path(parsed.storage) == workdir / "results"
    if command == "compare":  # the compare run's own command goes on with it
        with pytest.raises(Reached) as info:
            main(advised)
        assert info.value.args[3].resume and info.value.args[3].name == "diverged"


@pytest.mark.parametrize("raised", ["claimed", "nothing"])
def test_certify_says_in_its_own_words_what_the_launch_refused(
    raised, workdir: Path, monkeypatch, capsys
):
    """The launch's refusals name --name and --storage, which certify does not take."""
    from tune_app.errors import NothingToResume, RunClaimed
    from tune_app.tune import compare

    def refused(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        if raised == "claimed":
            raise RunClaimed(
                f"--name {launch.name}: a run of that name is going; choose another --name",
                "pid 4242 on elsewhere",
            )
        raise NothingToResume("--resume: no run to resume; check --name and --storage")

    monkeypatch.setattr(compare, "run_compare", refused)
    assert main(["certify", "results/done", "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    advised, parsed = _parses(err)
    assert advised[0] == "certify" and Path(parsed.run) == workdir / "results" / "done"
    assert bool(parsed.resume) == (raised == "claimed")  # not typed: None
    assert "--name" not in err and "--storage" not in err
    if raised == "claimed":
        assert "is held by another command (pid 4242 on elsewhere)" in err


def _announced(workdir: Path, monkeypatch, capsys, argv: list[str]) -> str:  # type: ignore[no-untyped-def]
    """What compare prints as its cost estimate, Ray having "started" in 7 s on 2 slots."""
    from tune_app.tune import compare

    def announcing(spec, table, arms, seeds, launch, announce=None):  # type: ignore[no-untyped-def]
        announce(2, 7.0)
        raise Reached(spec, arms, seeds, launch)

    monkeypatch.setattr(compare, "run_compare", announcing)
    with pytest.raises(Reached):
        main(argv)
    return capsys.readouterr().out


def test_the_cost_estimate_counts_the_fixed_costs(workdir: Path, monkeypatch, capsys):
    from tune_app.cli import cost

    out = _announced(
        workdir, monkeypatch, capsys, ["compare", "seed", "seed", *TINY, "--seeds", "3"]
    )
    assert "6 trials of 5 epochs (30 epochs to run in all), 2 at a time" in out
    startup = cost.WORKER_START_S + cost.TRIAL_SETUP_S * 3  # 3 rounds of 2 trials
    scoring = cost.SCORE_SETUP_S + cost.SCORE_TRIAL_S * 6
    assert f"Ray start 7 s, trial start-up ~{startup:.0f} s" in out
    assert f"scoring 6 trials on the test split ~{scoring:.0f} s" in out
    assert f"fixed costs ~{7 + startup + scoring:.0f} s" in out


def test_the_cost_estimate_with_an_exports_epoch_time_adds_training(workdir, monkeypatch, capsys):
    from tune_app.cli import cost

    out = _announced(
        workdir,
        monkeypatch,
        capsys,
        ["compare", "seed", "export3", "--phase-epochs", "1", "--seeds", "2"],
    )
    seconds = float(pd.read_parquet(workdir / "export3" / "metrics.parquet")["seconds"].median())
    training = 4 * 5 * seconds / 2
    fixed = (
        7
        + cost.WORKER_START_S
        + cost.TRIAL_SETUP_S * 2
        + cost.SCORE_SETUP_S
        + 4 * cost.SCORE_TRIAL_S
    )
    assert f"about {max(training + fixed, 1):.0f} s (training ~" in out, out


def test_the_cost_estimate_of_a_resumed_run_counts_only_what_is_left(workdir, monkeypatch, capsys):
    """The "failed" run: A-1001 stopped at epoch 3 of 5, the other three trials finished."""
    from tune_app.cli import cost

    argv = ["compare", "seed", "seed", "--resume", "--name", "failed"]
    out = _announced(workdir, monkeypatch, capsys, argv)
    assert (
        "3 trial(s) ended before and are kept; to run: 1 trial of 5 epochs (2 epochs to run in all)"
        in out
    )
    startup = cost.WORKER_START_S + cost.TRIAL_SETUP_S
    assert f"trial start-up ~{startup:.0f} s, scoring 4 trials" in out  # all 4 scored again
    assert "training ~" in out  # timed by the run's own epochs


@pytest.mark.parametrize("content", [b"", b'{"trial_data": [["{\\"config'], ids=["empty", "cut"])
def test_certify_resume_names_the_ray_state_a_full_disk_cut_short(
    content: bytes, workdir: Path, capsys
):
    """Leftover 3, certify's parts: a certify run whose Ray state a full disk cut short is
    named before Ray starts (its trials would start again without their settings)."""
    part = workdir / "results" / "cut" / "certify"
    state = part / "experiment_state-2026-01-01_00-00-00.json"
    state.write_bytes(content)
    assert main(["certify", "results/cut", "--resume", "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert f"its certify run ({part}) cannot be resumed: Ray restores it from {state}" in err
    assert f"move {part} away and run `tune-app certify {part.parent}` again" in err, err
    advised, parsed = _parses(err)
    assert advised[0] == "certify" and Path(parsed.run) == part.parent

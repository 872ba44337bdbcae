"""A search whose explores change nothing (issue 20, item 11): a space in which no member trains
differently from the control is refused before Ray starts, saying what to add; an exploit whose
explored parameters train exactly as the donor's is shown as "no effective change"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tiny import TRAIN_FLAGS

from tune_app.cli import main
from tune_app.errors import InputError
from tune_app.plan.effects import refuse_inert_space
from tune_app.plan.plan import load_plan
from tune_app.plan.search_space import SearchSpace, load_space
from tune_app.training.synthetic import make_synthetic

COMPONENTS = ("c0", "c1", "c2")
SWITCHES = {"lr_restart": {"type": "bool"}, "plateau_restart": {"type": "bool"}}
FACTOR = {"type": "float", "low": 0.5, "high": 3.0, "mutate": "scale"}


@pytest.mark.parametrize(
    ("params", "phase_epochs", "said"),
    [
        (SWITCHES, 2, ["lr_restart alone", "add lr_restart_factor", "last round is at epoch 8"]),
        ({"lr_restart_factor": FACTOR}, 2, ["lr_restart_factor acts only with lr_restart"]),
        ({"plateau_restart": {"type": "bool"}}, 6, ["more than 30 epochs", "epoch 24"]),
        (
            {"curriculum_start": {"type": "float", "low": 0.3, "high": 1.0}},
            2,
            [
                "only copy weights. Add a parameter that changes the plan by itself (the default "
                "space's lr_restart_factor with lr_restart, lr_restart_period with lr_restart, "
                "teacher_forcing_shift, lr_scale, grad_clip_scale; or any of "
                "search_spaces/modifications_full.yaml)"
            ],
        ),
    ],
    ids=["switches-only", "factor-without-switch", "plateau-in-a-short-plan", "curriculum-start"],
)
def test_a_space_that_changes_nothing_is_refused(params, phase_epochs, said, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"kind": "pbt", "params": params}))
    make_synthetic(series=2, length=200).to_parquet(tmp_path / "d.parquet")
    argv = ["search", "--data", str(tmp_path / "d.parquet"), "--space", str(space)]
    argv += ["--phase-epochs", str(phase_epochs), "--storage", str(tmp_path / "runs")]
    assert main([*argv, "--name", "s"]) == 2
    err = capsys.readouterr().err
    assert "no member this space can draw trains any differently" in err
    assert all(s in err for s in said), err
    assert not (tmp_path / "runs").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("params", "phase_epochs"),
    [
        (None, 1),  # the package's space
        (None, 2),
        (SWITCHES, None),  # the seed's 100-epoch phases: a plateau can come before a round
        ({"lr_restart": {"type": "bool"}, "lr_restart_factor": FACTOR}, 2),
        ({"alpha_shift": {"type": "float", "low": -0.3, "high": 0.1}}, 1),
    ],
    ids=["package-1", "package-2", "switches-seed-plan", "restart-with-factor", "alpha"],
)
def test_a_space_that_can_change_the_plan_is_kept(params, phase_epochs):
    space = (
        load_space(None, "modifications.yaml", "pbt")
        if params is None
        else SearchSpace.from_dict({"kind": "pbt", "params": params}, "test")
    )
    plan = load_plan(phase_epochs=phase_epochs)
    refuse_inert_space(space.expand(COMPONENTS), plan, plan.phases[0].epochs, COMPONENTS, 30)


def test_the_refusal_suggests_the_default_spaces_levers():
    """Issue 19: the refusal suggested alpha_shift and component_weight first, which the
    default space left out since they never certified."""
    from tune_app.plan.effects import default_levers

    assert default_levers() == [
        "lr_restart_factor with lr_restart",
        "lr_restart_period with lr_restart",
        "teacher_forcing_shift",
        "lr_scale",
        "grad_clip_scale",
    ]


def test_refusal_is_a_bad_input():
    space = SearchSpace.from_dict({"kind": "pbt", "params": SWITCHES}, "test")
    with pytest.raises(InputError):
        refuse_inert_space(space, load_plan(phase_epochs=2), 2, COMPONENTS, 30)


@pytest.fixture(scope="module")
def search_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search run laid out as Ray writes one, two members on a tiny train's checkpoints,
    with a journal of three exploits at epoch 2 (rounds every phase of 2 epochs)."""
    root = tmp_path_factory.mktemp("search")
    make_synthetic(series=2, length=200).to_parquet(root / "d.parquet")
    flags = [*TRAIN_FLAGS[:1], "2", *TRAIN_FLAGS[2:]]  # phases of 2 epochs
    assert main(["train", "--data", str(root / "d.parquet"), *flags, "--out", str(root / "t")]) == 0
    spec = json.loads((root / "t/config.json").read_text())
    run = root / "run"
    run.mkdir()
    manifest = {"kind": "search", "name": "run", "spec": spec, "components": list(COMPONENTS)}
    (run / "tune_app_run.json").write_text(json.dumps(manifest))
    off = {"lr_restart": False, "plateau_restart": False, "alpha_shift": 0.0}
    for index in range(2):
        trial = run / f"member-{index:02d}"
        trial.mkdir()
        member = {"index": index, "control": index == 0, "params": off}
        (trial / "params.json").write_text(json.dumps({"member": member}))
        (trial / "result.json").write_text(json.dumps({"trial_id": f"t{index}"}) + "\n")
        for number, checkpoint in enumerate(sorted((root / "t/checkpoints").iterdir())):
            shutil.copytree(checkpoint, trial / f"checkpoint_{number:06d}")
    events = [
        {"lr_restart": True},  # a restart to 1x the peak at a phase start: the plan itself
        {"plateau_restart": True},  # no plateau of > 30 epochs in 10 epochs
        {"alpha_shift": 0.1},  # a real change
    ]
    lines = [
        {"event": "exploit", "epoch": 2 * (i + 1), "trial": "t1", "donor": "t0", "member": 1,
         "donor_member": 0, "old": off, "donor_params": off, "new": {**off, **change},
         "val_free_loss": 1.0, "donor_val_free_loss": 0.9}
        for i, change in enumerate(events)
    ]  # fmt: skip
    (run / "pbt_journal.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_an_explore_that_changes_nothing_says_so(search_run: Path, tmp_path: Path, capsys):
    assert main(["best", str(search_run), "--out", str(tmp_path / "best")]) == 0
    out = capsys.readouterr().out
    changed = [line.strip() for line in out.splitlines() if "parameters changed:" in line]
    assert changed == [
        "parameters changed: no effective change (lr_restart off→on)",
        "parameters changed: no effective change (plateau_restart off→on)",
        "parameters changed: alpha_shift 0→0.1",
    ], out


def test_the_report_shows_it_too(search_run: Path, tmp_path: Path, capsys):
    assert main(["report", str(search_run), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.md").read_text()
    assert page.count("no effective change") >= 2 and "alpha_shift 0→0.1" in page

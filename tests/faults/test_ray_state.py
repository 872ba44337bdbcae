"""`--resume` of a run whose Ray state a full disk cut short (leftover 3): Ray copies its state
files into the run's storage as the run goes, and a full disk leaves one empty or cut short.
Ray then started the trials again without their settings, each failing with "KeyError: 'spec'"
(exit 1, Ray's traceback on the way), and wrote a state that failed the same way on every later
--resume. Now the file is named before Ray starts (exit 2), with what goes on from the run."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import TRAIN_FLAGS, ray_like_run

from tune_app.cli import main
from tune_app.cli.main import build_parser
from tune_app.runs.storage import locate
from tune_app.training.synthetic import make_synthetic
from tune_app.tune.preflight import unrestorable

STATE = "experiment_state-2026-01-01_00-00-00.json"
SEARCHER = "basic-variant-state-2026-01-01_00-00-00.json"


def _state(*configs: dict) -> bytes:
    """Ray's experiment state (the part this check reads): one trial per config."""
    trials = [[json.dumps({"trial_id": f"t{i}", "config": c}), "{}"] for i, c in enumerate(configs)]
    return json.dumps({"trial_data": trials, "runner_data": {}, "stats": {}}).encode()


SOUND = _state({"spec": {"plan": {}}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny train run stopped after epoch 3 (checkpoints 1-3), in t/."""
    root = tmp_path_factory.mktemp("ray_state")
    make_synthetic(series=2, length=200).to_parquet(root / "data.parquet")
    argv = ["train", "--data", str(root / "data.parquet"), *TRAIN_FLAGS, "--stop-after", "3"]
    assert main([*argv, "--out", str(root / "t")]) == 0
    return root


def _run(trained: Path, tmp_path: Path, kind: str = "baseline", **files: bytes) -> Path:
    """The train run laid out as a Ray run `b` in tmp_path/runs, with Ray's state files: sound
    ones, those in `files` (name -> content) instead."""
    run = ray_like_run(trained / "t", tmp_path / "runs" / "b", kind)
    sound = {"tuner.pkl": pickle.dumps({"tuner": 1}), STATE: SOUND, SEARCHER: pickle.dumps([1])}
    for name, content in {**sound, **files}.items():
        (run / name).write_bytes(content)
    return run


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


BROKEN = [
    ({STATE: b""}, STATE, "which is empty (the storage was full"),
    ({STATE: SOUND[: len(SOUND) // 2]}, STATE, "which is cut short (the storage was full"),
    ({STATE: _state({})}, STATE, "which holds the run's trials without their settings"),
    ({"tuner.pkl": b""}, "tuner.pkl", "which is empty"),
    ({SEARCHER: pickle.dumps(list(range(100)))[:40]}, SEARCHER, "which is cut short"),
]


@pytest.mark.parametrize(
    ("files", "named", "said"),
    BROKEN,
    ids=["state empty", "state cut short", "state without settings", "tuner.pkl", "searcher"],
)
def test_baseline_resume_names_rays_broken_state_file(
    trained: Path, files, named, said, tmp_path: Path, capsys
):
    run = _run(trained, tmp_path, **files)
    before = _listing(run)
    storage = str(tmp_path / "runs")
    assert main(["baseline", "--resume", "--storage", storage, "--name", "b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tune-app: error: --resume: the baseline run 'b' cannot be resumed: ")
    assert f"Ray restores it from {run / named}, {said}" in err, err
    assert "KeyError" not in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert _listing(run) == before, "bad input must not write anything"
    # what goes on: the baseline's last good checkpoint in this process, a command that works
    checkpoint = run / "trial-00" / "checkpoint_000002"
    advice = f"tune-app train --resume {checkpoint} --out {tmp_path / 'runs' / 'b-train'}"
    goes_on = f"its last good checkpoint (epoch 3) goes on in this process, without Ray: `{advice}`"
    assert goes_on in err and "; or start the run again with another --name" in err, err
    argv = advice.split()[1:]
    build_parser().parse_args(argv)
    assert main([*argv, "--progress-every", "5"]) == 0
    assert "after epoch 3 with its own plan (5 phases of 1 epoch): epochs 4-5" in (
        capsys.readouterr().out
    )


def test_a_search_run_with_a_broken_state_is_named_too(trained: Path, tmp_path: Path, capsys):
    """Every Ray command's --resume checks Ray's state (a search's trials are members: no
    single checkpoint to go on from, but the best can be exported)."""
    run = _run(trained, tmp_path, "search", **{STATE: b""})
    storage = str(tmp_path / "runs")
    assert main(["search", "--resume", "--storage", storage, "--name", "b"]) == 2
    err = capsys.readouterr().err
    assert f"the search run 'b' cannot be resumed: Ray restores it from {run / STATE}" in err
    assert f"`tune-app best {run}` still exports the best checkpoint it kept" in err, err


def test_a_broken_run_with_no_checkpoint_is_not_sent_to_best(trained: Path, tmp_path: Path, capsys):
    """fresh-s3: with no checkpoint kept, `tune-app best RUN` exits 2 ("no trial has reported
    yet"): the advice names only what works, a new run."""
    run = _run(trained, tmp_path, "search", **{STATE: b""})
    for checkpoint in run.glob("*/checkpoint_*"):
        shutil.rmtree(checkpoint)
    storage = str(tmp_path / "runs")
    assert main(["search", "--resume", "--storage", storage, "--name", "b"]) == 2
    err = capsys.readouterr().err
    assert "tune-app best" not in err and err.strip().endswith(
        "start the run again with another --name"
    ), err


def test_sound_state_files_pass_and_only_the_newest_counts(trained: Path, tmp_path: Path):
    """Ray reads the greatest name of each kind: an older state cut short is not read, and
    a state whose trials carry their settings is whole."""
    run = _run(trained, tmp_path)
    assert unrestorable(locate(run)) is None
    (run / "experiment_state-2025-01-01_00-00-00.json").write_bytes(b'{"trial_data": [')
    assert unrestorable(locate(run)) is None
    (run / "experiment_state-2027-01-01_00-00-00.json").write_bytes(b"")
    found = unrestorable(locate(run))
    assert found is not None and found[0].name == "experiment_state-2027-01-01_00-00-00.json"


@pytest.mark.slow
def test_a_real_baseline_with_its_ray_state_cut_short(trained: Path, tmp_path: Path):
    """The whole story with Ray (a tiny baseline, ~30 s): the state Ray wrote is sound (the
    run resumes, exit 0); the same run with its experiment state cut short as a full disk
    leaves it was "KeyError: 'spec'" in every trial (exit 1): now exit 2, naming the file."""
    cli = [sys.executable, "-m", "tune_app.cli"]
    data = ["--data", str(trained / "data.parquet"), "--phase-epochs", "1", "--hidden", "8"]
    storage = tmp_path / "runs"
    made = subprocess.run(
        [*cli, "baseline", *data, "--stride", "8", "--storage", str(storage), "--name", "b"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-3000:]
    shutil.copytree(storage / "b", storage / "cut")
    resume = [*cli, "baseline", "--resume", "--storage", str(storage), "--name"]
    again = subprocess.run([*resume, "b"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    (state,) = sorted((storage / "cut").glob("experiment_state-*.json"))
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    cut = subprocess.run([*resume, "cut"], capture_output=True, text=True, timeout=600)
    assert cut.returncode == 2, cut.stderr[-3000:]
    assert f"Ray restores it from {state}, which is cut short" in cut.stderr, cut.stderr
    assert "KeyError" not in cut.stderr and "Traceback" not in cut.stderr

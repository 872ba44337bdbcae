"""A run's start, between its claim and Ray's first saved state (fresh-s3): a folder deleted
while Ray starts ends the launch; a run stopped before Ray saved anything starts again under
its name, and --resume of it says so instead of a dead end or Ray's KeyError."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from tune_app.errors import InputError, NothingToResume, RunFailed
from tune_app.runs.lock import LOCK_FILE, LockOwner, hold_name, release_name, still_held
from tune_app.runs.records import MANIFEST
from tune_app.runs.storage import locate
from tune_app.tune.options import Launch
from tune_app.tune.runner import claim, fit_or_restore, record_run


def _never(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise AssertionError("Ray must not be asked")


def test_a_folder_deleted_while_ray_starts_ends_the_launch(tmp_path: Path):
    location = locate(str(tmp_path / "r"))
    hold_name(location, resume=False)
    try:
        assert still_held(location)
        shutil.rmtree(tmp_path / "r")  # deleted while Ray starts (seconds)
        assert not still_held(location)
        with pytest.raises(RunFailed, match="disappeared while it ran"):
            record_run(location, "baseline", None, None, {})  # type: ignore[arg-type]
        assert not (tmp_path / "r").exists()  # not made again without its lock
    finally:
        release_name(location)


def test_another_claim_in_the_lock_is_not_ours(tmp_path: Path):
    location = locate(str(tmp_path / "r"))
    hold_name(location, resume=False)
    try:
        theirs = LockOwner(1, "elsewhere", 0.0, "theirs")
        (tmp_path / "r" / LOCK_FILE).write_bytes(theirs.to_json())
        assert not still_held(location)
    finally:
        release_name(location)


def _stopped_run(tmp_path: Path, *ray_files: str) -> Path:
    run = tmp_path / "runs" / "b"
    run.mkdir(parents=True)
    (run / MANIFEST).write_text("{}")
    for name in ray_files:
        (run / name).write_bytes(b"x")
    return run


@pytest.mark.parametrize("ray_files", [(), ("tuner.pkl",)], ids=["manifest-only", "tuner-pkl"])
def test_a_run_stopped_before_ray_saved_anything_starts_again(ray_files, tmp_path: Path, capsys):
    # Ctrl-C while Ray started said "nothing was saved yet; run the command again"; that
    # said "a run already exists; pass --resume", and --resume "no run to resume" (or, with
    # tuner.pkl, Ray's KeyError 'spec' in every trial)
    _stopped_run(tmp_path, *ray_files)
    launch = Launch(name="b", storage=str(tmp_path / "runs"))
    location = launch.location("baseline")
    claim(location, launch)
    try:
        assert "stopped before Ray saved any of it; starting it again" in capsys.readouterr().err
    finally:
        release_name(location)
    resume = Launch(name="b", storage=str(tmp_path / "runs"), resume=True)
    if ray_files:
        with pytest.raises(NothingToResume, match="run the same command without --resume"):
            fit_or_restore(resume, location, None, _never)


def test_a_run_ray_saved_is_not_started_over(tmp_path: Path):
    _stopped_run(tmp_path, "tuner.pkl", "experiment_state-2026-12-07_07-00-00.json")
    launch = Launch(name="b", storage=str(tmp_path / "runs"))
    with pytest.raises(InputError, match="a run already exists"):
        claim(launch.location("baseline"), launch)


class _Tuner:
    def fit(self) -> None:
        raise KeyboardInterrupt


@pytest.mark.parametrize("saved", [False, True], ids=["ray-starting", "state-saved"])
def test_ctrl_c_offers_resume_only_once_ray_saved_the_run(saved: bool, tmp_path: Path):
    # fresh-s3b: a Ctrl-C as Ray started printed a --resume command that was then refused
    from tune_app.errors import Interrupted
    from tune_app.tune.interrupt import fit

    run = _stopped_run(tmp_path, *(["experiment_state-2026-12-07_08-00-00.json"] if saved else []))
    with pytest.raises(Interrupted) as caught:
        fit(_Tuner(), locate(str(run)), str(tmp_path / "runs"))
    assert ("--resume" in caught.value.flags) is saved


def test_a_second_launch_beside_a_running_run_names_its_process(tmp_path: Path):
    # fresh-s3b: it said "pass --resume to continue it", and --resume was then refused
    from tune_app.errors import RunClaimed

    run = _stopped_run(tmp_path, "tuner.pkl", "experiment_state-2026-12-07_08-00-00.json")
    live = LockOwner(os.getppid(), socket.gethostname(), 0.0, "theirs")
    (run / LOCK_FILE).write_bytes(live.to_json())
    launch = Launch(name="b", storage=str(tmp_path / "runs"))
    with pytest.raises(RunClaimed, match="a run of that name is starting or going"):
        claim(launch.location("baseline"), launch)

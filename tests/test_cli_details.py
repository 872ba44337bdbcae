"""The smaller things a new user hits (issue 20, item 12): a component name with a comma, a
closed pipe, generating for hours, a season longer than the input window, objects printed as
`<... object at 0x...>`, and Ray's trial ids where the README promises folder names. (Other
CSV dialects: tests/test_user_data.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tiny import TRAIN_FLAGS, ray_like_run

from tune_app.cli import main
from tune_app.training.synthetic import make_synthetic

CLI = [sys.executable, "-m", "tune_app.cli"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.parquet, a tiny train run in t/, laid out as a Ray baseline in runs/b."""
    root = tmp_path_factory.mktemp("details")
    make_synthetic(series=2, length=200).to_parquet(root / "data.parquet")
    argv = ["train", "--data", str(root / "data.parquet"), *TRAIN_FLAGS, "--out", str(root / "t")]
    assert main(argv) == 0
    ray_like_run(root / "t", root / "runs" / "b")
    return root


@pytest.fixture
def comma_file(tmp_path: Path) -> Path:
    frame = make_synthetic(series=2, length=200).rename(columns={"c0": "Druck, bar"})
    path = tmp_path / "units.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("names", "code", "said"),
    [
        (["--component", "Druck, bar", "--component", "c2"], 0, "components: 'Druck, bar', 'c2'"),
        (["--components", "c2", "--component", "Druck, bar"], 0, "components: 'c2', 'Druck, bar'"),
        (["--components", "Druck, bar"], 2, "given whole with --component NAME"),
        (["--component", "c1", "--components", "c1"], 2, "'c1' named twice"),
    ],
    ids=["repeated", "both-flags", "comma-split", "twice"],
)
def test_a_component_name_with_a_comma(names, code, said, comma_file: Path, capsys):
    assert main(["data", "inspect", str(comma_file), *names]) == code
    captured = capsys.readouterr()
    assert said in captured.out + captured.err


def test_training_on_a_name_with_a_comma(comma_file: Path, tmp_path: Path, capsys):
    argv = ["train", "--data", str(comma_file), "--component", "Druck, bar", "--component", "c1"]
    assert main([*argv, *TRAIN_FLAGS, "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t/config.json").read_text())["components"] == [
        "Druck, bar",
        "c1",
    ]
    assert main(["evaluate", str(tmp_path / "t")]) == 0  # selected by those names again
    assert "Druck, bar" in capsys.readouterr().out


def test_a_closed_pipe_ends_quietly():
    """`tune-app ... | head`: more output than a pipe holds, a reader that leaves early."""
    epochs = ",".join(str(e) for e in range(1, 501))
    shell = f"{' '.join(CLI)} plan show --json --epochs {epochs} | head -c 100 > /dev/null"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stderr == ""


@pytest.mark.parametrize("command", ["train", "continue"])
def test_training_into_a_closed_pipe_trains_to_its_end_quietly(command, trained: Path, tmp_path):
    """fresh-20 item 12: `train ... | head -2` stopped the run with "could not write ...:
    Broken pipe; free space (or fix the permissions)", exit 1."""
    import shlex

    out = tmp_path / "out"
    if command == "train":
        argv = ["train", "--data", trained / "data.parquet", "--phase-epochs", "8"]
        argv += ["--hidden", "16", "--stride", "8", "--out", out]
        last = out / "checkpoints" / "epoch_00040"
    else:
        argv = ["continue", "--model_path", trained / "t/checkpoints/epoch_00005", "--epochs"]
        argv += ["35", "--start_lr", "5e-4", "--min_lr", "1e-4", "--output_dir", out]
        last = out / "checkpoints" / "epoch_00040"
    shell = f"{shlex.join([*CLI, *map(str, argv), '--progress-every', '1'])} | head -1"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert last.is_dir()  # it trained to its end


def test_generate_writes_the_format_its_out_names(trained: Path, tmp_path: Path, capsys):
    """fresh-20 item 12's neighbour: `generate --out g.csv` wrote parquet bytes into g.csv."""
    argv = ["generate", str(trained / "t"), "--series", "s01", "--steps", "3", "--out"]
    assert main([*argv, str(tmp_path / "g.csv")]) == 0
    assert main([*argv, str(tmp_path / "g.parquet")]) == 0
    written = pd.read_csv(tmp_path / "g.csv")  # text, not parquet bytes
    pd.testing.assert_frame_equal(
        written, pd.read_parquet(tmp_path / "g.parquet"), check_dtype=False
    )
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "g.txt")]) == 2  # refused before any work
    assert "--out" in capsys.readouterr().err and not (tmp_path / "g.txt").exists()


def test_generating_for_hours_is_refused_with_the_estimate(trained: Path, tmp_path, capsys):
    out = tmp_path / "g.parquet"
    argv = ["generate", str(trained / "t"), "--series", "s01", "--steps", "100000000"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--steps 100000000: would take about" in err and "µs per step" in err, err
    assert "generate at most about" in err and not out.exists()
    assert main([*argv[:-1], "2000", "--out", str(out)]) == 0  # a long but sane run works
    assert len(pd.read_parquet(out)) == 2000


@pytest.mark.parametrize(("season", "code"), [(1000, 2), (49, 2), (48, 0), (12, 0)])
def test_a_season_is_used_as_printed_or_refused(season, code, trained: Path, capsys):
    assert main(["evaluate", str(trained / "t"), "--season", str(season), "--json"]) == code
    captured = capsys.readouterr()
    if code:
        assert "can be at most 48" in captured.err
    else:
        report = json.loads(captured.out)
        assert report["season"] == season and report["season_source"] == "--season"


def test_a_skipped_checkpoint_is_named_by_its_path(tmp_path: Path, capsys):
    from tune_app.runs.storage import locate
    from tune_app.tune.trainable import _usable

    broken = tmp_path / "checkpoint_000001"
    broken.mkdir()
    (broken / "state.pt").write_bytes(b"not a checkpoint")
    assert _usable(locate(str(broken)), tmp_path / "work", "x") is None
    out = capsys.readouterr().out
    assert f"skipping checkpoint {broken}:" in out and "object at" not in out
    assert str(locate(str(broken))) == str(broken)


@pytest.mark.parametrize("command", ["best", "report"])
def test_trials_are_named_by_their_folders_not_rays_ids(command, trained, tmp_path, capsys):
    run = trained / "runs" / "b"  # its one trial's Ray id is 3170e_00000, its folder trial-00
    assert main([command, str(run), "--out", str(tmp_path / command)]) == 0
    shown = capsys.readouterr().out
    if command == "report":
        shown = (tmp_path / "report" / "report.md").read_text()
    else:
        assert "best: trial trial-00 at epoch" in shown
    assert "trial-00" in shown and "3170e" not in shown


@pytest.mark.parametrize(("with_ray", "ignored"), [(True, True), (False, False)])
def test_the_console_script_leaves_ray_with_sigterm_ignored(with_ray: bool, ignored: bool):
    """Ray's process reaper may SIGTERM the driver's process group as Ray goes; Ray's handler
    then printed 'Exception ignored ... SystemExit: 1' after tune-app's last line."""
    code = (
        ("import ray\n" if with_ray else "")
        + "import signal, sys\nfrom tune_app.cli.main import run\n"
        + "sys.argv = ['tune-app', 'plan', 'validate', '/nonexistent.yaml']\n"
        + "code = run()\n"
        + "print(code, signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", str(ignored)], done.stdout + done.stderr


@pytest.mark.parametrize("when", ["shutting-ray-down", "after"])
def test_a_ctrl_c_after_the_command_ended_keeps_its_exit_code(when: str):
    """Leftover 2: after the command's last line the process still shuts Ray down and unloads
    torch (about a second), and Python restores the default SIGINT action as it exits: a
    Ctrl-C then ended it with status 130 and no word. Now a Ctrl-C while Ray shuts down ends
    the process at once with the command's exit code (a hung shutdown can be left), and one
    after that is ignored."""
    stall = "shutting-ray-down" if when == "shutting-ray-down" else "never"
    code = (
        "import os, signal, sys, types\n"
        "import tune_app.tune.cluster as cluster\n"
        "sys.modules.setdefault('ray', types.ModuleType('ray'))\n"
        "def hang():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    import time; time.sleep(60)\n"
        f"cluster.leave_quietly = hang if {stall!r} == 'shutting-ray-down' else (lambda: None)\n"
        "from tune_app.cli.main import run\n"
        "sys.argv = ['tune-app', 'plan', 'validate', '/nonexistent.yaml']\n"
        "code = run()\n"
        "print(code, signal.getsignal(signal.SIGINT) == signal.SIG_IGN, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert done.returncode == 2 and "KeyboardInterrupt" not in done.stderr, done.stderr
    assert done.stdout.split() == ([] if when == "shutting-ray-down" else ["2", "True"])

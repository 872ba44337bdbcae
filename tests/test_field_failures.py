"""Situations from the field that now work or fail clearly (issue 13): checkpoints of every kind
a user points a command at, gaps and numeric-looking series ids, exploding losses, Ctrl-C,
unreachable storage. Bad input that is refused outright is in test_bad_input.py."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from tiny import TRAIN_FLAGS, export_train_checkpoint

from tune_app.cli import main
from tune_app.training.data import read_series
from tune_app.training.monitors import DivergenceMonitor
from tune_app.training.synthetic import make_synthetic


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """good.parquet, a tiny train run in run/, its epoch-3 checkpoint exported to export/, and
    a continue from the export in cont/ (which writes best_model_combined.pth)."""
    root = tmp_path_factory.mktemp("trained")
    make_synthetic(series=2, length=200).to_parquet(root / "good.parquet")
    data = ["--data", str(root / "good.parquet")]
    assert main(["train", *data, *TRAIN_FLAGS, "--out", str(root / "run")]) == 0
    export_train_checkpoint(root / "run", root / "run/checkpoints/epoch_00003", root / "export")
    argv = ["continue", "--model_path", str(root / "export"), "--epochs", "2"]
    argv += ["--start_lr", "1e-4", "--min_lr", "1e-5", "--output_dir", str(root / "cont"), *data]
    assert main(argv) == 0
    return root


CONTINUE = ["--epochs", "2", "--start_lr", "1e-4", "--min_lr", "1e-5", "--output_dir", "out"]
CHECKPOINT_COMMANDS = [
    # (argv with {ckpt}, what the first line says, what must be written)
    (
        ["continue", "--model_path", "{ckpt}", *CONTINUE],
        "continuing",
        "out/best_model_combined.pth",
    ),
    # no --phase-epochs: a resume goes on with the checkpoint's own plan (a continue's too)
    (["train", "--resume", "{ckpt}", *TRAIN_FLAGS[2:], "--out", "t"], "done: t", "t/config.json"),
    (["evaluate", "{ckpt}"], "model", None),
    (
        ["generate", "{ckpt}", "--series", "s01", "--out", "g.parquet"],
        "wrote g.parquet",
        "g.parquet",
    ),
]
CHECKPOINTS = [
    "export",
    "export/best_model.pth",
    "cont/best_model_combined.pth",
    "run/checkpoints/epoch_00003",
]


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
@pytest.mark.parametrize(
    ("argv", "said", "written"), CHECKPOINT_COMMANDS, ids=lambda v: str(v)[:20]
)
def test_every_checkpoint_kind_in_every_command(
    argv, said, written, checkpoint, trained: Path, tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    shutil.copy(trained / "good.parquet", tmp_path)
    full = [a.replace("{ckpt}", str(trained / checkpoint)) for a in argv] + [
        "--data",
        "good.parquet",
    ]
    assert main(full) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert said in out
    fresh = [line for line in out.splitlines() if "fresh optimizer" in line]
    resumes = argv[0] in ("continue", "train")
    assert len(fresh) == (1 if resumes and checkpoint.startswith("export") else 0), out
    if written:
        assert (tmp_path / written).is_file()


def test_export_continue_keeps_history_and_epochs(trained: Path):
    history = pd.read_parquet(trained / "cont" / "metrics.parquet")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5]  # epochs 1-3 from the export, then 2 more


def test_gaps_are_listed_by_inspect_and_filled_by_ffill(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    frame = make_synthetic(series=2, length=200)
    drop = ((frame.series_id == "s00") & frame.step.between(100, 139)) | (
        (frame.series_id == "s01") & (frame.step == 7)
    )
    frame[~drop].to_parquet("gap.parquet")
    assert main(["data", "inspect", "gap.parquet"]) == 0
    out = capsys.readouterr().out
    assert "gap in series 's00': 40 step(s) missing from step 100" in out
    assert "gap in series 's01': 1 step(s) missing from step 7" in out
    assert main(["data", "inspect", "gap.parquet", "--fill", "ffill"]) == 0
    assert "problems: none" in capsys.readouterr().out
    from tune_app.training.data import DataConfig

    filled = read_series("gap.parquet", DataConfig(fill="ffill"))
    s00 = filled.values[0]
    assert len(s00) == 200 and (s00[100:140] == s00[99]).all()  # carried forward
    assert (
        main(["train", "--data", "gap.parquet", "--fill", "ffill", *TRAIN_FLAGS, "--out", "t"]) == 0
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_series_ids_stay_text(suffix: str, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    frame = make_synthetic(series=4, length=200)
    frame["series_id"] = frame["series_id"].map(
        dict(zip(sorted(frame.series_id.unique()), ["01", "1", "7", "007"], strict=True))
    )
    path = tmp_path / f"ids{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    assert read_series(path).series_ids == ("007", "01", "1", "7")
    assert main(["data", "inspect", str(path)]) == 0
    assert "problems: none" in capsys.readouterr().out


def test_integer_ids_in_parquet_read_as_text(tmp_path: Path):
    frame = make_synthetic(series=2, length=120)
    frame["series_id"] = frame["series_id"].map({"s00": 1, "s01": 2})
    frame.to_parquet(tmp_path / "int.parquet")
    assert read_series(tmp_path / "int.parquet").series_ids == ("1", "2")


def test_generate_finds_a_zero_padded_series(trained: Path, tmp_path: Path, capsys):
    frame = make_synthetic(series=2, length=200)
    frame["series_id"] = frame["series_id"].map({"s00": "01", "s01": "02"})
    frame.to_csv(tmp_path / "ids.csv", index=False)
    argv = ["generate", str(trained / "export"), "--data", str(tmp_path / "ids.csv")]
    assert main([*argv, "--series", "01"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("losses", "diverged_at"),
    [
        ([0.5, 0.4, 0.3], None),
        ([0.5, 4e5, 0.3], None),  # 8e5 x: large, not yet explosive
        ([0.5, 1e25], 1),  # the lr-1000 run
        ([0.5, float("nan")], 1),
        ([float("inf")], 0),
        ([0.0, 1.0], None),  # a first loss of 0 sets no finite ceiling
    ],
)
def test_divergence_rule(losses, diverged_at):
    monitor = DivergenceMonitor()
    found = [i for i, loss in enumerate(losses) if monitor.check("train_loss", loss)]
    assert (found[0] if found else None) == diverged_at


def test_divergence_rule_keeps_epoch_one_across_a_resume():
    monitor = DivergenceMonitor()
    monitor.start_from([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.1}])
    assert monitor.check("train_loss", 6e5) is not None  # 1.2e6 x epoch 1 of the history
    assert DivergenceMonitor().check("train_loss", 6e5) is None  # a fresh run: its own first


def test_exploding_finite_loss_exits_1(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    high = [f"--set=phases.{i}.lr=1000" for i in range(1, 6)]
    assert main(["train", *TRAIN_FLAGS, *high, "--out", "t"]) == 1
    err = capsys.readouterr().err
    assert "training diverged at epoch" in err and "the first epoch's" in err
    assert "Traceback" not in err


def test_ctrl_c_in_train_names_trains_own_resume(tmp_path: Path, monkeypatch, capsys):
    import tune_app.runs.reporting as reporting

    real = reporting.ProgressPrinter.on_epoch_end

    def interrupt_at_epoch_3(self, metrics, state):  # type: ignore[no-untyped-def]
        if metrics["epoch"] == 3:
            raise KeyboardInterrupt
        return real(self, metrics, state)

    monkeypatch.setattr(reporting.ProgressPrinter, "on_epoch_end", interrupt_at_epoch_3)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TRAIN_FLAGS, "--out", "t"]) == 130
    err = capsys.readouterr().err
    assert "resume with: tune-app train --phase-epochs 1" in err
    assert "--resume t/checkpoints/epoch_00003 --out t" in err, err
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    argv = err.split("resume with: tune-app ", 1)[1].split()
    assert main(argv) == 0  # the hint works as printed
    assert pd.read_parquet(tmp_path / "t" / "metrics.parquet")["epoch"].max() == 5


@pytest.mark.parametrize("stop_after", [None, 2], ids=["every epoch", "--stop-after 2"])
def test_ctrl_c_while_train_writes_its_final_files_says_every_epoch_had_run(
    stop_after, tmp_path: Path, monkeypatch, capsys
):
    """Leftover 2: Ctrl-C after the last epoch's checkpoint, while `train` wrote its final files,
    said to resume as if epochs were left (and a run stopped by --stop-after trained one more
    epoch when resumed). Now it says every epoch had run, and the command it prints trains no
    epoch more and writes the missing metrics.parquet."""
    import tune_app.runs.local as local

    real = local.atomic_write_bytes

    def interrupt_the_metrics(path, data):  # type: ignore[no-untyped-def]
        if path.name == "metrics.parquet":
            raise KeyboardInterrupt
        return real(path, data)

    monkeypatch.setattr(local, "atomic_write_bytes", interrupt_the_metrics)
    monkeypatch.chdir(tmp_path)
    stop = ["--stop-after", str(stop_after)] if stop_after else []
    assert main(["train", *TRAIN_FLAGS, *stop, "--out", "t"]) == 130
    err = capsys.readouterr().err
    last = stop_after or 5
    assert f"every epoch had run (epoch {last} is in t/checkpoints/epoch_0000{last})" in err, err
    assert "may lack its metrics.parquet; resuming trains no epoch more and writes it" in err
    assert f"--resume t/checkpoints/epoch_0000{last} --out t" in err, err
    assert not (tmp_path / "t" / "metrics.parquet").exists()
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    argv = err.split("resume with: tune-app ", 1)[1].split()
    assert main(argv) == 0  # the hint works as printed
    assert "every epoch of it had run" in capsys.readouterr().out or stop_after
    assert pd.read_parquet(tmp_path / "t" / "metrics.parquet")["epoch"].tolist() == list(
        range(1, last + 1)
    )
    assert sorted(p.name for p in (tmp_path / "t" / "checkpoints").iterdir())[-1] == (
        f"epoch_0000{last}"
    )


def test_ctrl_c_at_trains_last_line_says_where_the_result_is(tmp_path: Path, monkeypatch, capsys):
    """Ctrl-C as `train` printed its `done:` line said "nothing was saved yet; run the command
    again", which would train it all again; every file was written by then."""
    import builtins

    import tune_app.cli.train as train

    def interrupt_done(*args, **kwargs):  # type: ignore[no-untyped-def]
        if args and str(args[0]).startswith("done:"):
            raise KeyboardInterrupt
        return builtins.print(*args, **kwargs)

    monkeypatch.setattr(train, "print", interrupt_done, raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TRAIN_FLAGS, "--out", "t"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "tune-app: interrupted; every epoch had run; the result is in t", err
    assert (tmp_path / "t" / "metrics.parquet").is_file()


@pytest.mark.parametrize("command", ["train", "continue"])
def test_ctrl_c_just_after_the_done_line_keeps_exit_code_0(
    command, tmp_path: Path, monkeypatch, capsys
):
    """fresh-s3: a Ctrl-C the moment `done:` appeared (after the line, before `main` returned)
    exited 130 with "nothing was saved yet; run the command again", every file written."""
    import builtins

    import tune_app.cli.train as train

    printed = []

    def interrupt_after_done(*args, **kwargs):  # type: ignore[no-untyped-def]
        builtins.print(*args, **kwargs)
        printed.append(str(args[0]) if args else "")

    class Stdout:  # main flushes stdout after the handler: the interrupt lands there
        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(sys.__stdout__, name)

        def flush(self) -> None:
            if any(line.startswith("done:") for line in printed):
                raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    if command == "continue":
        assert main(["train", *TRAIN_FLAGS, "--out", "t"]) == 0
        argv = ["continue", "--model_path", "t/best_model.pth", "--epochs", "1"]
        argv += ["--start_lr", "0.001", "--min_lr", "0.0001", "--output_dir", "c"]
    else:
        argv = ["train", *TRAIN_FLAGS, "--out", "t"]
    monkeypatch.setattr(train, "print", interrupt_after_done, raising=False)
    monkeypatch.setattr(sys, "stdout", Stdout())
    assert main(argv) == 0
    assert "interrupted" not in capsys.readouterr().err


def test_ctrl_c_as_train_exits_leaves_its_result_and_exit_code(tmp_path: Path):
    """Leftover 2: Ctrl-C in the second after `tune-app train` printed `done: ...` (Python
    unloading torch) killed it with status 130 and no word. The command had ended and said
    so: the process now ends with its own exit code, 0."""
    import os
    import signal
    import subprocess
    import sys
    import time

    make_synthetic(series=2, length=200).to_parquet(tmp_path / "d.parquet")
    argv = [sys.executable, "-m", "tune_app.cli", "train", "--data", "d.parquet", *TRAIN_FLAGS]
    process = subprocess.Popen(
        [*argv, "--out", "t"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("done:"):
            time.sleep(0.05)  # past the line: the process is exiting (unloading torch)
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=120)
    # 0; or, had the signal come while the line was still being printed, the line that says
    # where the result is: never 130 without a word
    said = "tune-app: interrupted; every epoch had run; the result is in t"
    assert process.returncode == 0 or (process.returncode == 130 and said in err), (
        process.returncode,
        out,
        err,
    )
    assert "Traceback" not in err and (tmp_path / "t" / "metrics.parquet").is_file()


def test_ray_interrupt_hint_is_replaced():
    from tune_app.tune.interrupt import RAY_TUNE_LOGGER, RayInterruptWatch

    watch = RayInterruptWatch()
    logger = logging.getLogger(RAY_TUNE_LOGGER)

    def record(msg: str) -> logging.LogRecord:
        return logger.makeRecord(RAY_TUNE_LOGGER, logging.WARNING, __file__, 1, msg, None, None)

    assert watch.filter(record("Trial x started")) and not watch.interrupted
    assert watch.filter(record("Stop signal received (e.g. via SIGINT/Ctrl+C), ending"))
    hint = 'Experiment has been interrupted...\nResume experiment with: Tuner.restore(path="p")'
    assert not watch.filter(record(hint)) and watch.interrupted


def test_ray_warning_about_trials_without_a_result_yet_is_dropped():
    """Ray's ResultGrid warns about a trial with no result file yet (a Ctrl-C before its first
    epoch, a resumed run): dropped; a warning with any other error is kept whole."""
    from tune_app.tune.ray_messages import RAY_ANALYSIS_LOGGER, NoResultYet

    logger = logging.getLogger(RAY_ANALYSIS_LOGGER)

    def warning(*errors: Exception) -> logging.LogRecord:
        # formatted as ray.tune.analysis.experiment_analysis._fetch_trial_dataframes does
        lines = "\n".join(f"- train_{i:05d}: {error!r}" for i, error in enumerate(errors))
        msg = f"Failed to fetch metrics for {len(errors)} trial(s):\n{lines}"
        return logger.makeRecord(RAY_ANALYSIS_LOGGER, logging.WARNING, __file__, 1, msg, None, None)

    def missing(trial: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"Could not fetch metrics for {trial}: both result.json and progress.csv were not "
            f"found at /r/{trial}"
        )

    no_result = NoResultYet()
    assert not no_result.filter(warning(missing("train_00000")))
    assert not no_result.filter(warning(missing("a"), missing("it's")))  # repr's other quotes
    assert no_result.filter(warning(missing("a"), ValueError("bad json")))
    assert no_result.filter(warning(PermissionError("denied")))
    other = logger.makeRecord(RAY_ANALYSIS_LOGGER, logging.WARNING, __file__, 1, "x", None, None)
    assert no_result.filter(other)


def _result(metrics: dict | None, error: Exception | None = None) -> SimpleNamespace:
    return SimpleNamespace(metrics=metrics, error=error)


@pytest.mark.parametrize(
    ("results", "code", "said"),
    [
        ([_result({"trial_id": "a", "epoch": 5})], 0, "tune-app best"),
        (
            [_result({"trial_id": "a", "epoch": 2, "diverged": 1.0}), _result({"trial_id": "b"})],
            0,
            "trial a diverged at epoch 2",
        ),
        (
            [
                _result({"trial_id": "a", "epoch": 2, "diverged": 1.0}),
                _result({}, RuntimeError("x")),
            ],
            1,
            "no trial finished: 1 diverged, 1 failed, of 2",
        ),
        (
            [_result({"trial_id": "a", "epoch": 1, "diverged": 1.0})],
            1,
            "lower the plan's learning rate",
        ),
    ],
)
def test_run_summary_exits_1_when_no_trial_finished(results, code, said, tmp_path, capsys):
    from tune_app.cli.runs import _finish
    from tune_app.runs.storage import locate

    (tmp_path / "tune_app_run.json").write_text("{}")  # the run's folder is still there
    assert _finish(results, locate(str(tmp_path))) == code
    captured = capsys.readouterr()
    assert said in captured.out + captured.err


@pytest.mark.parametrize("argv", [["baseline", "--phase-epochs", "1"], ["best"], ["report"]])
def test_unreachable_storage_is_one_line(argv, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    uri = "s3://bucket/runs"
    full = [*argv, "--storage", uri] if argv[0] == "baseline" else [*argv, f"{uri}/r"]
    assert main(full) == 2
    err = capsys.readouterr().err
    assert f"storage {uri}" in err and "cannot reach http://127.0.0.1:9" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _files(tmp_path) == set()

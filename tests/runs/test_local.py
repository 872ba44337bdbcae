"""In-process continue/resume stay on the checkpoint's own data (failure 3 of issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tune_app.cli import main
from tune_app.training.synthetic import make_synthetic

TINY = ["--phase-epochs", "1", "--stride", "8", "--hidden", "8", "--input-len", "16"]
TINY += ["--output-len", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("local")
    own, other = root / "own.parquet", root / "other.parquet"
    make_synthetic(series=3, length=160, seed=1).to_parquet(own, index=False)
    make_synthetic(series=3, length=160, seed=2).to_parquet(other, index=False)
    run = root / "run"
    assert main(["train", "--data", str(own), *TINY, "--stop-after", "2", "--out", str(run)]) == 0
    return run, own, other


def _continue(model: Path, out: Path, *extra: str) -> list[str]:
    flags = ["--epochs", "1", "--start_lr", "1e-4", "--min_lr", "1e-5"]
    return ["continue", "--model_path", str(model), *flags, "--output_dir", str(out), *extra]


@pytest.mark.parametrize("model", ["checkpoints/epoch_00002", "best_model.pth"])
def test_continue_without_data_trains_on_the_checkpoints_own_file(trained, model, tmp_path, capsys):
    run, own, _ = trained
    assert main(_continue(run / model, tmp_path / "out")) == 0
    config = (tmp_path / "out" / "config.json").read_text()
    assert str(own) in config


@pytest.mark.parametrize(
    "argv",
    [
        lambda run, other, out: _continue(run / "best_model.pth", out, "--data", str(other)),
        lambda run, other, out: [
            "train",
            "--resume",
            str(run / "checkpoints" / "epoch_00002"),
            "--data",
            str(other),
            *TINY,
            "--out",
            str(out),
        ],
    ],
    ids=["continue", "train --resume"],
)
def test_other_data_is_refused_unless_asked_for(trained, argv, tmp_path: Path, capsys):
    run, own, other = trained
    out = tmp_path / "out"
    assert main(argv(run, other, out)) == 2
    err = capsys.readouterr().err
    assert str(own) in err and str(other) in err and "--allow-other-data" in err
    assert not out.exists(), "bad input must not write anything"
    assert main([*argv(run, other, out), "--allow-other-data"]) == 0


def test_train_resume_goes_on_with_the_checkpoints_own_plan(trained, tmp_path: Path, capsys):
    """fresh-20, extra finding of item 2: `train --resume` of a `--phase-epochs 1` checkpoint
    without --phase-epochs ran epochs 3..500 of the seed plan without a word."""
    import json

    run, _, _ = trained
    checkpoint = str(run / "checkpoints" / "epoch_00002")
    capsys.readouterr()
    assert main(["train", "--resume", checkpoint, "--out", str(tmp_path / "own")]) == 0
    out = capsys.readouterr().out
    assert "with its own plan (5 phases of 1 epoch): epochs 3-5" in out, out
    config = json.loads((tmp_path / "own" / "config.json").read_text())
    assert [phase["epochs"] for phase in config["plan"]["phases"]] == [1] * 5
    assert (tmp_path / "own" / "checkpoints" / "epoch_00005").is_dir()
    assert not (tmp_path / "own" / "checkpoints" / "epoch_00006").exists()
    # the same flag as the run: accepted; one that changes the plan: refused, nothing written
    assert (
        main(
            [
                "train",
                "--resume",
                checkpoint,
                "--phase-epochs",
                "1",
                "--out",
                str(tmp_path / "same"),
            ]
        )
        == 0
    )
    for flags in (["--phase-epochs", "3"], ["--set", "phases.2.alpha=0.1"]):
        out_dir = tmp_path / "changed"
        assert main(["train", "--resume", checkpoint, *flags, "--out", str(out_dir)]) == 2
        err = capsys.readouterr().err
        assert "goes on with the plan it was trained with" in err and flags[0] in err, err
        assert "tune-app continue" in err and not out_dir.exists()


def test_a_missing_recorded_data_file_is_named(tmp_path: Path, capsys):
    """fresh-20 item 9: a model whose training file is gone said "no such file; make one
    with make-synthetic"; now it names the recorded file and says to pass --data."""
    data = tmp_path / "gone.parquet"
    make_synthetic(series=3, length=160, seed=1).to_parquet(data, index=False)
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), *TINY, "--stop-after", "2", "--out", str(run)]
    assert main(argv) == 0
    data.unlink()
    checkpoint = run / "checkpoints" / "epoch_00002"
    for argv in (
        ["train", "--resume", str(checkpoint), "--out", str(tmp_path / "r")],
        _continue(checkpoint, tmp_path / "c"),
        ["evaluate", str(run)],
    ):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"was trained on {data}, which is not there now; pass --data" in err, err
        assert "make-synthetic" not in err
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


# a run whose data and trainer settings all differ from the defaults
OWN = ["--output-len", "8", "--stride", "8", "--fill", "ffill", "--batch-size", "16"]
OWN += ["--seed", "7", "--checkpoint-every", "1", "--rank-max-lag", "5", "--dropout", "0.1"]
OWN += ["--phase-epochs", "1", "--hidden", "8", "--input-len", "16"]


@pytest.fixture(scope="module")
def own_settings(trained, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A run with OWN's settings stopped after epoch 2, and the same run uninterrupted."""
    root = tmp_path_factory.mktemp("own")
    _, data, _ = trained
    stopped, whole = root / "stopped", root / "whole"
    argv = ["train", "--data", str(data), *OWN, "--progress-every", "5"]
    assert main([*argv, "--stop-after", "2", "--out", str(stopped)]) == 0
    assert main([*argv, "--out", str(whole)]) == 0
    return stopped, whole


def test_train_resume_continues_the_recorded_run_bit_for_bit(own_settings, tmp_path, capsys):
    """Leftover 1: `train --resume CKPT` without flags took the output length, stride, fill,
    batch size and seed (and the other trainer settings) from the defaults, not from the
    checkpoint: it trained another setup (output_len 24, stride 1, batch 64, seed 0) without a
    word. Now it continues the recorded run exactly: the same metrics, epoch for epoch, as the
    run that was never stopped, and the same settings in its config.json."""
    import json

    import pandas as pd

    stopped, whole = own_settings
    resumed = tmp_path / "resumed"
    checkpoint = str(stopped / "checkpoints" / "epoch_00002")
    assert main(["train", "--resume", checkpoint, "--out", str(resumed)]) == 0
    mine, theirs = (json.loads((d / "config.json").read_text()) for d in (resumed, whole))
    # the components by name, in the checkpoint's order (the run itself took every column)
    assert mine["data"].pop("components") == ["c0", "c1", "c2"] == mine["components"]
    assert theirs["data"].pop("components") is None
    for section in ("plan", "model", "data", "train"):
        assert mine[section] == theirs[section], section
    a, b = (
        pd.read_parquet(d / "metrics.parquet").drop(columns="seconds") for d in (resumed, whole)
    )
    assert len(a) == 5
    pd.testing.assert_frame_equal(a, b)
    # the flags the run was made with, typed again: the same run, accepted
    again = ["train", "--resume", checkpoint, *OWN, "--out", str(tmp_path / "again")]
    assert main(again) == 0


CONTRADICTIONS = [
    (["--output-len", "24"], "--output-len 24 (the checkpoint's: 8)"),
    (["--stride", "1"], "--stride 1 (the checkpoint's: 8)"),
    (["--batch-size", "64"], "--batch-size 64 (the checkpoint's: 16)"),
    (["--seed", "0"], "--seed 0 (the checkpoint's: 7)"),
    (["--checkpoint-every", "0"], "--checkpoint-every 0 (the checkpoint's: 1)"),
    (["--dropout", "0.2"], "--dropout 0.2 (the checkpoint's: 0.1)"),
    (["--component", "c1", "--component", "c0", "--component", "c2"], "'c1', 'c0', 'c2'"),
    (["--phase-epochs", "2"], "--phase-epochs 2 (the checkpoint's: 5 phases of 1 epoch)"),
]


@pytest.mark.parametrize(
    ("flags", "named"), CONTRADICTIONS, ids=[flags[0] for flags, _ in CONTRADICTIONS]
)
def test_train_resume_refuses_a_flag_that_contradicts_the_checkpoint(
    own_settings, flags, named, tmp_path, capsys
):
    """A flag typed on `train --resume` that differs from what the checkpoint recorded is
    refused (exit 2) before anything is written, named with the checkpoint's value, as
    `baseline --resume` refuses one that differs from the run's."""
    stopped, _ = own_settings
    out = tmp_path / "out"
    checkpoint = str(stopped / "checkpoints" / "epoch_00002")
    capsys.readouterr()
    assert main(["train", "--resume", checkpoint, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tune-app: error: --resume: checkpoint {checkpoint} goes on with"), err
    assert named in err and "drop the flag to resume it" in err, err
    assert "Traceback" not in err and not out.exists()


def test_train_resume_compares_a_model_config_file_with_the_checkpoint(
    own_settings, tmp_path, capsys
):
    """--model-config on `train --resume` was silently overridden by the checkpoint's model:
    a file that differs from it is refused (exit 2), one that agrees is accepted."""
    import json

    stopped, _ = own_settings
    checkpoint = str(stopped / "checkpoints" / "epoch_00002")
    differs, agrees = tmp_path / "differs.json", tmp_path / "agrees.json"
    differs.write_text(json.dumps({"model": {"hidden": 32}, "data": {"input_len": 24}}))
    agrees.write_text(
        json.dumps({"model": {"hidden": 8, "dropout": 0.1}, "data": {"input_len": 16}})
    )
    argv = ["train", "--resume", checkpoint, "--model-config"]
    assert main([*argv, str(differs), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert f"--model-config {differs} (the checkpoint's: hidden=8, input_len=16)" in err, err
    assert not (tmp_path / "d").exists()
    assert main([*argv, str(agrees), "--out", str(tmp_path / "a"), "--stop-after", "3"]) == 0

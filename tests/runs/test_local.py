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

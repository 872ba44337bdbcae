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

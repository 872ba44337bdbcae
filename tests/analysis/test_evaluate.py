"""evaluate and generate against an independent recomputation on a small case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import TINY_DATA, train_tiny

from tune_app.analysis.evaluate import dataset_for, evaluate, generate, load_model, naive_forecasts
from tune_app.cli import main
from tune_app.plan.plan import load_plan


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_dataset) -> Path:
    out = tmp_path_factory.mktemp("run")
    result = train_tiny(load_plan(phase_epochs=1), tiny_dataset, out)
    return Path(result.last_checkpoint)


def test_evaluate_matches_an_independent_computation(checkpoint: Path, synthetic_file: Path):
    loaded = load_model(checkpoint)
    data = dataset_for(loaded, str(synthetic_file))
    report = evaluate(loaded, data, "test", season=5)
    x, y = data.test.inputs, data.test.targets
    with torch.no_grad():
        pred = loaded.model(x, y.shape[1]).numpy()
    truth = y.numpy()
    std = data.std
    for i, name in enumerate(data.components):
        error = (pred[..., i] - truth[..., i]) * std[i]
        assert report["scores"]["model"][name]["mse"] == pytest.approx(
            float((error**2).mean()), rel=1e-5
        )
        assert report["scores"]["model"][name]["mae"] == pytest.approx(
            float(np.abs(error).mean()), rel=1e-5
        )
        persistence = (x.numpy()[:, -1:, i] - truth[..., i]) * std[i]
        assert report["scores"]["persistence"][name]["mse"] == pytest.approx(
            float((persistence**2).mean()), rel=1e-5
        )
    assert report["windows"] == len(data.test)


def test_seasonal_naive_repeats_the_last_season(tiny_dataset):
    forecast = naive_forecasts(tiny_dataset.test, season=3)["seasonal_naive"]
    x = tiny_dataset.test.inputs
    assert torch.equal(forecast[:, 0], x[:, -3])
    assert torch.equal(forecast[:, 3], x[:, -3])
    assert torch.equal(forecast[:, 5], x[:, -1])


def test_generate_shape_and_truth(checkpoint: Path, synthetic_file: Path, tmp_path: Path):
    loaded = load_model(checkpoint)
    data = dataset_for(loaded, str(synthetic_file))
    frame, context = generate(loaded, data, "s01", steps=30)
    assert list(frame.columns) == [
        "series_id",
        "step",
        "c0",
        "c1",
        "c2",
        "c0_true",
        "c1_true",
        "c2_true",
    ]
    assert len(frame) == 30 and context.shape == (TINY_DATA.input_len, 3)
    values = data.table.values[1]
    start = int(frame["step"].iloc[0])
    np.testing.assert_allclose(
        frame["c0_true"].to_numpy()[: len(values) - start], values[start:, 0][:30], rtol=1e-6
    )
    out = tmp_path / "gen.parquet"
    assert (
        main(
            [
                "generate",
                str(checkpoint),
                "--data",
                str(synthetic_file),
                "--series",
                "s01",
                "--steps",
                "30",
                "--out",
                str(out),
                "--plot",
                str(tmp_path / "gen.png"),
            ]
        )
        == 0
    )
    assert pd.read_parquet(out).shape == (30, 8)
    assert (tmp_path / "gen.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["generate", "CKPT", "--data", "DATA", "--series", "nope"], "no such series"),
        (["evaluate", "/nonexistent"], "neither a `tune-app best` export nor a checkpoint"),
        (["evaluate", "CKPT", "--data", "OTHER"], "components"),
    ],
)
def test_bad_input_exits_2(
    argv, fragment, checkpoint: Path, synthetic_file: Path, tmp_path: Path, capsys
):
    other = tmp_path / "two.parquet"
    frame = pd.read_parquet(synthetic_file).drop(columns=["c2"])
    frame.to_parquet(other)
    argv = [
        a.replace("CKPT", str(checkpoint))
        .replace("OTHER", str(other))
        .replace("DATA", str(synthetic_file))
        for a in argv
    ]
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_evaluate_cli_json(checkpoint: Path, synthetic_file: Path, capsys):
    assert (
        main(
            ["evaluate", str(checkpoint), "--data", str(synthetic_file), "--json", "--split", "val"]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert set(report["scores"]) == {"model", "persistence", "seasonal_naive"}

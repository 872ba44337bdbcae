"""evaluate and generate against an independent recomputation on a small case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import TINY_DATA, TINY_MODEL, train_tiny

from tune_app.analysis.evaluate import (
    LoadedModel,
    dataset_for,
    evaluate,
    format_scores,
    generate,
    load_model,
    naive_forecasts,
)
from tune_app.cli import main
from tune_app.plan.plan import load_plan
from tune_app.training.data import DataConfig, build_dataset, read_series
from tune_app.training.synthetic import make_synthetic


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


def test_mse_z_matches_an_independent_computation(checkpoint: Path, synthetic_file: Path):
    """mse_z: the MSE of free-running forecasts in the train split's z-units, recomputed here
    from the raw data and the train parts' mean and standard deviation."""
    loaded = load_model(checkpoint)
    data = dataset_for(loaded, str(synthetic_file))
    report = evaluate(loaded, data, "test", season=5)
    frame = pd.read_parquet(synthetic_file)
    train = pd.concat(
        group.sort_values("step").iloc[: int(np.floor(0.7 * len(group)))]
        for _, group in frame.groupby("series_id")
    )
    x, y = data.test.inputs, data.test.targets
    with torch.no_grad():
        pred = loaded.model(x, y.shape[1]).numpy()
    raw_truth = y.numpy() * data.std + data.mean  # the data's units
    raw_pred = pred * data.std + data.mean
    per_component = []
    for i, name in enumerate(data.components):
        mean, std = train[name].mean(), train[name].std(ddof=0)
        z_error = (raw_pred[..., i] - mean) / std - (raw_truth[..., i] - mean) / std
        per_component.append(float((z_error**2).mean()))
        assert report["scores"]["model"][name]["mse_z"] == pytest.approx(
            per_component[-1], rel=1e-4
        )
    assert report["scores"]["model"]["mean"]["mse_z"] == pytest.approx(
        np.mean(per_component), rel=1e-4
    )
    for name in ("persistence", "seasonal_naive"):
        assert set(report["scores"][name]["mean"]) >= {"mse_z", "mse", "mae"}


class Oracle(torch.nn.Module):
    """A forecaster that knows the answers: perfect on every component but the last, where it
    is persistence plus a constant offset of 0.3 z-units (worse than persistence there)."""

    def __init__(self, windows) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.windows = windows

    def forward(self, inputs: torch.Tensor, steps: int) -> torch.Tensor:
        forecast = self.windows.targets.clone()
        forecast[..., -1] = inputs[:, -1:, -1].expand(-1, steps) + 0.3
        return forecast


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_headline_follows_mse_z_whatever_the_units(scale: float, tmp_path: Path):
    """A model that wins on two components and loses on the third, whose units are `scale`
    times larger: in data units the third decides a raw-MSE mean; the headline does not move."""
    frame = make_synthetic(series=3, length=200, components=3, seed=1)
    frame["c2"] = frame["c2"] * scale
    path = tmp_path / "scaled.parquet"
    frame.to_parquet(path, index=False)
    config = DataConfig(input_len=24, output_len=8, stride=4)
    data = build_dataset(read_series(path, config), config)
    loaded = LoadedModel(Oracle(data.test), TINY_MODEL, config, 20, None, "oracle")  # type: ignore[arg-type]
    report = evaluate(loaded, data, "test")
    head = report["headline"]
    assert head["metric"] == "mse_z" and head["beats_on_mean"] is True
    assert head["components_beaten"]["persistence"] == 2 and head["components"] == 3
    assert "beats persistence on 2 of 3" in head["text"]
    scores = report["scores"]
    assert scores["model"]["c2"]["skill"] < 0 < scores["model"]["c0"]["skill"]
    if scale > 1:  # the old raw-unit headline would have said the opposite
        assert scores["model"]["mean"]["mse"] > scores["persistence"]["mean"]["mse"]
    assert head["text"] in format_scores(report)


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
        (["evaluate", "/nonexistent"], "not a `tune-app best` export"),
        (["evaluate", "CKPT", "--data", "OTHER"], "no component column 'c2' (the model was"),
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

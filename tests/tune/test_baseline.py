"""The baseline on Ray Tune: phase-boundary checkpoints, `best` export, same numbers as in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from tune_app.cli import main
from tune_app.training.data import DataConfig, build_dataset, open_series
from tune_app.training.model import ModelConfig, Seq2Seq
from tune_app.training.trainer import evaluate_free

TINY = ["--phase-epochs", "2", "--stride", "4", "--hidden", "16"]


@pytest.fixture(scope="module")
def baseline_run(ray_local, tmp_path_factory: pytest.TempPathFactory) -> Path:
    storage = tmp_path_factory.mktemp("storage")
    assert main(["baseline", *TINY, "--storage", str(storage), "--name", "base"]) == 0
    return storage / "base"


def _trial_dir(run: Path) -> Path:
    (trial,) = [p for p in run.iterdir() if (p / "params.json").exists()]
    return trial


def test_checkpoints_exactly_at_phase_boundaries(baseline_run: Path):
    metas = [
        json.loads(p.read_text())
        for p in sorted(_trial_dir(baseline_run).glob("checkpoint_*/meta.json"))
    ]
    assert [m["epoch"] for m in metas] == [2, 4, 6, 8, 10]
    assert [m["phase"] for m in metas] == [1, 2, 3, 4, 5]


def test_best_exports_five_files_that_reproduce_the_reported_loss(
    baseline_run: Path, tmp_path: Path
):
    out = tmp_path / "best"
    assert main(["best", str(baseline_run), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best_model.pth", "plan.yaml", "config.json", "lineage.json", "metrics.parquet"]
    )
    config = json.loads((out / "config.json").read_text())
    weights = torch.load(out / "best_model.pth", weights_only=True)
    model = Seq2Seq(ModelConfig.from_dict(config["model"]))
    model.load_state_dict(weights)
    data = build_dataset(
        open_series(None, DataConfig.from_dict(config["data"])),
        DataConfig.from_dict(config["data"]),
    )
    assert data.fingerprint == config["data_fingerprint"]
    loss = evaluate_free(
        model, data.val, config["train"]["rank_alpha"], config["train"]["rank_max_lag"]
    )["loss"]
    assert loss == pytest.approx(config["value"], rel=1e-6)
    assert len(pd.read_parquet(out / "metrics.parquet")) == 10
    assert json.loads((out / "lineage.json").read_text())["segments"][0]["from_epoch"] == 1


def test_tune_trial_gives_identical_metrics_to_in_process_training(
    baseline_run: Path, tmp_path: Path
):
    assert main(["train", *TINY, "--out", str(tmp_path / "local"), "--progress-every", "100"]) == 0
    local = pd.read_parquet(tmp_path / "local" / "metrics.parquet")
    tuned = pd.DataFrame(
        [
            json.loads(line)
            for line in (_trial_dir(baseline_run) / "result.json").read_text().splitlines()
        ]
    )
    columns = [c for c in local.columns if c != "seconds"]
    assert len(tuned) == len(local) == 10
    assert (tuned["training_iteration"] == tuned["epoch"]).all()
    pd.testing.assert_frame_equal(local[columns], tuned[columns].astype(local[columns].dtypes))


def test_second_run_with_same_name_is_refused(baseline_run: Path, capsys):
    code = main(["baseline", *TINY, "--storage", str(baseline_run.parent), "--name", "base"])
    assert code == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["best", "/nonexistent/run"], "no such run directory"),
        (["baseline", "--address", "127.0.0.1:1", *TINY], "no Ray cluster answers"),
        (["baseline", "--storage", "foo://bucket/x", *TINY], "not a storage URI"),
        (["baseline", "--resume", *TINY], "--name"),
    ],
)
def test_bad_launches_exit_2(argv, fragment, capsys, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_best_on_a_run_without_checkpoints(tmp_path: Path, capsys):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "tune_app_run.json").write_text(json.dumps({"kind": "baseline"}))
    assert main(["best", str(run)]) == 2
    assert "no trial has reported" in capsys.readouterr().err
    (tmp_path / "notarun").mkdir()
    assert main(["best", str(tmp_path / "notarun")]) == 2
    assert "not a tune_app run" in capsys.readouterr().err


def test_a_ray_run_records_the_users_data_file_absolute(
    ray_local, tmp_path: Path, monkeypatch, capsys
):
    """fresh-20 item 9: trial checkpoints recorded the data file inside Ray's working
    directory, exports the path relative to the launch folder; `evaluate` without --data then
    failed from any folder, telling the user to make a file with make-synthetic."""
    from tune_app.training.synthetic import make_synthetic

    launch, elsewhere = tmp_path / "launch", tmp_path / "elsewhere"
    launch.mkdir()
    elsewhere.mkdir()
    data = launch / "syn.parquet"
    make_synthetic(series=3, length=120).to_parquet(data)
    monkeypatch.chdir(launch)
    argv = ["baseline", "--data", "syn.parquet", "--phase-epochs", "1", "--stride", "8"]
    argv += ["--hidden", "8", "--input-len", "16", "--output-len", "8"]
    assert main([*argv, "--storage", str(tmp_path / "runs"), "--name", "rel"]) == 0
    run = tmp_path / "runs" / "rel"
    assert main(["best", str(run), "--out", "ex"]) == 0
    recorded = [json.loads((run / "tune_app_run.json").read_text())["spec"]["data_path"]]
    recorded += [
        json.loads(meta.read_text())["data_path"] for meta in _trial_dir(run).glob("*/meta.json")
    ]
    recorded.append(json.loads((launch / "ex" / "config.json").read_text())["data_path"])
    assert set(recorded) == {str(data.resolve())}, recorded
    monkeypatch.chdir(elsewhere)
    checkpoint = str(sorted(_trial_dir(run).glob("checkpoint_*"))[-1])
    for model in (checkpoint, str(launch / "ex")):
        assert main(["evaluate", model]) == 0, capsys.readouterr().err
    data.unlink()
    capsys.readouterr()
    assert main(["evaluate", str(launch / "ex")]) == 2
    err = capsys.readouterr().err
    assert f"was trained on {data.resolve()}, which is not there now; pass --data" in err, err

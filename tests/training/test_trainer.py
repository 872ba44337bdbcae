"""The epoch loop: checkpoints at phase boundaries, exact resume, learning, divergence."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pandas as pd
import pytest
import torch
from tiny import train_tiny

from tune_app.errors import DivergedError, InputError
from tune_app.plan.plan import load_plan
from tune_app.training.checkpoint import CheckpointError, load_state
from tune_app.training.loss import combined_loss
from tune_app.training.model import ModelConfig

PLAN = load_plan(phase_epochs=2)


def _strip(history):  # type: ignore[no-untyped-def]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_checkpoints_at_phase_boundaries_and_metrics(tiny_dataset, tmp_path: Path):
    seen = []
    result = train_tiny(
        PLAN,
        tiny_dataset,
        tmp_path,
        report=lambda m, c: seen.append((m, c)),
    )
    assert [int(m["epoch"]) for m, _ in seen] == list(range(1, 11))
    written = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert written == [f"epoch_{e:05d}" for e in (2, 4, 6, 8, 10)]
    for name in written:
        meta = json.loads((tmp_path / "checkpoints" / name / "meta.json").read_text())
        assert meta["epoch"] == int(name.split("_")[1])
        assert meta["data_fingerprint"] == tiny_dataset.fingerprint
    assert [s.checkpoint_due for _, s in seen] == [e % 2 == 0 for e in range(1, 11)]
    needed = {
        "epoch",
        "phase",
        "train_loss",
        "val_loss",
        "val_free_loss",
        "val_free_mse",
        "mse",
        "temporal",
        "val_c0",
        "val_c1",
        "val_c2",
        "gap",
        "lr",
        "teacher_forcing",
        "alpha",
        "epochs_since_best",
        "seconds",
    }
    assert needed <= set(seen[0][0])
    frame = pd.read_parquet(tmp_path / "metrics.parquet")
    assert list(frame["epoch"]) == list(range(1, 11))
    assert result.history[-1]["phase"] == 5


def test_resume_is_exact(tiny_dataset, tmp_path: Path):
    straight = train_tiny(PLAN, tiny_dataset, tmp_path / "a", stop_after=6)
    first = train_tiny(PLAN, tiny_dataset, tmp_path / "b", stop_after=4)
    assert first.last_checkpoint is not None
    resumed = train_tiny(
        PLAN,
        tiny_dataset,
        tmp_path / "b",
        resume=first.last_checkpoint,
        stop_after=6,
    )
    assert _strip(resumed.history) == _strip(straight.history)
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_train_cli_learns_beyond_persistence(tmp_path: Path):
    """`tune-app train --phase-epochs 2` on the built-in data: all 5 phases, checkpoints at
    2..10, and free-running validation clearly below a persistence forecast."""
    from tune_app.cli import main
    from tune_app.training.data import DataConfig, build_dataset, open_series

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--phase-epochs",
            "2",
            "--stride",
            "2",
            "--hidden",
            "32",
            "--out",
            str(out),
            "--progress-every",
            "5",
        ]
    )
    assert code == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"epoch_{e:05d}" for e in (2, 4, 6, 8, 10)
    ]
    history = pd.read_parquet(out / "metrics.parquet")
    assert sorted(set(history["phase"])) == [1, 2, 3, 4, 5]
    val = build_dataset(open_series(None, DataConfig(stride=2)), DataConfig(stride=2)).val
    persistence = combined_loss(
        val.inputs[:, -1:, :].expand_as(val.targets), val.targets, 0.6, 20
    ).total.item()
    assert history["val_free_loss"].min() < 0.8 * persistence, (
        history["val_free_loss"].min(),
        persistence,
    )
    assert (out / "best_model.pth").is_file() and (out / "config.json").is_file()


def test_divergence_stops_with_last_good_checkpoint(tiny_dataset, tmp_path: Path):
    plan = load_plan(None, ["phases.2.lr=1.0e+30", "phases.2.grad_clip=1.0e+30"], phase_epochs=2)
    with pytest.raises(DivergedError) as info:
        train_tiny(plan, tiny_dataset, tmp_path)
    assert info.value.epoch in (3, 4)
    assert info.value.last_checkpoint is not None and info.value.last_checkpoint.endswith(
        "epoch_00002"
    )
    load_state(info.value.last_checkpoint)  # the good one is intact


def test_resume_refuses_another_model(tiny_dataset, tmp_path: Path):
    first = train_tiny(PLAN, tiny_dataset, tmp_path, stop_after=2)
    with pytest.raises(InputError, match="different model"):
        train_tiny(
            PLAN,
            tiny_dataset,
            tmp_path,
            model=ModelConfig(components=3, hidden=24),
            resume=first.last_checkpoint,
        )


def test_corrupt_and_malicious_checkpoints_are_refused(tiny_dataset, tmp_path: Path):
    first = train_tiny(PLAN, tiny_dataset, tmp_path, stop_after=2)
    state_file = Path(first.last_checkpoint) / "state.pt"
    data = state_file.read_bytes()
    state_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state(first.last_checkpoint)
    state_file.write_bytes(b"")  # what a full disk leaves: EOFError without a message
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state(first.last_checkpoint)

    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("this would run code",))

    torch.save({"format": 1, "model": Evil()}, state_file)
    with pytest.raises(CheckpointError, match="could run code"):
        load_state(first.last_checkpoint)
    state_file.write_bytes(pickle.dumps({"format": 1}))
    with pytest.raises(CheckpointError):
        load_state(first.last_checkpoint)

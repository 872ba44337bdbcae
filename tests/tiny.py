"""Tiny shapes shared by the tests, so the default suite stays fast."""

from tune_app.data import DataConfig
from tune_app.model import ModelConfig
from tune_app.trainer import TrainConfig

TINY_DATA = DataConfig(input_len=16, output_len=8, stride=4)
TINY_MODEL = ModelConfig(components=3, hidden=16)
TINY_TRAIN = TrainConfig(seed=0, batch_size=32)

# a tiny `tune-app train` (5 one-epoch phases), for CLI tests that need a checkpoint
TRAIN_FLAGS = ["--phase-epochs", "1", "--hidden", "16", "--stride", "8", "--progress-every", "5"]


def export_train_checkpoint(run_dir, checkpoint, out):  # type: ignore[no-untyped-def]
    """Export a `tune-app train` checkpoint exactly as `tune-app best` exports a run's."""
    import json

    from tune_app.checkpoint import read_meta
    from tune_app.results import CheckpointRecord, Run, TrialRecord, export_checkpoint
    from tune_app.storage import locate

    spec = json.loads((run_dir / "config.json").read_text())
    run = Run(locate(run_dir), {"kind": "train", "spec": spec}, [])
    trial = TrialRecord("train", locate(run_dir), {}, [])
    return export_checkpoint(
        run, trial, CheckpointRecord(locate(checkpoint), read_meta(checkpoint)), out
    )

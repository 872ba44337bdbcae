"""Per-epoch reporters for in-process runs: a progress line, TensorBoard, several at once."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from tune_app.training.monitors import Callback, EpochState

__all__ = ["ProgressPrinter", "TensorBoardWriter", "progress_line"]


def progress_line(metrics: dict[str, float], total: int) -> str:
    return (
        f"epoch {int(metrics['epoch']):>4}/{total} phase {int(metrics['phase'])} "
        f"lr {metrics['lr']:.2e} tf {metrics['teacher_forcing']:.3f} alpha {metrics['alpha']:.2f} "
        f"train {metrics['train_loss']:.4f} val {metrics['val_loss']:.4f} "
        f"free {metrics['val_free_loss']:.4f} gap {metrics['gap']:+.4f} "
        f"since-best {int(metrics['epochs_since_best'])}"
    )


class ProgressPrinter(Callback):
    """A line every `every` epochs and at every checkpoint, with the time per epoch."""

    def __init__(self, total: int, every: int = 1, stream: TextIO | None = None) -> None:
        self.total, self.every, self.stream = total, max(1, every), stream
        self.started = time.perf_counter()

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        epoch = int(metrics["epoch"])
        if epoch % self.every and not state.checkpoint_due and epoch != self.total:
            return
        note = "  checkpoint" if state.checkpoint_due else ""
        print(
            f"{progress_line(metrics, self.total)} {metrics['seconds']:.2f}s{note}",
            file=self.stream or sys.stdout,
            flush=True,
        )


class TensorBoardWriter(Callback):
    """Every metric as a scalar at step = epoch (`tensorboard --logdir DIR`)."""

    def __init__(self, logdir: Path) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        epoch = int(metrics["epoch"])
        for key, value in metrics.items():
            if key != "epoch":
                self.writer.add_scalar(key, float(value), epoch)
        if state.checkpoint_due:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()

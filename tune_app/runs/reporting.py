"""Per-epoch reporters for in-process runs: a progress bar (or lines) with the time left,
TensorBoard, several at once."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from tune_app.training.metrics import BEST_VAL_FREE_LOSS, EPOCH, TRAIN_LOSS, VAL_FREE_LOSS, VAL_LOSS
from tune_app.training.monitors import Callback, EpochState

__all__ = ["ProgressPrinter", "TensorBoardWriter", "discard_stdout", "progress_line"]


def discard_stdout() -> None:
    """Point stdout at the null device, after its reader closed the pipe (`| head`): later
    prints, and the interpreter's final flush, then find no closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def progress_line(metrics: dict[str, float], total: int) -> str:
    return (
        f"epoch {int(metrics[EPOCH]):>4}/{total} phase {int(metrics['phase'])} "
        f"lr {metrics['lr']:.2e} tf {metrics['teacher_forcing']:.3f} alpha {metrics['alpha']:.2f} "
        f"train {metrics[TRAIN_LOSS]:.4f} val {metrics[VAL_LOSS]:.4f} "
        f"free {metrics[VAL_FREE_LOSS]:.4f} gap {metrics['gap']:+.4f} "
        f"since-best {int(metrics['epochs_since_best'])}"
    )


class ProgressPrinter(Callback):
    """Progress of an in-process run with the time left.

    On a terminal: a tqdm bar (epochs done, rate, time left) whose postfix holds the phase, lr,
    val_free_loss and the best so far, and a line at every checkpoint. Elsewhere (a log file,
    CI): `progress_line` every `every` epochs, at every checkpoint and at the end, each with the
    time left. The clock starts at the first epoch reported, so a resumed run's estimate counts
    only the epochs trained now.
    """

    def __init__(self, total: int, every: int = 1, stream: TextIO | None = None) -> None:
        self.total, self.every, self.stream = total, max(1, every), stream
        self.started = time.perf_counter()
        self.first: int | None = None
        self.bar: tqdm | None = None
        self.reader_left = False  # stdout's reader closed the pipe (`| head`): print no more

    def _left(self, epoch: int) -> str:
        assert self.first is not None
        done = epoch - self.first + 1
        rate = (time.perf_counter() - self.started) / max(done, 1)
        return tqdm.format_interval(rate * (self.total - epoch))

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        epoch = int(metrics[EPOCH])
        if self.first is None:
            self.first, self.started = epoch, time.perf_counter() - float(metrics["seconds"])
            terminal = self.stream or sys.stderr  # tqdm's stream; lines go to stdout
            if terminal.isatty():
                self.bar = tqdm(
                    total=self.total,
                    initial=epoch - 1,
                    unit="epoch",
                    file=terminal,
                    dynamic_ncols=True,
                )
        if self.bar is not None:
            self.bar.update(epoch - self.bar.n)
            self.bar.set_postfix_str(
                f"phase {int(metrics['phase'])} lr {metrics['lr']:.1e} "
                f"val_free {metrics[VAL_FREE_LOSS]:.4f} best {metrics[BEST_VAL_FREE_LOSS]:.4f}"
            )
            if state.checkpoint_due:
                self.bar.write(f"epoch {epoch}: checkpoint", file=self.bar.fp)
            if epoch >= self.total:
                self.bar.close()
            return
        if epoch % self.every and not state.checkpoint_due and epoch != self.total:
            return
        if self.reader_left:
            return
        note = "  checkpoint" if state.checkpoint_due else ""
        try:
            print(
                f"{progress_line(metrics, self.total)} {metrics['seconds']:.2f}s "
                f"left {self._left(epoch)}{note}",
                file=self.stream or sys.stdout,
                flush=True,
            )
        except BrokenPipeError:
            # `tune-app train ... | head`: the reader wanted fewer lines, not less training;
            # the run goes on to its end, and what it would print goes nowhere
            self.reader_left = True
            discard_stdout()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TensorBoardWriter(Callback):
    """Every metric as a scalar at step = epoch (`tensorboard --logdir DIR`)."""

    def __init__(self, logdir: Path) -> None:
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(str(logdir))

    def on_epoch_end(self, metrics: dict[str, float], state: EpochState) -> None:
        epoch = int(metrics[EPOCH])
        for key, value in metrics.items():
            if key != EPOCH:
                self.writer.add_scalar(key, float(value), epoch)
        if state.checkpoint_due:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()

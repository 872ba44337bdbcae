"""In-process progress: a bar with the time left on a terminal, lines with it elsewhere."""

from __future__ import annotations

import io
import re

import pytest

from tune_app.plan.plan import load_plan
from tune_app.runs.reporting import ProgressPrinter
from tune_app.training.monitors import EpochState

PLAN = load_plan(phase_epochs=5)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def metrics(epoch: int) -> dict[str, float]:
    return {
        "epoch": epoch,
        "phase": 1 + (epoch - 1) // 5,
        "lr": 1e-3,
        "teacher_forcing": 0.5,
        "alpha": 0.6,
        "train_loss": 0.5,
        "val_loss": 0.6,
        "val_free_loss": 0.7,
        "gap": 0.1,
        "epochs_since_best": 0,
        "best_val_free_loss": 0.65,
        "seconds": 0.01,
    }


def report(printer: ProgressPrinter, epoch: int, checkpoint: bool) -> None:
    """One epoch as the trainer hands it to its callbacks."""
    printer.on_epoch_end(metrics(epoch), EpochState(epoch, PLAN, [], checkpoint, dict))


@pytest.mark.parametrize("first", [1, 4])  # a fresh run, and one resumed after epoch 3
def test_terminal_gets_a_bar_with_the_time_left(first: int):
    stream = Terminal()
    printer = ProgressPrinter(total=10, stream=stream)
    for epoch in range(first, 11):
        report(printer, epoch, checkpoint=epoch % 5 == 0)
    printer.close()
    text = stream.getvalue()
    assert "10/10" in text and "<00:00" in text  # tqdm's elapsed<left
    assert "val_free 0.7000 best 0.6500" in text
    assert "epoch 5: checkpoint" in text and "epoch 10: checkpoint" in text


def test_log_gets_lines_every_n_epochs_with_the_time_left():
    stream = io.StringIO()
    printer = ProgressPrinter(total=10, every=4, stream=stream)
    for epoch in range(1, 11):
        report(printer, epoch, checkpoint=epoch == 5)
    lines = stream.getvalue().splitlines()
    assert [int(re.match(r"epoch +(\d+)/10", line)[1]) for line in lines] == [4, 5, 8, 10]
    assert all(re.search(r" left \d\d:\d\d", line) for line in lines)
    assert "\r" not in stream.getvalue()

"""What a person watching a Ray Tune run sees: one short row per trial, and short trial folders.

Ray's own `CLIReporter` prints the whole trial config (our run spec, ~2,000 characters) in its
"Current best trial" line and truncated dicts in its parameter columns. `TrialTable` is a
`ray.tune.ProgressReporter` (Ray's public reporter API) that prints a header line and one row
per member instead: member number, control or not, status, epoch/total, phase, lr, teacher
forcing, alpha, val_free_loss and the best so far. The parameters stay in the run's records
(`params.json`, the run manifest, checkpoints' meta.json), not in folder names: `trial_dirname`
names a search member's folder `member-02` and any other trial's `trial-03`.
"""

from __future__ import annotations

import math
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ray import tune

from tune_app.runs.records import ARM_KEY, CAPACITY_KEY, MEMBER_KEY, SPEC_KEY

__all__ = ["TrialTable", "trial_dirname", "trial_number"]

# (title, width): the table's columns; each row stays well under 120 characters
MEMBER_COLUMNS = (
    ("member", 9),
    ("role", 7),
    ("status", 10),
    ("epoch", 9),
    ("phase", 5),
    ("lr", 8),
    ("tf", 5),
    ("alpha", 5),
    ("val_free", 9),
    ("best", 9),
)
HEADER_WIDTH = 120  # the header (elapsed, states, the scheduler's and Ray's status) wraps here
CAPACITY_SHOWN = ("hidden", "layers", "cell", "dropout", "input_len")


def trial_number(trial: Any) -> int | None:
    """The trial's counter in its experiment: the digits after the last `_` of Ray's trial id
    (`df039_00002` -> 2), or None for an id of another shape."""
    tail = str(trial.trial_id).rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def trial_dirname(trial: Any) -> str:
    """The trial's folder name (Ray's `TuneConfig(trial_dirname_creator=...)`): `member-02` for a
    search member (its index in the population), `B-1003` for a compare trial (its plan's label
    and seed), `trial-03` for any other trial (its counter), the bare trial id if neither is
    known. At most 60 characters, no `/`.

    Args:
        trial: a `ray.tune.experiment.Trial` (only `config` and `trial_id` are read).

    Returns:
        The folder name.
    """
    member = (trial.config or {}).get(MEMBER_KEY)
    if isinstance(member, dict) and "index" in member:
        return f"member-{int(member['index']):02d}"
    arm = (trial.config or {}).get(ARM_KEY)
    if isinstance(arm, dict) and "label" in arm:
        return f"{arm['label']}-{arm.get('seed', '')}".replace("/", "-")[:60]
    number = trial_number(trial)
    name = f"trial-{number:02d}" if number is not None else f"trial-{trial.trial_id}"
    return name.replace("/", "-")[:60]


def _total_epochs(config: dict[str, Any]) -> int | None:
    phases = (config.get(SPEC_KEY) or {}).get("plan", {}).get("phases") or []
    try:
        return sum(int(phase["epochs"]) for phase in phases) or None
    except (KeyError, TypeError, ValueError):
        return None


def _number(value: Any, spec: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if math.isinf(value):
        return "inf"
    return format(value, spec)


def _capacity_text(capacity: dict[str, Any]) -> str:
    def short(value: Any) -> Any:
        return round(value, 3) if isinstance(value, float) else value

    return " ".join(f"{k}={short(capacity[k])}" for k in CAPACITY_SHOWN if k in capacity)


def trial_row(trial: Any) -> list[str]:
    """One row of the table: the cells of `MEMBER_COLUMNS` (plus the capacity, if any)."""
    config = trial.config or {}
    result = trial.last_result or {}
    member = config.get(MEMBER_KEY) or {}
    total = _total_epochs(config)
    epoch = result.get("epoch")
    epochs = f"{int(epoch) if isinstance(epoch, int | float) else 0}/{total or '?'}"
    cells = [
        trial_dirname(trial),
        "control" if member.get("control") else ("search" if member else ""),
        str(trial.status),
        epochs,
        _number(result.get("phase"), ".0f"),
        _number(result.get("lr"), ".1e"),
        _number(result.get("teacher_forcing"), ".2f"),
        _number(result.get("alpha"), ".2f"),
        _number(result.get("val_free_loss"), ".4f"),
        _number(result.get("best_val_free_loss"), ".4f"),
    ]
    capacity = config.get(CAPACITY_KEY)
    if isinstance(capacity, dict):
        cells.append(_capacity_text(capacity))
    return cells


def _line(cells: Sequence[str]) -> str:
    widths = [w for _, w in MEMBER_COLUMNS]
    head = zip(cells[: len(widths)], widths, strict=True)
    fixed = [f"{c:<{w}}" if i < 3 else f"{c:>{w}}" for i, (c, w) in enumerate(head)]
    return "  ".join(fixed + list(cells[len(widths) :])).rstrip()


def render(trials: Sequence[Any], elapsed: float, sys_info: Sequence[str] = ()) -> str:
    """The status block: one header line, the column titles, one row per trial (by folder name).

    Args:
        trials: Ray `Trial`s.
        elapsed: seconds since the run started.
        sys_info: Ray's status strings (scheduler, resources), each put on one line.

    Returns:
        The block, without a trailing newline. The header is wrapped (never cut) at
        `HEADER_WIDTH`, its continuation lines indented.
    """
    counts: dict[str, int] = {}
    for trial in trials:
        counts[str(trial.status)] = counts.get(str(trial.status), 0) + 1
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    extra = [
        " ".join(line.split()).removeprefix("Logical resource usage: ")
        for line in sys_info
        if line and line.strip()
    ]
    minutes, seconds = divmod(int(elapsed), 60)
    header = " | ".join(
        [f"== {minutes:02d}:{seconds:02d} elapsed: {len(trials)} trial(s), {states}", *extra]
    )
    titles = [title for title, _ in MEMBER_COLUMNS]
    if any(isinstance((t.config or {}).get(CAPACITY_KEY), dict) for t in trials):
        titles.append("capacity")
    rows = sorted((trial_row(t) for t in trials), key=lambda cells: cells[0])
    wrapped = textwrap.wrap(header, HEADER_WIDTH, subsequent_indent="   ", break_on_hyphens=False)
    return "\n".join([*wrapped, _line(titles), *(_line(r)[:160] for r in rows)])


class TrialTable(tune.ProgressReporter):
    """Ray Tune's progress output for tune_app runs: `render`'s block every `every` seconds
    when something changed, and once at the end.

    Args:
        every: least seconds between two blocks.
        stream: where to print (default stdout).
    """

    def __init__(self, every: float = 15.0, stream: TextIO | None = None) -> None:
        self.every, self.stream = every, stream
        self.started = time.time()
        self.last_time = 0.0
        self.last_rows: list[list[str]] | None = None

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.started = start_time or time.time()

    def should_report(self, trials: list[Any], done: bool = False) -> bool:
        if done:
            return True
        if time.time() - self.last_time < self.every:
            return False
        rows = [trial_row(t) for t in trials]
        return rows != self.last_rows

    def report(self, trials: list[Any], done: bool, *sys_info: str) -> None:
        self.last_time, self.last_rows = time.time(), [trial_row(t) for t in trials]
        block = render(trials, time.time() - self.started, sys_info)
        print(block, file=self.stream or sys.stdout, flush=True)

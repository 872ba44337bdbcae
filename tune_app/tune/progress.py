"""What a person watching a Ray Tune run sees: one short row per trial, and short trial folders.

Ray's own `CLIReporter` prints the whole trial config (our run spec, ~2,000 characters) in its
"Current best trial" line and truncated dicts in its parameter columns. `TrialTable` is a
`ray.tune.ProgressReporter` (Ray's public reporter API) that prints a header line and one row
per trial instead: its name (as wide as the longest), its role (control, search or a compare or
certify arm), status, epoch/total, phase, lr, teacher
forcing, alpha, val_free_loss and the best so far. The parameters stay in the run's records
(`params.json`, the run manifest, checkpoints' meta.json), not in folder names: `trial_dirname`
names a search member's folder `member-02` and any other trial's `trial-03`.

While the machine is too busy for the trials (other processes take the CPUs they asked for),
the header says so: each trial on the CPU reports `cpu_share`, the CPU seconds its worker got
per second of wall time (`CpuShare`, fed by tune/trainable.py at every epoch) over its last
`CPU_SHARE_WINDOW_S` seconds or more, and since its start until it has run that long, so the
note can show from the first epoch's timing and does not flicker with single epochs (one that
writes a checkpoint, say). When the running trials' median is under half of what they asked
for, the header names it, with the run's epochs per minute now against its first minutes'
(`Pace`) once those are known.
"""

from __future__ import annotations

import collections
import math
import statistics
import sys
import textwrap
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ray import tune

from tune_app.runs.records import ARM_KEY, CAPACITY_KEY, MEMBER_KEY, SPEC_KEY
from tune_app.training.metrics import BEST_VAL_FREE_LOSS, EPOCH, VAL_FREE_LOSS

__all__ = [
    "CPU_SHARE",
    "CpuShare",
    "Pace",
    "TrialTable",
    "busy_note",
    "trial_dirname",
    "trial_number",
]

CPU_SHARE = "cpu_share"  # a CPU trial's result key: CPU seconds per wall second (`CpuShare`)
CPU_SHARE_WINDOW_S = 30.0  # the least span `cpu_share` is measured over, once a trial has run it
BUSY_SHARE = 0.5  # under this share of the CPUs a trial asked for, the machine is too busy
PACE_WINDOW_S = 120.0  # "now" and "the first minutes" of `Pace`

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
ROW_WIDTH = 160  # a row is cut here (its capacity text), more by as much as a long name widens it
HEADER_WIDTH = 120  # the header (elapsed, states, the scheduler's and Ray's status) wraps here
CAPACITY_SHOWN = ("hidden", "layers", "cell", "dropout", "input_len")


def trial_number(trial: Any) -> int | None:
    """The trial's counter in its experiment, from 0: the digits after the last `_` of Ray's
    trial id (`df039_00002` -> 2: Ray's BasicVariantGenerator numbers its trials so), else the
    number that starts its experiment tag less one (`3_hidden=32,...` -> 2: a searcher's trial,
    such as Optuna's in `tune-app capacity`, has a bare id `fe918ae6` and a tag Ray's
    SearchGenerator counts from 1), or None when neither says."""
    tail = str(trial.trial_id).rsplit("_", 1)[-1]
    if "_" in str(trial.trial_id) and tail.isdigit():
        return int(tail)
    head = str(getattr(trial, "experiment_tag", "") or "").split("_", 1)[0]
    return int(head) - 1 if head.isdigit() and int(head) >= 1 else None


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


def _arm_role(config: dict[str, Any]) -> str:
    """A compare or certify trial's role: `arm` (its name says which, and the seed); "" for
    any other trial."""
    return "arm" if isinstance(config.get(ARM_KEY), dict) else ""


def trial_row(trial: Any) -> list[str]:
    """One row of the table: the cells of `MEMBER_COLUMNS` (plus the capacity, if any)."""
    config = trial.config or {}
    result = trial.last_result or {}
    member = config.get(MEMBER_KEY) or {}
    total = _total_epochs(config)
    epoch = result.get(EPOCH)
    epochs = f"{int(epoch) if isinstance(epoch, int | float) else 0}/{total or '?'}"
    cells = [
        trial_dirname(trial),
        "control" if member.get("control") else ("search" if member else _arm_role(config)),
        str(trial.status),
        epochs,
        _number(result.get("phase"), ".0f"),
        _number(result.get("lr"), ".1e"),
        _number(result.get("teacher_forcing"), ".2f"),
        _number(result.get("alpha"), ".2f"),
        _number(result.get(VAL_FREE_LOSS), ".4f"),
        _number(result.get(BEST_VAL_FREE_LOSS), ".4f"),
    ]
    capacity = config.get(CAPACITY_KEY)
    if isinstance(capacity, dict):
        cells.append(_capacity_text(capacity))
    return cells


def _widths(rows: Sequence[Sequence[str]]) -> list[int]:
    """The columns' widths for these rows: `MEMBER_COLUMNS`'s, the first widened to the
    longest trial name (a compare or certify arm's label and seed, `no-grad-clip-scale-1000-3`,
    up to `trial_dirname`'s 60 characters), so every later column starts where its title does."""
    widths = [w for _, w in MEMBER_COLUMNS]
    widths[0] = max([widths[0], *(len(row[0]) for row in rows)])
    return widths


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    head = zip(cells[: len(widths)], widths, strict=True)
    fixed = [f"{c:<{w}}" if i < 3 else f"{c:>{w}}" for i, (c, w) in enumerate(head)]
    return "  ".join(fixed + list(cells[len(widths) :])).rstrip()


# What Ray's FIFO scheduler (a baseline, compare, certify) says of itself in every status:
# nothing a user acts on, so the header leaves it out.
FIFO_NOTE = "Using FIFO scheduling algorithm."


def render(
    trials: Sequence[Any], elapsed: float, sys_info: Sequence[str] = (), note: str | None = None
) -> str:
    """The status block: one header line, the column titles, one row per trial (by folder name).

    Args:
        trials: Ray `Trial`s.
        elapsed: seconds since the run started.
        sys_info: Ray's status strings (scheduler, resources), each put on one line.
        note: said after the states (`busy_note`), if any.

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
        if line and line.strip() and line.strip() != FIFO_NOTE
    ]
    minutes, seconds = divmod(int(elapsed), 60)
    header = " | ".join(
        [
            f"== {minutes:02d}:{seconds:02d} elapsed: {len(trials)} trial(s), {states}",
            *([note] if note else []),
            *extra,
        ]
    )
    titles = [title for title, _ in MEMBER_COLUMNS]
    if any(isinstance((t.config or {}).get(CAPACITY_KEY), dict) for t in trials):
        titles.append("capacity")
    rows = sorted((trial_row(t) for t in trials), key=lambda cells: cells[0])
    widths = _widths(rows)
    cut = ROW_WIDTH + widths[0] - MEMBER_COLUMNS[0][1]  # the capacity's text is cut, not a name
    wrapped = textwrap.wrap(header, HEADER_WIDTH, subsequent_indent="   ", break_on_hyphens=False)
    return "\n".join([*wrapped, _line(titles, widths), *(_line(r, widths)[:cut] for r in rows)])


class Pace:
    """The run's epochs per minute, all trials together: over the last `window_s` seconds, and
    over the first `window_s` seconds after its first epoch.

    Args:
        window_s: the length of both spans, seconds.
    """

    def __init__(self, window_s: float = PACE_WINDOW_S) -> None:
        self.window_s = window_s
        self.epochs: dict[str, float] = {}  # each trial's last epoch seen
        self.samples: list[tuple[float, float]] = []  # (time, epochs done so far)

    def add(self, trials: Sequence[Any], when: float) -> None:
        """Count the epochs the trials reported since the last call (a trial restored to an
        earlier epoch counts from there again), at time `when` (seconds)."""
        done = self.samples[-1][1] if self.samples else 0.0
        for trial in trials:
            epoch = (trial.last_result or {}).get(EPOCH)
            if not isinstance(epoch, int | float) or isinstance(epoch, bool):
                continue
            before = self.epochs.get(str(trial.trial_id))
            if before is not None:
                done += max(0.0, float(epoch) - before)
            self.epochs[str(trial.trial_id)] = float(epoch)
        if not self.samples or done > self.samples[-1][1]:
            self.samples.append((when, done))

    def _done_at(self, when: float) -> float:
        return max((done for at, done in self.samples if at <= when), default=0.0)

    def first(self) -> float | None:
        """Epochs per minute over the first window after the first epoch; None before its end."""
        if len(self.samples) < 2:
            return None
        start = self.samples[0][0]
        if self.samples[-1][0] < start + self.window_s:
            return None
        return (self._done_at(start + self.window_s) - self.samples[0][1]) * 60 / self.window_s

    def now(self, when: float) -> float | None:
        """Epochs per minute over the last window up to `when`; None until one has passed."""
        if not self.samples or when - self.samples[0][0] < 2 * self.window_s:
            return None
        return (self._done_at(when) - self._done_at(when - self.window_s)) * 60 / self.window_s


class CpuShare:
    """A trial's `cpu_share`: the CPU seconds its worker process got per second of wall time,
    over the last `window_s` seconds or a little more (from the newest epoch's end at least
    that old), or since the trial started while it has run less than that. So the first
    epoch's timing gives the first share, and one epoch slower or faster than the rest
    (a checkpoint written, a pause to collect garbage) moves it by its part of the window only.

    Args:
        cpu: the process's CPU seconds at the start (`time.process_time()`).
        wall: the wall clock at the start, seconds (`time.perf_counter()`).
        window_s: the least span of a share, once the trial has run that long.
    """

    def __init__(self, cpu: float, wall: float, window_s: float = CPU_SHARE_WINDOW_S) -> None:
        self.window_s = window_s
        self.marks: collections.deque[tuple[float, float]] = collections.deque([(cpu, wall)])

    def add(self, cpu: float, wall: float) -> float:
        """The share up to now, an epoch having ended.

        Args:
            cpu: the process's CPU seconds now.
            wall: the wall clock now, seconds.

        Returns:
            CPU seconds per wall second over the window (1.0: a whole core all the time).
        """
        while len(self.marks) > 1 and wall - self.marks[1][1] >= self.window_s:
            self.marks.popleft()  # the next mark is old enough to start the window
        first_cpu, first_wall = self.marks[0]
        self.marks.append((cpu, wall))
        return (cpu - first_cpu) / max(wall - first_wall, 1e-9)


def _asked_cpus(trial: Any) -> float:
    """The CPUs a trial asked for (Tune's placement group factory), at most one: a trial's
    training loop runs on one core."""
    factory = getattr(trial, "placement_group_factory", None)
    cpus = getattr(factory, "required_resources", {}).get("CPU", 1.0) if factory else 1.0
    return min(1.0, float(cpus)) if cpus else 1.0


def busy_note(trials: Sequence[Any], pace: Pace | None = None, when: float = 0.0) -> str | None:
    """The header's note while the machine is too busy for the running trials: the median share
    of the CPU they asked for that they got (`CpuShare`: over their last 30 s, or since they
    started, so from their first epoch on), when under `BUSY_SHARE`, with the run's epochs per
    minute now and in its first minutes where known. None otherwise.

    Args:
        trials: Ray `Trial`s (`status`, `last_result`, `placement_group_factory` are read).
        pace: the run's `Pace`, for the epochs per minute.
        when: now, in the clock `pace` was fed with.
    """
    shares = [
        float(share) / _asked_cpus(t)
        for t in trials
        if str(t.status) == "RUNNING"
        and isinstance(share := (t.last_result or {}).get(CPU_SHARE), int | float)
    ]
    if not shares or (got := statistics.median(shares)) >= BUSY_SHARE:
        return None
    note = f"machine too busy: the running trials got {got:.0%} of the CPU they asked for"
    if pace is not None and (first := pace.first()) and (now := pace.now(when)) is not None:
        note += f", {now:.1f} epochs/min against {first:.1f} in the first minutes"
    return note + " (other processes take the CPUs; docs/shared-machine.md)"


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
        self.pace = Pace()

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
        now = time.time()
        self.last_time, self.last_rows = now, [trial_row(t) for t in trials]
        self.pace.add(trials, now)
        note = None if done else busy_note(trials, self.pace, now)
        block = render(trials, now - self.started, sys_info, note)
        print(block, file=self.stream or sys.stdout, flush=True)

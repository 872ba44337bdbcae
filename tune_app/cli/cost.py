"""What a comparison will cost, printed before its first trial: `compare` and `certify`.

Training is the trials' epochs at the seconds an epoch is known to take (a `tune-app best`
export's epochs, the search's, or the run's own when it is resumed), as many trials at a time as
the cluster runs. The fixed costs come on top, and for short plans they are most of it:

- Ray's start (measured: the estimate is printed once Ray is up);
- each worker's start-up (a Ray worker process, torch imported, the data's windows built),
  once per trial slot as workers are reused, and each trial's own set-up;
- scoring every trial on the test split afterwards, in this process, one after the other.

The fixed costs' constants were measured on a 2-core machine under load with small data (the
synthetic set): a larger data set takes longer to window and score. On `--resume` only the
trials that have not ended count, each with the epochs it has left; every trial is scored again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tune_app.runs.results import Run
    from tune_app.runs.storage import Location

__all__ = ["Cost", "cost_line", "epoch_seconds", "remaining"]

WORKER_START_S = 8.0  # a Ray worker process: started, torch imported (once per slot)
TRIAL_SETUP_S = 1.5  # a trial's own set-up before its first epoch: windows, model, optimizer
SCORE_SETUP_S = 3.0  # the scoring's imports and data, once
SCORE_TRIAL_S = 1.0  # one trial: its checkpoint loaded, free-running forecasts on the test split


@dataclass(frozen=True)
class Cost:
    """The work a comparison has left.

    Attributes:
        trials: trials still to run (all of them for a new run).
        epochs: the epochs those trials have left, together.
        plan_epochs: one trial's epochs (the plan's).
        scored: trials scored on the test split once every trial has ended.
        ended: trials that ended before (a resumed run), not run again.
        seconds: seconds an epoch takes, where known (None: only the epochs are said).
    """

    trials: int
    epochs: int
    plan_epochs: int
    scored: int
    ended: int = 0
    seconds: float | None = None


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{max(seconds, 1):.0f} s"


def cost_line(cost: Cost, slots: int, ray_start: float) -> str:
    """The cost estimate, with the fixed costs (see the module doc).

    Args:
        cost: the work left.
        slots: how many trials the cluster runs at once (>= 1).
        ray_start: seconds Ray took to start (or to join the cluster).

    Returns:
        One line: trials and epochs, at a time, the estimate in time with each fixed cost, and
        what Ctrl-C does.
    """
    parallel = max(1, min(slots, cost.trials))
    text = (
        f"{cost.trials} trial{'s' if cost.trials != 1 else ''} of {cost.plan_epochs} epochs "
        f"({cost.epochs} epochs to run in all), {parallel} at a time"
    )
    if cost.ended:
        text = f"{cost.ended} trial(s) ended before and are kept; to run: {text}"
    startup = (WORKER_START_S + TRIAL_SETUP_S * math.ceil(cost.trials / parallel)) * bool(
        cost.trials
    )
    scoring = SCORE_SETUP_S + SCORE_TRIAL_S * cost.scored
    fixed = ray_start + startup + scoring
    parts = (
        f"Ray start {ray_start:.0f} s, trial start-up ~{startup:.0f} s, scoring "
        f"{cost.scored} trials on the test split ~{scoring:.0f} s"
    )
    if cost.seconds:
        training = cost.epochs * cost.seconds / parallel
        text += (
            f": about {_duration(training + fixed)} (training ~{_duration(training)} at "
            f"{cost.seconds:.2g} s an epoch; fixed costs ~{_duration(fixed)}: {parts})"
        )
    else:
        text += (
            f": the training time is not known before the first epochs (no export or earlier "
            f"run to time an epoch), plus fixed costs ~{_duration(fixed)} ({parts})"
        )
    return text + (
        ". Ctrl-C stops it and prints the command that resumes it; a resumed run repeats no "
        "finished trial."
    )


def epoch_seconds(run: Run) -> float | None:
    """The median seconds an epoch took in `run`'s trials (their checkpoints' metrics): a
    search's epochs time its certification, a compare run's its resumption.

    Args:
        run: a run (`open_run`), its trials read.

    Returns:
        Seconds per epoch (the median over every trial's finite epoch times), or None where no
        trial recorded one.
    """
    values = [
        float(v)
        for t in run.trials
        if "seconds" in t.metrics
        for v in t.metrics["seconds"]
        if math.isfinite(float(v))
    ]
    return sorted(values)[len(values) // 2] if values else None


def remaining(
    location: Location, labels: Sequence[str], seeds: Sequence[int], plan_epochs: int
) -> tuple[int, int, int]:
    """What a compare run at `location` has left: trials, their epochs, trials ended.

    A trial has ended when it finished the plan (a checkpoint at its last epoch) or diverged;
    one that failed or was cut short goes on from its last checkpoint; one not started yet
    (no folder) has every epoch left.

    Args:
        location: the run (it need not exist: a new run has everything left).
        labels: the plans' labels.
        seeds: the seeds.
        plan_epochs: one trial's epochs.

    Returns:
        (trials left, epochs left, trials ended).
    """
    from tune_app.runs.records import ARM_KEY, MANIFEST
    from tune_app.runs.results import open_run

    done: dict[tuple[str, int], int] = {}
    ended = set()
    if location.join(MANIFEST).exists():
        for trial in open_run(location.uri).trials:
            arm = trial.params.get(ARM_KEY)
            if not isinstance(arm, dict):
                continue
            key = (str(arm.get("label")), int(arm.get("seed", -1)))
            done[key] = max((c.epoch for c in trial.checkpoints), default=0)
            if trial.diverged or done[key] >= plan_epochs:
                ended.add(key)
    keys = [(label, seed) for seed in seeds for label in labels]
    left = [key for key in keys if key not in ended]
    return len(left), sum(plan_epochs - done.get(key, 0) for key in left), len(keys) - len(left)

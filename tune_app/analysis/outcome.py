"""What a run came to, as data, read back without Ray: each trial's per-epoch metrics and
best score, the winner and the control with their z-unit MSEs on validation and test, the
exploits behind the winner, what followed each exploit, and (a capacity search) the parameters'
importances (`importances.py`). The text (`text.py`, `answer.py`), the figures (`figures.py`) and the page
(`page.py`) are drawn from these; nothing here formats a sentence or draws.

Per-epoch metrics come from each trial's checkpoint history (`TrialRecord.metrics`, the same
source `tune-app best` exports as metrics.parquet: complete where Tune's result.json was cut
short by an exploit, and with the donors' epochs behind the weights).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tune_app.errors import InputError
from tune_app.runs.records import ARM_KEY, CAPACITY_KEY, JournalEvent
from tune_app.runs.results import CheckpointRecord, Run, TrialRecord, find_best, lineage
from tune_app.training.metrics import EPOCH, RANK_METRIC, VAL_FREE_LOSS

__all__ = [
    "Contender",
    "ExploitOutcome",
    "TrialMetrics",
    "best_checkpoint",
    "component_names",
    "exploit_outcomes",
    "member_label",
    "params_in_force",
    "plateaus",
    "search_method",
    "search_selection",
    "trial_metrics",
    "winner_and_control",
    "winner_lineage",
]


def member_label(trial: TrialRecord) -> str:
    """`member-02` (`member-00 (control)`) for a search member, `B-1003` for a compare trial
    (its plan's label and seed), else the trial's folder name (`trial-03`, as the README and the
    progress table name it; never Ray's id `3170e_00000`)."""
    member = trial.member
    arm = trial.params.get(ARM_KEY)
    if member is None and isinstance(arm, dict) and "label" in arm:
        return f"{arm['label']}-{arm.get('seed', '')}"
    if member is None:
        return trial.location.name
    label = f"member-{member.index:02d}"
    return f"{label} (control)" if member.control else label


def search_method(run: Run) -> str:
    """A search's explore step as the user chose it: "PB2" or "PBT", from the run's manifest
    (`--scheduler`); a manifest from before the choice was recorded: PB2 if the journal names
    it for any exploit (its first explores are PBT's until PB2 has data), else PBT."""
    if run.manifest.scheduler:
        return run.manifest.scheduler.upper()
    return "PB2" if any("pb2" in event.explore for event in run.journal()) else "PBT"


def search_selection(run: Run) -> str:
    """What a search's rounds ranked members on (`--selection`), as its journal says for each
    round (else its manifest): "truncation", "recent", "improvement"; several joined by ", "
    (never by one run); "truncation" for a run from before the choice existed."""
    rules = {event.selection for event in run.rounds()}
    return ", ".join(sorted(rules)) if rules else run.manifest.selection or "truncation"


def component_names(run: Run) -> list[str]:
    """The data's component columns: from the run manifest, else from a checkpoint."""
    if run.manifest.components:
        return [str(n) for n in run.manifest.components]
    for trial in run.trials:
        for checkpoint in trial.checkpoints:
            if checkpoint.meta.components:
                return [str(n) for n in checkpoint.meta.components]
    return []


def params_in_force(trial: TrialRecord) -> dict[str, Any]:
    """The search parameters the trial ended with: its newest checkpoint's (after an exploit
    they are the explored ones), else those it started with."""
    for checkpoint in reversed(trial.checkpoints):
        if checkpoint.meta.params:
            return dict(checkpoint.meta.params)
    member = trial.member
    return dict(member.params) if member else {}


@dataclass
class Contender:
    """A trial's best checkpoint and its scores: val_free_loss (the rank metric) and the mean
    z-unit MSE of its free-running forecasts on the validation and test splits (None when the
    data could not be read)."""

    label: str
    trial: TrialRecord
    checkpoint: CheckpointRecord
    val_mse_z: float | None = None
    test_mse_z: float | None = None
    naive_test_mse_z: float | None = None  # the best naive forecast on test

    @property
    def val_free_loss(self) -> float:
        """The checkpoint's free-running validation loss (the rank metric)."""
        return float(self.checkpoint.meta.metrics[RANK_METRIC])


def best_checkpoint(trial: TrialRecord) -> CheckpointRecord | None:
    """The trial's checkpoint with the lowest finite val_free_loss (the rank metric), None
    without one."""
    scored = [
        c for c in trial.checkpoints if math.isfinite(c.meta.metrics.get(RANK_METRIC, math.nan))
    ]
    return min(scored, key=lambda c: c.meta.metrics[RANK_METRIC], default=None)


def _score(contender: Contender, data_path: str | None) -> str | None:
    """Fill in the z-unit MSEs; returns why not, if they could not be computed."""
    from tune_app.analysis.evaluate import dataset_for, evaluate, load_model

    with tempfile.TemporaryDirectory() as tmp:
        local = contender.checkpoint.location.download(Path(tmp) / "checkpoint")
        try:
            loaded = load_model(local)
            dataset = dataset_for(loaded, data_path)
        except InputError as exc:
            return str(exc)
        recorded = contender.checkpoint.meta.data_fingerprint
        if recorded and not dataset.matches(recorded):
            return (
                f"the data at {data_path or 'the built-in synthetic data'} is not the data "
                "this run trained on (its fingerprint differs)"
            )
        val = evaluate(loaded, dataset, "val")
        test = evaluate(loaded, dataset, "test")
    contender.val_mse_z = val["scores"]["model"]["mean"]["mse_z"]
    contender.test_mse_z = test["scores"]["model"]["mean"]["mse_z"]
    contender.naive_test_mse_z = test["headline"]["best_naive_mse_z"]
    return None


def winner_and_control(run: Run) -> tuple[Contender | None, Contender | None, str | None]:
    """The run's best checkpoint (as `tune-app best` picks it) and the control's best, scored
    on validation and test. Returns (winner, control or None, why scores are missing or None)."""
    try:
        trial, checkpoint = find_best(run)
    except InputError:
        return None, None, None
    winner = Contender(member_label(trial), trial, checkpoint)
    control = None
    for other in run.trials:
        if other.member is not None and other.member.control:
            best = best_checkpoint(other)
            if best is not None:
                control = Contender(member_label(other), other, best)
    data_path = run.manifest.spec.get("data_path")
    problem = None
    for contender in (winner, control):
        if contender is not None and problem is None:
            problem = _score(contender, data_path)
    return winner, control, problem


def winner_lineage(run: Run, winner: Contender) -> list[JournalEvent]:
    """The exploits behind the winner's weights, oldest first: epoch, who copied whom."""
    try:
        chain = lineage(run, winner.trial, winner.checkpoint)
    except (KeyError, ValueError):
        return []
    return [JournalEvent(**s["event"]) for s in chain["segments"] if s.get("event")]


@dataclass
class TrialMetrics:
    """A trial as the report shows it: the trial, its label and its per-epoch metrics (one row
    per epoch: `EPOCH`, the losses, the schedules' values; `TrialRecord.metrics`)."""

    trial: TrialRecord
    label: str
    frame: pd.DataFrame

    @property
    def best(self) -> float:
        """The lowest val_free_loss the trial reached (NaN before its first epoch)."""
        if VAL_FREE_LOSS not in self.frame or not len(self.frame):
            return math.nan
        return float(self.frame[VAL_FREE_LOSS].min())

    @property
    def epochs(self) -> int:
        """The last epoch the trial reported (0 before its first)."""
        return int(self.frame[EPOCH].max()) if EPOCH in self.frame and len(self.frame) else 0


def trial_metrics(run: Run) -> list[TrialMetrics]:
    """Every trial of `run` with its metrics, best val_free_loss first (a trial without one last).

    Args:
        run: any run (`open_run`), finished or still going.

    Returns:
        One TrialMetrics per trial, labelled as `member_label` names it, a capacity trial with
        its capacity (`trial-01 hidden=32,layers=2`).
    """
    entries = []
    for trial in run.trials:
        label, capacity = member_label(trial), trial.params.get(CAPACITY_KEY)
        if capacity:
            label += " " + ",".join(f"{k}={v}" for k, v in capacity.items())
        entries.append(TrialMetrics(trial, label, trial.metrics))
    return sorted(entries, key=lambda e: (math.isnan(e.best), e.best))


def plateaus(frame: pd.DataFrame, longer_than: int = 30) -> list[tuple[int, int]]:
    """The stretches without a new best val_free_loss longer than `longer_than` epochs.

    Args:
        frame: a trial's per-epoch metrics (`EPOCH` and `VAL_FREE_LOSS` columns), in order.
        longer_than: the shortest stretch, in epochs, that counts (`--plateau-epochs`).

    Returns:
        (first, last) epoch of each stretch, in order; one still open at the last epoch counts.
    """
    spans, best, since = [], math.inf, None
    for epoch, value in zip(frame[EPOCH], frame[VAL_FREE_LOSS], strict=True):
        if value < best:
            if since is not None and epoch - 1 - since >= longer_than:
                spans.append((since + 1, int(epoch) - 1))
            best, since = value, int(epoch)
    if since is not None and len(frame) and int(frame[EPOCH].iloc[-1]) - since > longer_than:
        spans.append((since + 1, int(frame[EPOCH].iloc[-1])))
    return spans


@dataclass(frozen=True)
class ExploitOutcome:
    """What followed one exploit, like against like: the copier (the explored parameters on the
    donor's weights) and the donor (its own parameters on the same weights) at `epoch`, the
    next round after the exploit (after the last round: the copier's last checkpoint). `copier`
    and `donor` are their val_free_loss there; `donor` is NaN where the donor was copied over in
    between (its weights there are another member's) or has no score; `epoch` None (and both
    NaN) where nothing came after the exploit yet."""

    event: JournalEvent
    epoch: int | None
    copier: float
    donor: float


class _Scores:
    """Who scored what at which epoch: the rounds' rankings, else the trials' checkpoints,
    each under the member's version (how many exploits it had made) at that time."""

    def __init__(self, run: Run) -> None:
        self.events = run.journal()
        self.ranked = {
            (r["trial"], event.epoch): float(r[RANK_METRIC])
            for event in run.rounds()
            for r in event.ranking
        }
        # every epoch where members met (older journals hold exploits only)
        self.boundaries = sorted({e for _, e in self.ranked} | {e.epoch for e in self.events})
        self.trials = {t.trial_id: t for t in run.trials}

    def exploits_of(self, trial: str) -> list[int]:
        return [e.epoch for e in self.events if e.trial == trial]

    def at(self, trial: str, epoch: int, version: int) -> float:
        """`trial`'s val_free_loss at `epoch` as the member it was after `version` exploits."""
        if (trial, epoch) in self.ranked:
            return self.ranked[(trial, epoch)]
        record = self.trials.get(trial)
        found = [c for c in (record.checkpoints if record else []) if c.epoch == epoch]
        matching = [c for c in found if c.meta.version == version] or found
        value = matching[-1].meta.metrics.get(RANK_METRIC) if matching else None
        return math.nan if value is None else float(value)

    def last_epoch(self, trial: str, version: int) -> int | None:
        """The epoch of the last checkpoint `trial` wrote after `version` exploits."""
        record = self.trials.get(trial)
        found = [c for c in (record.checkpoints if record else []) if c.meta.version == version]
        found = found or (record.checkpoints if record else [])
        return max((c.epoch for c in found), default=None)

    def outcome(self, event: JournalEvent) -> ExploitOutcome:
        copier_version = sum(1 for e in self.exploits_of(event.trial) if e <= event.epoch)
        donor_version = sum(1 for e in self.exploits_of(event.donor) if e < event.epoch)
        later = [e for e in self.boundaries if e > event.epoch]
        epoch = later[0] if later else self.last_epoch(event.trial, copier_version)
        if epoch is None or epoch <= event.epoch:
            return ExploitOutcome(event, None, math.nan, math.nan)
        copier = self.at(event.trial, epoch, copier_version)
        if any(event.epoch <= e < epoch for e in self.exploits_of(event.donor)):
            return ExploitOutcome(event, epoch, copier, math.nan)
        return ExploitOutcome(event, epoch, copier, self.at(event.donor, epoch, donor_version))


def exploit_outcomes(run: Run) -> list[ExploitOutcome]:
    """What followed each exploit of a search (`ExploitOutcome`), oldest first: evidence for
    which modification helped, not a claim of causality (one pair of runs per exploit, every
    changed parameter at once, no measure of the noise between runs).

    Args:
        run: a search run (`open_run`); any other kind has no exploits.

    Returns:
        One ExploitOutcome per exploit line of the journal, in its order.
    """
    scores = _Scores(run)
    return [scores.outcome(event) for event in scores.events]

"""Population Based Training in synchronous rounds at phase boundaries.

Jaderberg et al. (2017), "Population Based Training of Neural Networks", in its synchronous form:
every member trains to the next boundary (a multiple of the perturbation interval, one phase by
default), reports its free-running validation loss there with a checkpoint, and waits (Ray pauses
it, freeing its slot for members that take turns). When every live member waits at that same
epoch, a **round** runs:

- the members are ranked on their fitness under the run's selection rule (`selection.py`,
  `--selection`): by default `val_free_loss` *at that epoch* (truncation); the other rules read
  the member's losses over the epochs up to the round (never a score of another member's epoch);
- the donors are the best `k = max(1, ceil(q * N))` members with a finite score (`k <= N / 2`);
  the control (the plan as written) may be a donor, since its weights are good;
- the losers are the worst `k` non-control members that are not donors; each copies a random
  donor's boundary checkpoint (exploit) and perturbs the donor's parameters inside the space's
  bounds (explore); with N = 4 and q = 0.25 one member exploits at every round unless the worst
  non-control member is itself a donor;
- the round is journalled (`pbt_journal.jsonl`): the rule that ranked it, the ranking (with each
  member's loss at the epoch and its fitness), each exploit (epoch, trial, donor, old -> new
  parameters, both scores, the copied checkpoint) and each member left alone, with why.

The exploit needs none of Ray's checkpoint internals: the loser's config gets
`member.restore` (the donor's checkpoint folder, relative to the run) and a new `member.version`;
the trainable restores that checkpoint when it starts again. Rounds already journalled are not
repeated after `--resume`, and a member that resumes at a boundary whose round has not run yet
reports there again to join it (see `trainable.py`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from tune_app.plan.search_space import SearchSpace
from tune_app.runs.records import JOURNAL, JournalEvent, RoundEvent
from tune_app.training.metrics import DIVERGED, EPOCH, RANK_METRIC, VAL_FREE_LOSS
from tune_app.tune.explore import EXPLORERS, Exploit, Observation
from tune_app.tune.journal import Journal
from tune_app.tune.selection import Selection
from tune_app.tune.trainable import INTERVAL_LOSSES, MEMBER_KEY

__all__ = [
    "JOURNAL",
    "MEMBER_KEY",
    "Journal",
    "MembersSearch",
    "PhaseBoundaryPBT",
    "plan_round",
    "population",
]


def population(space: SearchSpace, size: int, seed: int) -> list[dict[str, Any]]:
    """The starting members: the control first, then `size - 1` members spread over the
    initial ranges by a seeded Latin hypercube (`SearchSpace.quasi_random`)."""
    members = [{"index": 0, "control": True, "params": space.neutral(), "version": 0}]
    members += [
        {"index": i, "control": False, "params": params, "version": 0}
        for i, params in enumerate(space.quasi_random(size - 1, seed), start=1)
    ]
    return members


@dataclass(frozen=True)
class RoundPlan:
    """Who copies whom in one round, and why every other member is left alone."""

    ranking: list[tuple[str, float]]  # (trial id, fitness), best first
    exploits: list[tuple[str, str]]  # (loser, donor)
    left_alone: dict[str, str] = field(default_factory=dict)  # trial id -> reason


def _losses(value: float | Sequence[float]) -> tuple[float, ...]:
    return (float(value),) if isinstance(value, int | float) else tuple(map(float, value))


def plan_round(
    scores: Mapping[str, float | Sequence[float]],
    controls: set[str],
    quantile_fraction: float,
    rng: random.Random,
    selection: Selection | None = None,
) -> RoundPlan:
    """Rank the members on their fitness under `selection` and choose the exploits.

    Args:
        scores: trial id -> its `val_free_loss` per epoch up to the round, oldest first, the
            round's epoch last (a number: that epoch's alone); lower is better.
        controls: trial ids that are never changed (they may still be donors).
        quantile_fraction: q; `k = max(1, ceil(q * N))` donors and losers, `k <= N // 2`.
        rng: picks a donor for each loser.
        selection: the rule that turns each member's losses into its fitness (`selection.py`;
            default: truncation, the loss at the round's epoch).

    Returns:
        The ranking (trial id, fitness; best first, ties broken by trial id), the (loser,
        donor) pairs and the reason each other member is left alone. Members whose fitness is
        not finite (diverged: a NaN or infinite loss) are neither donors nor losers.
    """
    selection = selection or Selection()
    fitness = {t: selection.fitness(_losses(s)) for t, s in scores.items()}
    finite = {t: f for t, f in fitness.items() if math.isfinite(f)}
    ranking = sorted(finite.items(), key=lambda item: (item[1], item[0]))
    left_alone = {t: "diverged (no finite score)" for t in scores if t not in finite}
    if len(ranking) < 2:
        for trial, _ in ranking:
            left_alone[trial] = "alone in the round: nobody to compare with"
        return RoundPlan(ranking, [], left_alone)
    k = min(max(1, math.ceil(quantile_fraction * len(ranking))), len(ranking) // 2)
    donors = [t for t, _ in ranking[:k]]
    losers = [t for t, _ in reversed(ranking) if t not in controls and t not in donors][:k]
    exploits = [(loser, rng.choice(donors)) for loser in losers]
    for trial, _ in ranking:
        if trial in losers:
            continue
        if trial in donors:
            left_alone[trial] = f"donor (top {k})"
        elif trial in controls:
            left_alone[trial] = "control (never changed)"
        else:
            left_alone[trial] = f"not in the bottom {k}"
    return RoundPlan(ranking, exploits, left_alone)


class PhaseBoundaryPBT(FIFOScheduler):
    """Synchronous PBT rounds at every `interval` epochs, with a protected control.

    Args:
        space: the search space (bounds for every explored value).
        interval: epochs between rounds; the trainable checkpoints at each multiple.
        total_epochs: the plan's length; no round at the end.
        journal: where rounds are recorded (the run's storage).
        seed: seeds donor choice and exploration.
        quantile_fraction: q of `plan_round`.
        resample_probability: chance that an explored value is redrawn instead of perturbed.
        explore_method: "pbt" (random perturbation) or "pb2" (GP bandit), see `explore.py`.
        selection: what members are ranked on (`selection.py`); default truncation.
    """

    def __init__(
        self,
        space: SearchSpace,
        interval: int,
        total_epochs: int,
        journal: Journal,
        seed: int = 0,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        explore_method: str = "pbt",
        selection: Selection | None = None,
    ) -> None:
        super().__init__()
        if explore_method not in EXPLORERS:
            raise ValueError(f"explore_method {explore_method!r}: use one of {tuple(EXPLORERS)}")
        self.explore_method = explore_method
        self.selection = selection or Selection()
        self.space = space
        self.interval = interval
        self.total_epochs = total_epochs
        self.journal = journal
        self.seed = seed
        self.quantile_fraction = quantile_fraction
        self.resample_probability = resample_probability
        # trial id -> (epoch, its val_free_loss over the interval up to it) it waits at
        self._waiting: dict[str, tuple[int, tuple[float, ...]]] = {}
        self._rounds = 0
        self._exploits = 0
        self._members: list[Trial] = []

    # -- what Ray asks ------------------------------------------------------------------------
    @property
    def metric(self) -> str:
        return RANK_METRIC

    def is_boundary(self, epoch: int) -> bool:
        return 0 < epoch < self.total_epochs and epoch % self.interval == 0

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        epoch = result.get(EPOCH)
        if result.get(DIVERGED) or epoch is None or not self.is_boundary(int(epoch)):
            return TrialScheduler.CONTINUE
        if int(epoch) in self.journal.rounds_done():
            return TrialScheduler.CONTINUE  # a restart after its round (failure retry, resume)
        score = float(result.get(RANK_METRIC, math.inf))
        # the trainable sends the interval's losses with a round's epoch (the epoch's last)
        losses = tuple(float(x) for x in result.get(INTERVAL_LOSSES) or ())
        self._waiting[trial.trial_id] = (int(epoch), (*losses[:-1], score) if losses else (score,))
        # The last member to arrive runs the round at once and, unless it copies a donor, goes
        # on without pausing: its worker is kept, and the members queued next take the others'.
        exploited = self._maybe_run_round(list(tune_controller.get_trials()), arriving=trial)
        if exploited is not None and trial.trial_id not in exploited:
            return TrialScheduler.CONTINUE
        return TrialScheduler.PAUSE  # wait for the others; frees the slot for members taking turns

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._members.append(trial)

    def all_finished(self) -> bool:
        """Whether every member has finished (terminated, or errored for good); True when no
        member is known (a restored run before its first step), so nothing can wait forever."""
        return all(t.is_finished() for t in self._members)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._waiting.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self._waiting.pop(trial.trial_id, None)  # a retry reports the boundary again

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._waiting.pop(trial.trial_id, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        trials = list(tune_controller.get_trials())
        self._members = trials  # also after a restore, which adds no trial through on_trial_add
        self._maybe_run_round(trials)
        # Only PAUSED members: Ray starts PENDING ones by itself, and a member returned here is
        # made PENDING and queued for a slot, so the next call queues the next one. (Returning a
        # PENDING member again would queue one member at a time and leave slots idle.)
        runnable = [
            t for t in trials if t.status == Trial.PAUSED and t.trial_id not in self._waiting
        ]
        # fair turns: the member that is furthest behind goes first
        runnable.sort(key=lambda t: (int((t.last_result or {}).get(EPOCH, 0)), t.trial_id))
        return runnable[0] if runnable else None

    def debug_string(self) -> str:
        waiting = sorted({epoch for epoch, _ in self._waiting.values()})
        at = f", {len(self._waiting)} waiting at epoch {waiting[0]}" if waiting else ""
        name = self.explore_method.upper()
        rule = self.selection.rule
        if self.selection.as_truncation:
            rule += " selection reading one epoch, as truncation"
        else:
            rule += " selection"
        return (
            f"{name} rounds every {self.interval} epochs ({rule}): "
            f"{self._rounds} rounds, {self._exploits} exploits{at}"
        )

    # -- the round ----------------------------------------------------------------------------
    def _maybe_run_round(
        self, trials: list[Trial], arriving: Trial | None = None
    ) -> set[str] | None:
        """Run the round if every live member waits at the boundary (all paused, but for the
        one `arriving` now). Returns the members that copied a donor, or None if no round ran."""
        live = [t for t in trials if not t.is_finished()]
        if not live or any(t.trial_id not in self._waiting for t in live):
            return None
        if any(t.status != Trial.PAUSED and t is not arriving for t in live):
            return None  # a pause is still under way; the round runs when it is done
        epochs = {self._waiting[t.trial_id][0] for t in live}
        epoch = min(epochs)
        if len(epochs) > 1:  # cannot happen in rounds; if it does, release the later ones
            for t in live:
                if self._waiting[t.trial_id][0] != epoch:
                    del self._waiting[t.trial_id]
            return None
        exploited = self._run_round(epoch, live)
        for t in live:
            del self._waiting[t.trial_id]
        return exploited

    def _run_round(self, epoch: int, members: list[Trial]) -> set[str]:
        by_id = {t.trial_id: t for t in members}
        losses = {t.trial_id: self._waiting[t.trial_id][1] for t in members}
        scores = {t: values[-1] for t, values in losses.items()}  # val_free_loss at `epoch`
        controls = {t.trial_id for t in members if _member(t).get("control")}
        rng = random.Random(self.seed * 1_000_003 + epoch)
        decided = plan_round(losses, controls, self.quantile_fraction, rng, self.selection)
        trained = {t.trial_id: _member(t)["params"] for t in members}  # before any exploit
        history = self.journal.history()
        history += [Observation(t, epoch, scores[t], trained[t]) for t, _ in decided.ranking]
        losers = {loser for loser, _ in decided.exploits}
        others = [_member(t)["params"] for t in members if t.trial_id not in losers]
        events: list[JournalEvent] = []
        for loser_id, donor_id in decided.exploits:
            loser, donor = by_id[loser_id], by_id[donor_id]
            exploit = Exploit(
                _member(donor)["params"], scores[donor_id], epoch, history, tuple(others)
            )
            explore = EXPLORERS[self.explore_method]  # (looked up: a restored run pickled this)
            params, how = explore(self.space, exploit, rng, self.resample_probability)
            events.append(self._exploit(epoch, loser, donor, scores, params, how))
            others.append(params)
        round_event = RoundEvent(
            epoch=epoch,
            ranking=tuple(
                {
                    "trial": t,
                    "member": _member(by_id[t]).get("index"),
                    VAL_FREE_LOSS: scores[t],
                    "fitness": fitness,
                    "params": trained[t],
                }
                for t, fitness in decided.ranking
            ),
            exploits=tuple({"trial": loser, "donor": donor} for loser, donor in decided.exploits),
            left_alone=tuple(
                {"trial": t, "member": _member(by_id[t]).get("index"), "reason": why}
                for t, why in decided.left_alone.items()
            ),
            time=time.time(),
            selection=self.selection.rule,
        )
        self.journal.append(round_event, *events)
        self._rounds += 1
        self._exploits += len(events)
        return losers

    def _exploit(
        self,
        epoch: int,
        trial: Trial,
        donor: Trial,
        scores: dict[str, float],
        params: dict[str, Any],
        how: str,
    ) -> JournalEvent:
        assert not _member(trial).get("control"), "the control is never exploited"
        if donor.path is None:
            raise RuntimeError(f"PBT round at epoch {epoch}: donor {donor.trial_id} has no folder")
        old, donor_member = _member(trial), _member(donor)
        # The donor's checkpoint of this epoch: persisted before its result reached the driver;
        # the trainable finds it in the donor's folder by epoch and version.
        restore = {
            "trial_dir": PurePosixPath(donor.path).name,
            "epoch": epoch,
            "version": int(donor_member.get("version", 0)),
            "donor": donor.trial_id,
        }
        member = {
            "index": old["index"],
            "control": False,
            "params": params,
            "version": int(old.get("version", 0)) + 1,
            "restore": restore,
        }
        trial.set_config({**donor.config, MEMBER_KEY: member})
        return JournalEvent(
            epoch=epoch,
            trial=trial.trial_id,
            donor=donor.trial_id,
            val_free_loss=scores[trial.trial_id],
            donor_val_free_loss=scores[donor.trial_id],
            old=old["params"],
            donor_params=donor_member["params"],
            new=params,
            time=time.time(),
            member=old["index"],
            donor_member=donor_member.get("index"),
            explore=how,
            donor_dir=str(restore["trial_dir"]),
        )


def _member(trial: Trial) -> dict[str, Any]:
    member = trial.config.get(MEMBER_KEY) or {}
    return dict(member)


class MembersSearch(BasicVariantGenerator):
    """Ray's grid of members, "finished" only once every member has finished.

    Tune keeps an idle worker process for reuse only while its search algorithm may still add
    trials; once the grid is generated, a member that pauses for its round would lose its
    worker, and the next phase would start new processes (import torch, build windows). Members
    of a round always come back, so the search is not over until they all finish."""

    def __init__(self, scheduler: PhaseBoundaryPBT) -> None:
        super().__init__()
        self._scheduler = scheduler

    def is_finished(self) -> bool:
        return bool(super().is_finished()) and self._scheduler.all_finished()

    # Ray saves and restores a generator's whole __dict__ (basic-variant-state-*.json): keep the
    # live scheduler out of it, or a resumed run would ask a stale copy whose members never end.
    def get_state(self) -> Any:
        state = super().get_state()
        if isinstance(state, dict):
            state.pop("_scheduler", None)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        scheduler = self._scheduler
        super().set_state(state)
        self._scheduler = scheduler

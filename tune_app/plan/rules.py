"""The plan's monitoring advice as automatic, replayable reactions at phase boundaries.

"If plateau lasts >30 epochs, consider adjusting learning rate" -> a warm restart from the next
epoch; "if gap widens, consider increasing regularization" -> more weight decay and noise from the
next epoch. A rule changes the plan itself (a new modification), so the checkpoint's plan records
it and an exported plan replays it without the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tune_app.plan import registry
from tune_app.plan.modifications import (
    REGULARISATION,
    CurriculumPacing,
    LrRestart,
    Modification,
)
from tune_app.plan.plan import Plan

__all__ = ["MonitorRules"]


@dataclass(frozen=True)
class MonitorRules:
    plateau_restart: bool = (
        False  # plateau longer than `patience` -> lr to factor x the phase's peak
    )
    plateau_factor: float = 2.0
    gap_regularise: float = 1.0  # gap grew over the last epochs -> weight decay and noise x this
    patience: int = 30

    @property
    def active(self) -> bool:
        return self.plateau_restart or self.gap_regularise > 1.0

    @classmethod
    def from_params(cls, params: dict[str, Any], patience: int) -> MonitorRules:
        """The rules a PBT member's parameters switch on: every registry entry targeting a rule."""
        fields = {
            param.field: registry.value(params, param.name)
            for param in registry.PBT_PARAMS
            if param.target == "rule"
        }
        return cls(**fields, patience=patience)

    def __call__(self, epoch: int, history: list[dict[str, float]], plan: Plan) -> Plan | None:
        """At the end of `epoch` (a phase boundary): the plan from epoch + 1 on, or None."""
        if epoch >= plan.total_epochs or not history:
            return None
        last = history[-1]
        current = plan.active_modification(epoch + 1) or Modification(from_epoch=epoch + 1)
        changes: dict[str, Any] = {}
        if self.plateau_restart and last.get("epochs_since_best", 0) > self.patience:
            changes["lr_restart"] = LrRestart(period=0, factor=self.plateau_factor)
        if self.gap_regularise > 1.0 and last.get("gap_change", 0.0) > 0.0:
            # compounds at every boundary the gap widens, up to the bound a plan may hold (so
            # the exported plan loads); at the bound the rule has nothing left to change
            raised = min(current.regularisation * self.gap_regularise, REGULARISATION[1])
            if raised != current.regularisation:
                changes["regularisation"] = raised
        if not changes:
            return None
        return plan.apply(replace(_carried(current, epoch + 1, plan), **changes))


def _carried(mod: Modification, from_epoch: int, plan: Plan) -> Modification:
    """`mod` restated from `from_epoch` so that it keeps doing what it did: a curriculum ramp
    continues where it was (not from its start again), a one-off warm restart ends with its phase."""
    pacing, restart = mod.curriculum, mod.lr_restart
    if pacing is not None:
        done = from_epoch - mod.from_epoch
        pacing = (
            None
            if done >= pacing.epochs
            else CurriculumPacing(pacing.fraction_at(done), pacing.epochs - done)
        )
    if (
        restart is not None
        and restart.period == 0
        and plan.phase_index(from_epoch) != plan.phase_index(mod.from_epoch)
    ):
        restart = None
    return replace(mod, from_epoch=from_epoch, curriculum=pacing, lr_restart=restart)

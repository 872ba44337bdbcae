"""Modifications: what a search changes in a plan from some epoch on (the seed's "modifications to consider").

A modification is the *whole* set of changes in force from `from_epoch` on; a later one replaces it.
So a trial's history `[(epoch, modification, donor), ...]` replays as a plan with those records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tune_app.errors import ErrorList
from tune_app.plan import registry
from tune_app.plan.schedules import Cosine, Schedule, as_number

__all__ = [
    "CurriculumPacing",
    "LrRestart",
    "Modification",
    "PhaseSpan",
    "modification_from_params",
    "parse_modification",
]

REGULARISATION = (0.1, 10.0)  # bounds of a modification's weight decay and noise multiplier


@dataclass(frozen=True)
class LrRestart:
    """Warm restart: lr jumps to `factor` x the phase's peak and cosines down to the phase's end.

    `period` 0 restarts once, at the modification's epoch, for the rest of that phase; a period
    of P epochs restarts again every P epochs (each cycle clipped to its phase).
    """

    period: int = 0
    factor: float = 1.0

    def lr_at(
        self, phase: PhaseSpan, epoch: int, step: int, steps_per_epoch: int, from_epoch: int
    ) -> float | None:
        """The learning rate before optimizer step `step` of `epoch`, or None where this restart
        does not reach (a one-off restart that began in an earlier phase)."""
        if self.period == 0:
            if from_epoch < phase.first:
                return None
            cycle_start, cycle_end = from_epoch, phase.last
        else:
            cycle_start = from_epoch + (epoch - from_epoch) // self.period * self.period
            cycle_end = min(cycle_start + self.period - 1, phase.last)
            cycle_start = max(cycle_start, phase.first)
        done = (epoch - cycle_start) * steps_per_epoch + step
        t = done / ((cycle_end - cycle_start + 1) * steps_per_epoch)
        return Cosine(self.factor * phase.lr.peak, phase.lr.final).at(t)


@dataclass(frozen=True)
class PhaseSpan:
    """The part of a phase a warm restart needs: its epochs (1-based, inclusive) and lr schedule."""

    first: int
    last: int
    lr: Schedule


@dataclass(frozen=True)
class CurriculumPacing:
    """Easy to hard: admit the easiest `start` fraction of windows, rising linearly to all of them."""

    start: float = 1.0
    epochs: int = 0

    def fraction_at(self, epochs_in: int) -> float:
        if self.epochs <= 0:
            return 1.0
        return self.start + (1.0 - self.start) * min(epochs_in / self.epochs, 1.0)


@dataclass(frozen=True)
class Modification:
    from_epoch: int
    alpha_shift: float = 0.0
    teacher_forcing_shift: float = 0.0
    lr_restart: LrRestart | None = None
    curriculum: CurriculumPacing | None = None
    component_weights: tuple[float, ...] | None = None
    regularisation: float = 1.0  # the gap rule's: multiplies the plan's weight decay and noise
    # the seed's own levers (registry.SCALES): multiply the plan's schedules from `from_epoch`
    lr_scale: float = 1.0  # the learning rate, warm restarts included
    weight_decay_scale: float = 1.0
    noise_scale: float = 1.0
    grad_clip_scale: float = 1.0

    @property
    def is_identity(self) -> bool:
        return (
            self.alpha_shift == 0.0
            and self.teacher_forcing_shift == 0.0
            and self.lr_restart is None
            and self.curriculum is None
            and self.component_weights is None
            and self.regularisation == 1.0
            and all(getattr(self, name) == 1.0 for name in registry.SCALES)
        )

    @property
    def weight_decay_factor(self) -> float:
        """What the plan's weight decay is multiplied by: the gap rule's x the lever's."""
        return self.regularisation * self.weight_decay_scale

    @property
    def noise_factor(self) -> float:
        """What the plan's input noise is multiplied by: the gap rule's x the lever's."""
        return self.regularisation * self.noise_scale

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"from_epoch": self.from_epoch}
        if self.alpha_shift:
            out["alpha_shift"] = self.alpha_shift
        if self.teacher_forcing_shift:
            out["teacher_forcing_shift"] = self.teacher_forcing_shift
        if self.lr_restart is not None:
            out["lr_restart"] = {"period": self.lr_restart.period, "factor": self.lr_restart.factor}
        if self.curriculum is not None:
            out["curriculum"] = {"start": self.curriculum.start, "epochs": self.curriculum.epochs}
        if self.component_weights is not None:
            out["component_weights"] = list(self.component_weights)
        if self.regularisation != 1.0:
            out["regularisation"] = self.regularisation
        for name in registry.SCALES:
            if getattr(self, name) != 1.0:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, raw: Any, source: str = "modification") -> Modification:
        """The modification `to_dict` wrote.

        Raises:
            InputError: `raw` is not a valid modification (every problem listed).
        """
        errors = ErrorList(source)
        mod = parse_modification(raw, source, errors)
        if mod is None and not errors:
            errors.add(source, "expected a modification with from_epoch", raw)
        errors.raise_if_any()
        assert mod is not None
        return mod


_KEYS = (
    "from_epoch",
    "alpha_shift",
    "teacher_forcing_shift",
    "lr_restart",
    "curriculum",
    "component_weights",
    "regularisation",
    *registry.SCALES,
)


def _number(raw: Any, path: str, errors: ErrorList, low: float, high: float) -> float:
    value = as_number(raw)
    if value is None or not low <= value <= high:
        errors.add(path, f"must be a number in [{low}, {high}]", raw)
        return low if low > -math.inf else 0.0
    return value


def _scale(raw: Any, path: str, errors: ErrorList, domain: registry.Domain) -> float:
    value = as_number(raw)
    if value is None or not math.isfinite(value) or value not in domain:
        errors.add(path, f"must be a number {domain}: {domain.why}", raw)
        return 1.0
    return value


def _whole(raw: Any, path: str, errors: ErrorList, low: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < low:
        errors.add(path, f"must be a whole number >= {low}", raw)
        return low
    return raw


def _mapping(raw: Any, path: str, keys: tuple[str, ...], errors: ErrorList) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors.add(path, f"expected a mapping with {', '.join(keys)}", raw)
        return {}
    for key in raw:
        if key not in keys:
            errors.add(f"{path}.{key}", "unknown key", None, f"use {', '.join(keys)}")
    return raw


def parse_modification(raw: Any, path: str, errors: ErrorList) -> Modification | None:
    body = _mapping(raw, path, _KEYS, errors)
    if not body:
        return None
    count = len(errors.messages)
    from_epoch = _whole(body.get("from_epoch"), f"{path}.from_epoch", errors, 1)
    restart = None
    if body.get("lr_restart") is not None:
        item = _mapping(body["lr_restart"], f"{path}.lr_restart", ("period", "factor"), errors)
        restart = LrRestart(
            period=_whole(item.get("period", 0), f"{path}.lr_restart.period", errors, 0),
            factor=_number(
                item.get("factor", 1.0), f"{path}.lr_restart.factor", errors, 1e-3, 100.0
            ),
        )
    pacing = None
    if body.get("curriculum") is not None:
        item = _mapping(body["curriculum"], f"{path}.curriculum", ("start", "epochs"), errors)
        pacing = CurriculumPacing(
            start=_number(item.get("start", 1.0), f"{path}.curriculum.start", errors, 0.01, 1.0),
            epochs=_whole(item.get("epochs", 0), f"{path}.curriculum.epochs", errors, 0),
        )
    weights = None
    if body.get("component_weights") is not None:
        raw_weights = body["component_weights"]
        values = [as_number(w) for w in raw_weights] if isinstance(raw_weights, list) else []
        if not values or any(v is None or v <= 0 for v in values):
            errors.add(
                f"{path}.component_weights", "must be a list of positive numbers", raw_weights
            )
        else:
            weights = tuple(float(v) for v in values if v is not None)
    mod = Modification(
        from_epoch=from_epoch,
        alpha_shift=_number(body.get("alpha_shift", 0.0), f"{path}.alpha_shift", errors, -1.0, 1.0),
        teacher_forcing_shift=_number(
            body.get("teacher_forcing_shift", 0.0),
            f"{path}.teacher_forcing_shift",
            errors,
            -1.0,
            1.0,
        ),
        lr_restart=restart,
        curriculum=pacing,
        component_weights=weights,
        regularisation=_number(
            body.get("regularisation", 1.0), f"{path}.regularisation", errors, *REGULARISATION
        ),
        **{
            name: _scale(body.get(name, 1.0), f"{path}.{name}", errors, domain)
            for name, domain in registry.SCALES.items()
        },
    )
    return mod if len(errors.messages) == count else None


def modification_from_params(
    params: dict[str, Any], from_epoch: int, phase_epochs: int, components: Sequence[str]
) -> Modification:
    """A search's flat parameters (see search_spaces/modifications.yaml) as a Modification.

    Each name is read through `registry` (absent ones take their neutral value): shifts,
    warm restarts, curriculum, component weights and the seed's own levers (`lr_scale`,
    `weight_decay_scale`, `noise_scale`, `grad_clip_scale`: multipliers); the rules'
    parameters (`plateau_restart`, `gap_regularise`) are read by `rules.MonitorRules`.
    Periods and ramp lengths are given as fractions of a phase, so one space fits any plan length.

    Args:
        params: parameter name -> value, as a PBT member carries them.
        from_epoch: first epoch (1-based) the modification is in force.
        phase_epochs: epochs in the phase holding `from_epoch` (turns fractions into epochs).
        components: the data's component names, for `component_weight_<name>`.

    Returns:
        The modification; `is_identity` for the control's neutral parameters.
    """

    def value(name: str) -> Any:
        return registry.value(params, name)

    restart = None
    if value("lr_restart"):
        restart = LrRestart(
            period=round(value("lr_restart_period") * phase_epochs),
            factor=value("lr_restart_factor"),
        )
    pacing = None
    start, ramp = value("curriculum_start"), round(value("curriculum_epochs") * phase_epochs)
    if start < 1.0 and ramp > 0:
        pacing = CurriculumPacing(start=start, epochs=ramp)
    weights = [value(registry.component_name("component_weight", c)) for c in components]
    component_weights = tuple(weights) if any(w != 1.0 for w in weights) else None
    return Modification(
        from_epoch=from_epoch,
        alpha_shift=value("alpha_shift"),
        teacher_forcing_shift=value("teacher_forcing_shift"),
        lr_restart=restart,
        curriculum=pacing,
        component_weights=component_weights,
        **{name: float(value(name)) for name in registry.SCALES},
    )

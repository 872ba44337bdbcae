"""Every parameter a PBT search space may name: what it changes, its neutral value, its parser.

One table, read by `modifications.modification_from_params` (plan fields), `rules.MonitorRules`
(boundary rules), the control's neutral member (`search_space.SearchSpace.neutral`) and space
validation (`search_space.parse_space` refuses a name outside it, before Ray starts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CAPACITY_FIELDS",
    "PBT_PARAMS",
    "SCALES",
    "Domain",
    "PbtParam",
    "component_name",
    "lookup",
    "neutral",
    "unknown_pbt_param",
    "value",
]

# What `tune-app capacity` searches: fixed for a trial's life, so PBT cannot change them.
CAPACITY_FIELDS = ("hidden", "layers", "dropout", "cell", "input_len")


@dataclass(frozen=True)
class Domain:
    """The values a numeric parameter may take and still give a plan that loads (a space's
    bounds must lie inside): from `low` (excluded where `low_open`) to `high`; None: no limit.

    Attributes:
        why: what the value means, said with a refusal.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    why: str = ""

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class PbtParam:
    """One searchable parameter.

    Attributes:
        name: the name in a PBT space (`per_component` ones get `_<component>` appended).
        target: "modification" (a field of `Modification`, applied to the plan from the next
            epoch) or "rule" (a field of `MonitorRules`, acting on metrics at phase boundaries).
        field: the `Modification` or `MonitorRules` field it sets.
        neutral: the value that leaves the plan as written (the control's).
        parse: turns a space's value (YAML scalar) into the value used.
        per_component: one parameter per data component (`component_weight_c0`, ...).
        domain: where a numeric parameter's values must lie (None: a bool, on or off).
    """

    name: str
    target: Literal["modification", "rule"]
    field: str
    neutral: Any
    parse: Callable[[Any], Any]
    per_component: bool = False
    domain: Domain | None = None

    @property
    def is_switch(self) -> bool:
        """On or off (a bool in a space), rather than a number."""
        return isinstance(self.neutral, bool)


_SHIFT = Domain(-1.0, 1.0, why="it is added to a ratio that lies in [0, 1]")
_FACTOR = Domain(1e-3, 100.0, why="it multiplies the phase's peak learning rate")
_FRACTION = Domain(0.0, why="a fraction of a phase")
# the seed's own levers, as multipliers of the plan's schedules from an epoch on (every
# schedule value stays as the plan's loader requires: lr and gradient clip > 0, the rest >= 0)
SCALES = {
    "lr_scale": Domain(
        1e-3, 100.0, why="it multiplies the plan's learning rate, which must stay > 0"
    ),
    "weight_decay_scale": Domain(0.0, 100.0, why="it multiplies the plan's weight decay (>= 0)"),
    "noise_scale": Domain(0.0, 100.0, why="it multiplies the plan's input noise, a std (>= 0)"),
    "grad_clip_scale": Domain(
        0.0,
        100.0,
        low_open=True,
        why="it multiplies the plan's gradient-clipping norm, which must stay > 0",
    ),
}
PBT_PARAMS: tuple[PbtParam, ...] = (
    PbtParam("alpha_shift", "modification", "alpha_shift", 0.0, float, domain=_SHIFT),
    PbtParam(
        "teacher_forcing_shift", "modification", "teacher_forcing_shift", 0.0, float, domain=_SHIFT
    ),
    PbtParam("lr_restart", "modification", "lr_restart", False, bool),
    PbtParam("lr_restart_factor", "modification", "lr_restart", 1.0, float, domain=_FACTOR),
    PbtParam("lr_restart_period", "modification", "lr_restart", 0.0, float, domain=_FRACTION),
    PbtParam(
        "curriculum_start",
        "modification",
        "curriculum",
        1.0,
        float,
        domain=Domain(0.01, 1.0, why="the fraction of windows a curriculum starts with"),
    ),
    PbtParam("curriculum_epochs", "modification", "curriculum", 0.0, float, domain=_FRACTION),
    PbtParam(
        "component_weight",
        "modification",
        "component_weights",
        1.0,
        float,
        per_component=True,
        # the training loss is sum(w_c * loss_c) / sum(w_c) (training/loss.py)
        domain=Domain(
            0.0,
            low_open=True,
            why="a weight of 0 drops its component from the training loss (all 0: no loss "
            "at all) and a negative one rewards a worse fit",
        ),
    ),
    *(
        PbtParam(name, "modification", name, 1.0, float, domain=domain)
        for name, domain in SCALES.items()
    ),
    PbtParam("plateau_restart", "rule", "plateau_restart", False, bool),
    PbtParam("plateau_restart_factor", "rule", "plateau_factor", 2.0, float, domain=_FACTOR),
    PbtParam(
        "gap_regularise",
        "rule",
        "gap_regularise",
        1.0,
        float,
        domain=Domain(
            0.0, 10.0, low_open=True, why="it multiplies weight decay and noise (above 1 only)"
        ),
    ),
)
_BY_NAME = {param.name: param for param in PBT_PARAMS}


def component_name(name: str, component: str) -> str:
    """The flat name of a per-component parameter: `component_weight_c0`."""
    return f"{name}_{component}"


def lookup(name: str) -> PbtParam | None:
    """The parameter `name` stands for (expanded per-component names included), or None."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    for param in PBT_PARAMS:
        if param.per_component and name.startswith(f"{param.name}_"):
            return param
    return None


def neutral(name: str) -> Any:
    """The control's value of `name`. Raises KeyError for a name outside the registry."""
    param = lookup(name)
    if param is None:
        raise KeyError(name)
    return param.neutral


def value(params: dict[str, Any], name: str) -> Any:
    """`params[name]` parsed, or the neutral value when the member does not carry it."""
    param = lookup(name)
    if param is None:
        raise KeyError(name)
    return param.parse(params[name]) if name in params else param.neutral


def unknown_pbt_param(name: str, per_component: bool) -> str | None:
    """Why a PBT space may not name `name` (with the fix), or None if it may."""
    param = _BY_NAME.get(name)
    known = ", ".join(p.name for p in PBT_PARAMS)
    if param is not None:
        if param.per_component != per_component:
            return f"set per_component: {str(param.per_component).lower()} for {name}"
        return None
    if name in CAPACITY_FIELDS:
        return (
            f"PBT cannot change {name!r}: model capacity is fixed for a trial's life; "
            f"search it with `tune-app capacity` (search_spaces/capacity.yaml). "
            f"PBT can change: {known}"
        )
    return f"unknown PBT parameter {name!r}; PBT can change: {known}"

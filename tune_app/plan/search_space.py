"""search_spaces/*.yaml -> validated parameters that sample, mutate (clamped) and become Tune or
Optuna distributions. One format for PBT (`modifications.yaml`) and Optuna (`capacity.yaml`)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tune_app.errors import ErrorList, InputError
from tune_app.plan import registry
from tune_app.plan.schedules import as_number

__all__ = ["Param", "SearchSpace", "load_space", "space_changes", "to_optuna"]

TYPES = ("float", "int", "bool", "choice")
MUTATIONS = ("shift", "scale", "resample")
SPACES_PACKAGE = "tune_app.search_spaces"  # package data, so a non-editable install finds them
_KEYS = (
    "type",
    "low",
    "high",
    "initial",
    "mutate",
    "step",
    "factors",
    "values",
    "log",
    "per_component",
)
# the keys each type takes: a bool or a choice has no bounds; PBT redraws it when it explores,
# PB2 searches it as a number (a bool in [0, 1], on from 0.5; a choice as a rounded index)
_TYPE_KEYS = {
    "float": tuple(k for k in _KEYS if k != "values"),
    "int": tuple(k for k in _KEYS if k != "values"),
    "bool": ("type", "per_component"),
    "choice": ("type", "values", "per_component"),
}


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float = 0.0
    high: float = 1.0
    initial: tuple[float, float] | None = None
    mutate: str = "resample"
    step: float = 0.0
    factors: tuple[float, ...] = (0.8, 1.25)
    values: tuple[Any, ...] = ()
    log: bool = False
    per_component: bool = False

    def clamp(self, value: Any) -> Any:
        if self.type == "float":
            return float(min(max(float(value), self.low), self.high))
        if self.type == "int":  # whole bounds (parse_space refuses others): stays inside
            return int(min(max(round(value), math.ceil(self.low)), math.floor(self.high)))
        return value

    def sample(self, rng: random.Random) -> Any:
        if self.type == "choice":
            return rng.choice(self.values)
        return self.from_unit(rng.random())

    def from_unit(self, u: float) -> Any:
        """The value at quantile `u` in [0, 1) of the initial range (log-uniform where `log`);
        a bool is True for u >= 0.5, a choice takes the `floor(u * k)`-th of its k values."""
        if self.type == "bool":
            return u >= 0.5
        if self.type == "choice":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        low, high = self.initial or (self.low, self.high)
        if self.log:
            value = math.exp(math.log(low) + (math.log(high) - math.log(low)) * u)
        else:
            value = low + (high - low) * u
        return self.clamp(value)

    def to_dict(self) -> dict[str, Any]:
        """The parameter as a space file defines it, as plain data that `parse_space` reads
        back: every key that has an effect (a shift's step, a scale's factors), defaults written
        out, `initial` only where it narrows the bounds (else it is the bounds)."""
        out: dict[str, Any] = {"type": self.type}
        if self.type in ("float", "int"):
            out.update(low=self.low, high=self.high)
            if self.initial is not None and tuple(self.initial) != (self.low, self.high):
                out["initial"] = list(self.initial)
            out["mutate"] = self.mutate
            if self.mutate == "shift":
                out["step"] = self.step
            if self.mutate == "scale":
                out["factors"] = list(self.factors)
            out["log"] = self.log
        if self.type == "choice":
            out["values"] = list(self.values)
        out["per_component"] = self.per_component
        return out

    def neutral(self) -> Any:
        """The value that leaves the plan as it is (the control's), from the registry."""
        return registry.neutral(self.name)

    def mutated(self, value: Any, rng: random.Random, resample_probability: float) -> Any:
        """A perturbed value, always inside [low, high]."""
        if (
            self.type in ("bool", "choice")
            or self.mutate == "resample"
            or rng.random() < resample_probability
        ):
            return self.sample(rng)
        if self.mutate == "shift":
            return self.clamp(value + rng.uniform(-self.step, self.step))
        return self.clamp(value * rng.choice(self.factors))


@dataclass(frozen=True)
class SearchSpace:
    """A validated space: `source` names it in messages; `file` is the `--space` file it was
    read from (None: the package's own)."""

    kind: str
    params: tuple[Param, ...]
    source: str
    file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The space as plain data (`{kind, params: {name: {type, low, ...}}}`), as a run's
        manifest records it; `from_dict` reads it back."""
        return {"kind": self.kind, "params": {p.name: p.to_dict() for p in self.params}}

    @classmethod
    def from_dict(cls, raw: Any, source: str, file: str | None = None) -> SearchSpace:
        """The space `to_dict` wrote, validated again.

        Raises:
            InputError: the data is not a valid space (every problem named).
        """
        kind = raw.get("kind") if isinstance(raw, dict) else None
        return replace(parse_space(raw, source, kind), file=file)

    def expand(self, components: list[str] | tuple[str, ...]) -> SearchSpace:
        """One parameter per component for `per_component` entries (`component_weight_c0`, ...)."""
        expanded: list[Param] = []
        for param in self.params:
            if param.per_component:
                expanded += [_replace_name(param, f"{param.name}_{c}") for c in components]
            else:
                expanded.append(param)
        return replace(self, params=tuple(expanded))

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {p.name: p.sample(rng) for p in self.params}

    def neutral(self) -> dict[str, Any]:
        return {p.name: p.neutral() for p in self.params}

    def quasi_random(self, n: int, seed: int) -> list[dict[str, Any]]:
        """`n` members spread over the initial ranges: a Latin hypercube (McKay, Beckman and
        Conover, 1979; scipy.stats.qmc), so each parameter's range, cut into `n` equal strata,
        has exactly one member in each stratum. Deterministic for a seed."""
        from scipy.stats import qmc

        if n < 1:
            return []
        units = qmc.LatinHypercube(d=len(self.params), seed=seed).random(n)
        return [
            {p.name: p.from_unit(float(u)) for p, u in zip(self.params, row, strict=True)}
            for row in units
        ]

    def mutate(
        self, values: dict[str, Any], rng: random.Random, resample_probability: float = 0.25
    ) -> dict[str, Any]:
        return {
            p.name: p.mutated(values.get(p.name, p.neutral()), rng, resample_probability)
            for p in self.params
        }

    def clamp(self, values: dict[str, Any]) -> dict[str, Any]:
        return {p.name: p.clamp(values[p.name]) for p in self.params if p.name in values}


# how a bool is explored, by the explore step (tune_app/tune/explore.py): said where a bool is refused
_BOOL_EXPLORED = (
    "it is on or off: --scheduler pbt redraws it at random when it explores; pb2 picks it with "
    "its GP as a number in [0, 1], on from 0.5 (at random, as pbt, while the GP has no data)"
)


def _show(value: Any, key: str = "") -> str:
    if value is None:
        return "the bounds" if key == "initial" else "unset"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # as written: an int's bounds are read as floats
    return repr(value) if isinstance(value, str) else str(value)


def space_changes(old: SearchSpace, new: SearchSpace) -> list[str]:
    """What `new` changes in `old`, one line a parameter, e.g. `alpha_shift: high 0.15 -> 0.05`
    (old -> new); empty when both define the same space (comments and key order never count).
    Compared as `to_dict` gives them, so a recorded space (JSON) compares with a loaded one."""
    before, after = old.to_dict()["params"], new.to_dict()["params"]
    lines = []
    for name in [*before, *(n for n in after if n not in before)]:
        if name not in after:
            lines.append(f"{name}: not in the file any more (the run searches it)")
        elif name not in before:
            lines.append(f"{name}: new in the file (the run does not search it)")
        else:
            keys = [*before[name], *(k for k in after[name] if k not in before[name])]
            differ = [
                f"{key} {_show(before[name].get(key), key)} -> {_show(after[name].get(key), key)}"
                for key in keys
                if _plain(before[name].get(key)) != _plain(after[name].get(key))
            ]
            if differ:
                lines.append(f"{name}: {', '.join(differ)}")
    return lines


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _replace_name(param: Param, name: str) -> Param:
    return replace(param, name=name, per_component=False)


def _parse_param(name: str, raw: Any, errors: ErrorList) -> Param | None:
    path = f"params.{name}"
    if not isinstance(raw, dict):
        errors.add(path, "expected a mapping like {type: float, low: 0, high: 1}", raw)
        return None
    count = len(errors.messages)
    kind = raw.get("type")
    for key in raw:
        if key not in _KEYS:
            errors.add(
                f"{path}.{key}", "unknown key", None, f"a parameter takes {', '.join(_KEYS)}"
            )
        elif isinstance(kind, str) and kind in _TYPE_KEYS and key not in _TYPE_KEYS[kind]:
            errors.add(
                f"{path}.{key}",
                f"a {kind} has no bounds" if key in ("low", "high") else f"a {kind} has no {key}",
                raw[key],
                f"a {kind} takes only {', '.join(_TYPE_KEYS[kind])}"
                + (f" ({_BOOL_EXPLORED})" if kind == "bool" else ""),
            )
    if kind not in TYPES:
        errors.add(f"{path}.type", "unknown type", kind, f"use one of {', '.join(TYPES)}")
        return None
    fields: dict[str, Any] = {
        "name": name,
        "type": kind,
        "log": bool(raw.get("log", False)),
        "per_component": bool(raw.get("per_component", False)),
    }
    if kind in ("float", "int"):
        low, high = as_number(raw.get("low")), as_number(raw.get("high"))
        if low is None or high is None or not low < high:
            errors.add(path, "needs numbers low < high", (raw.get("low"), raw.get("high")))
            return None
        if not (math.isfinite(low) and math.isfinite(high)):
            errors.add(path, "needs finite bounds", (raw.get("low"), raw.get("high")))
            return None
        if fields["log"] and low <= 0:
            errors.add(f"{path}.low", "must be > 0 with log: true", low)
        if kind == "int":  # rounding would leave the bounds: 0.5 rounds to 0
            for key, value in (("low", low), ("high", high)):
                if value != int(value):
                    errors.add(
                        f"{path}.{key}",
                        "an int's bounds are whole numbers",
                        raw.get(key),
                        f"use type: float, or {key}: {math.ceil(value) if key == 'low' else math.floor(value)}",
                    )
        fields.update(low=low, high=high)
        initial = raw.get("initial")
        if initial is not None:
            pair = (
                [as_number(v) for v in initial]
                if isinstance(initial, list) and len(initial) == 2
                else None
            )
            if pair is None or None in pair or not low <= pair[0] <= pair[1] <= high:  # type: ignore[operator]
                errors.add(
                    f"{path}.initial", f"must be [a, b] with {low} <= a <= b <= {high}", initial
                )
            elif kind == "int" and any(v != int(v) for v in pair):  # type: ignore[arg-type]
                errors.add(f"{path}.initial", "an int's initial range is whole numbers", initial)
            else:
                fields["initial"] = (pair[0], pair[1])
        mutate = raw.get("mutate", "resample")
        if mutate not in MUTATIONS:
            errors.add(
                f"{path}.mutate", "unknown mutation", mutate, f"use one of {', '.join(MUTATIONS)}"
            )
        fields["mutate"] = mutate
        if mutate == "shift":
            step = as_number(raw.get("step"))
            if step is None or step <= 0:
                errors.add(f"{path}.step", "a shift needs step > 0", raw.get("step"))
            fields["step"] = step or 0.0
        if mutate == "scale":
            factors = raw.get("factors", [0.8, 1.25])
            numbers = [as_number(f) for f in factors] if isinstance(factors, list) else [None]
            if not numbers or any(f is None or f <= 0 for f in numbers):
                errors.add(f"{path}.factors", "must be a list of positive numbers", factors)
            else:
                fields["factors"] = tuple(numbers)
    if kind == "choice":
        values = raw.get("values")
        if not isinstance(values, list) or not values:
            errors.add(f"{path}.values", "a choice needs a non-empty list of values", values)
            return None
        fields["values"] = tuple(values)
    if len(errors.messages) != count:
        return None
    return Param(**fields)


def parse_space(raw: Any, source: str, kind: str | None = None) -> SearchSpace:
    errors = ErrorList(source)
    if not isinstance(raw, dict):
        errors.add("(top level)", "expected a mapping with kind and params", type(raw).__name__)
        errors.raise_if_any()
    for key in raw:
        if key not in ("kind", "params"):
            errors.add(str(key), "unknown key", None, "a search space takes kind, params")
    if kind is not None and "kind" not in raw:
        raw = {**raw, "kind": kind}  # a space without `kind` is taken as the command's
    if kind is not None and raw.get("kind") != kind:
        errors.add("kind", f"this command needs a {kind!r} space", raw.get("kind"))
    params_raw = raw.get("params")
    if not isinstance(params_raw, dict) or not params_raw:
        errors.add("params", "must be a non-empty mapping of parameters", params_raw)
        params_raw = {}
    params = [_parse_param(str(name), body, errors) for name, body in params_raw.items()]
    for param in params:
        if param is not None:
            _check_known(param, raw.get("kind"), errors)
    errors.raise_if_any()
    return SearchSpace(str(raw.get("kind")), tuple(p for p in params if p), source)


def _check_known(param: Param, kind: Any, errors: ErrorList) -> None:
    """A PBT space names only what PBT can change (the registry); a capacity space only model
    capacity. Anything else would be searched but never applied."""
    if kind == "pbt":
        problem = registry.unknown_pbt_param(param.name, param.per_component)
        if problem:
            errors.add(f"params.{param.name}", problem)
        else:
            _check_domain(param, errors)
    elif kind == "capacity" and param.name not in registry.CAPACITY_FIELDS:
        errors.add(
            f"params.{param.name}",
            "unknown capacity parameter",
            None,
            f"use {', '.join(registry.CAPACITY_FIELDS)}",
        )


def _check_domain(param: Param, errors: ErrorList) -> None:
    """A PBT parameter's type and values fit what it changes (the registry's domain): a switch
    is a bool, a number is never one, and every value it can take gives a plan that loads."""
    known = registry.lookup(param.name)
    if known is None:
        return
    path = f"params.{param.name}"
    if known.is_switch:
        bools = param.type == "choice" and all(isinstance(v, bool) for v in param.values)
        if param.type != "bool" and not bools:
            errors.add(f"{path}.type", f"{param.name} is on or off", param.type, "use type: bool")
        return
    if param.type == "bool":
        errors.add(
            f"{path}.type",
            f"{param.name} is a number, not on or off",
            param.type,
            "use type: float with low and high",
        )
        return
    domain = known.domain
    if domain is None:
        return
    fix = f"{param.name} must be {domain}: {domain.why}"
    if param.type == "choice":
        for i, value in enumerate(param.values):
            number = as_number(value)
            if number is None or number not in domain:
                errors.add(f"{path}.values.{i + 1}", "out of range", value, fix)
        return
    for key in ("low", "high"):
        if getattr(param, key) not in domain:
            errors.add(f"{path}.{key}", "out of range", getattr(param, key), fix)


def load_space(path: str | Path | None, default: str, kind: str) -> SearchSpace:
    """Read a search space YAML.

    Args:
        path: a user's YAML file, or None for the package's own `default`.
        default: file name inside the package's `search_spaces/` (e.g. "modifications.yaml").
        kind: "pbt" or "capacity"; the file's `kind` must match.

    Returns:
        The validated space.

    Raises:
        InputError: a missing file, invalid YAML, or every problem of the space at once.
    """
    if path is None:
        text = resources.files(SPACES_PACKAGE).joinpath(default).read_text()
        source = f"search_spaces/{default}"
    else:
        if not Path(path).is_file():
            raise InputError(
                f"--space {path}: no such file (copy one of search_spaces/ and edit it)"
            )
        text, source = Path(path).read_text(), str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from None
    return replace(parse_space(raw, source, kind), file=None if path is None else str(path))


def to_optuna(space: SearchSpace, prefix: str = "") -> dict[str, Any]:
    """Optuna distributions for a space (names prefixed, e.g. `capacity/hidden` for Tune)."""
    from optuna import distributions as dist

    out: dict[str, Any] = {}
    for p in space.params:
        name = prefix + p.name
        if p.type == "float":
            out[name] = dist.FloatDistribution(p.low, p.high, log=p.log)
        elif p.type == "int":
            out[name] = dist.IntDistribution(int(p.low), int(p.high), log=p.log)
        elif p.type == "bool":
            out[name] = dist.CategoricalDistribution([True, False])
        else:
            out[name] = dist.CategoricalDistribution(list(p.values))
    return out

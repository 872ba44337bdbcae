"""Schedule shapes for one knob inside one phase: value as a function of progress t in [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from tune_app.errors import ErrorList

__all__ = ["Constant", "Cosine", "Linear", "OneCycle", "Schedule", "parse_schedule"]


def _cosine(start: float, end: float, t: float) -> float:
    return end + (start - end) * (1.0 + math.cos(math.pi * t)) / 2.0


@dataclass(frozen=True)
class Constant:
    value: float

    def at(self, t: float) -> float:
        return self.value

    @property
    def peak(self) -> float:
        return self.value

    @property
    def final(self) -> float:
        return self.value


@dataclass(frozen=True)
class _StartEnd:
    start: float
    end: float

    @property
    def peak(self) -> float:
        return max(self.start, self.end)

    @property
    def final(self) -> float:
        return self.end


@dataclass(frozen=True)
class Linear(_StartEnd):
    def at(self, t: float) -> float:
        return self.start + (self.end - self.start) * t


@dataclass(frozen=True)
class Cosine(_StartEnd):
    def at(self, t: float) -> float:
        return _cosine(self.start, self.end, t)


@dataclass(frozen=True)
class OneCycle:
    """torch's OneCycleLR shape (cosine up, cosine down), stated by its values, not factors."""

    start: float
    max: float
    end: float
    pct_start: float = 0.3

    def at(self, t: float) -> float:
        if t < self.pct_start:
            return _cosine(self.start, self.max, t / self.pct_start)
        return _cosine(self.max, self.end, (t - self.pct_start) / (1.0 - self.pct_start))

    @property
    def peak(self) -> float:
        return self.max

    @property
    def final(self) -> float:
        return self.end


Schedule = Constant | Linear | Cosine | OneCycle
_SHAPES: dict[str, type[Linear] | type[Cosine] | type[OneCycle]] = {
    "linear": Linear,
    "cosine": Cosine,
    "onecycle": OneCycle,
}


def as_number(value: Any) -> float | None:
    """A YAML scalar as a float, or None. PyYAML reads `1e-5` as a string, so accept that too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def parse_schedule(raw: Any, path: str, errors: ErrorList) -> Schedule | None:
    """Parse `0.01`, `{constant: 0.01}`, `{linear: {start, end}}`, `{cosine: ...}`, `{onecycle: ...}`."""
    number = as_number(raw)
    if number is not None:
        return Constant(number)
    shapes = "a number, {constant: V}, {linear: {start, end}}, {cosine: {start, end}}, or {onecycle: {start, max, end, pct_start}}"
    if not isinstance(raw, dict) or len(raw) != 1:
        errors.add(path, "expected a schedule", raw, f"write {shapes}")
        return None
    ((kind, body),) = raw.items()
    if kind == "constant":
        value = as_number(body)
        if value is None:
            errors.add(f"{path}.constant", "expected a number", body)
            return None
        return Constant(value)
    cls = _SHAPES.get(kind)
    if cls is None:
        errors.add(
            path,
            f"unknown schedule shape {kind!r}",
            None,
            f"use one of: constant, {', '.join(_SHAPES)}",
        )
        return None
    if not isinstance(body, dict):
        errors.add(f"{path}.{kind}", "expected a mapping of the shape's fields", body)
        return None
    names = [f.name for f in fields(cls)]
    required = [n for n in names if not (cls is OneCycle and n == "pct_start")]
    values: dict[str, float] = {}
    for key, item in body.items():
        if key not in names:
            errors.add(
                f"{path}.{kind}.{key}", "unknown key", None, f"{kind} takes {', '.join(names)}"
            )
            continue
        number = as_number(item)
        if number is None:
            errors.add(f"{path}.{kind}.{key}", "expected a number", item)
            continue
        values[key] = number
    for key in required:
        if key not in body:
            errors.add(
                f"{path}.{kind}",
                f"missing key {key!r}",
                None,
                f"{kind} needs {', '.join(required)}",
            )
    if set(required) - set(values):
        return None
    schedule = cls(**values)
    if isinstance(schedule, OneCycle) and not 0.0 < schedule.pct_start < 1.0:
        errors.add(
            f"{path}.onecycle.pct_start", "must lie strictly between 0 and 1", schedule.pct_start
        )
    return schedule


def schedule_values(schedule: Schedule) -> list[tuple[str, float]]:
    """Every number that defines the schedule, with the key it is written under (for range
    checks): `[("", 0.5)]` for a constant, `[("linear.start", 1.2), ("linear.end", -0.1)]`."""
    if isinstance(schedule, Constant):
        return [("", schedule.value)]
    kind = {Linear: "linear", Cosine: "cosine", OneCycle: "onecycle"}[type(schedule)]
    names = ("start", "max", "end") if isinstance(schedule, OneCycle) else ("start", "end")
    return [(f"{kind}.{name}", getattr(schedule, name)) for name in names]


def dump_schedule(schedule: Schedule) -> float | dict[str, dict[str, float]]:
    if isinstance(schedule, Constant):
        return schedule.value
    kind = {Linear: "linear", Cosine: "cosine", OneCycle: "onecycle"}[type(schedule)]
    return {kind: {f.name: getattr(schedule, f.name) for f in fields(schedule)}}

"""The training plan as data: phases of schedules, plus modifications applied from an epoch on.

`Plan.values_at(epoch, step, steps_per_epoch)` is the only place that knows what a knob is worth.
Epochs are 1-based, as in the seed plan ("Epochs 1-100"). The learning rate moves per optimizer
step; every other knob moves per epoch, reaching its `end` value on the phase's last epoch.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tune_app.errors import ErrorList, InputError
from tune_app.plan.modifications import Modification, PhaseSpan, parse_modification
from tune_app.plan.schedules import (
    Schedule,
    as_number,
    dump_schedule,
    parse_schedule,
    schedule_values,
)

__all__ = [
    "SEED_PLAN",
    "Phase",
    "Plan",
    "Settings",
    "apply_overrides",
    "load_plan",
    "parse_yaml",
    "read_plan_dict",
]

SEED_PLAN = "seed_500"
SCHEDULE_KNOBS = ("lr", "teacher_forcing", "weight_decay", "noise", "grad_clip", "alpha")
SETTINGS_KEYS = ("epoch", "phase", *SCHEDULE_KNOBS, "max_lag")
# (lowest, highest, inclusive-low, what to write instead) for every number a knob's schedule uses.
_BOUNDS: dict[str, tuple[float, float, bool, str]] = {
    "lr": (0.0, math.inf, False, "a learning rate must be > 0, e.g. 0.0005"),
    "teacher_forcing": (0.0, 1.0, True, "a teacher-forcing ratio lies in [0, 1]"),
    "weight_decay": (0.0, math.inf, True, "weight decay must be >= 0"),
    "noise": (0.0, math.inf, True, "noise is a standard deviation, >= 0"),
    "grad_clip": (0.0, math.inf, False, "gradient clipping is a norm, > 0"),
    "alpha": (0.0, 1.0, True, "alpha weighs MSE against the temporal loss, in [0, 1]"),
    "curriculum": (0.0, 1.0, False, "curriculum is the fraction of windows admitted, in (0, 1]"),
}


@dataclass(frozen=True)
class Phase:
    epochs: int
    lr: Schedule
    teacher_forcing: Schedule
    weight_decay: Schedule
    noise: Schedule
    grad_clip: Schedule
    alpha: Schedule
    max_lag: int
    component_weights: tuple[float, ...] | None = None
    curriculum: Schedule | None = None


@dataclass(frozen=True)
class Settings:
    """Every knob's value at one (epoch, step)."""

    epoch: int
    phase: int
    lr: float
    teacher_forcing: float
    weight_decay: float
    noise: float
    grad_clip: float
    alpha: float
    max_lag: int
    component_weights: tuple[float, ...] | None
    curriculum: float

    def as_row(self) -> dict[str, float | int]:
        return {key: getattr(self, key) for key in SETTINGS_KEYS}


@dataclass(frozen=True)
class Plan:
    phases: tuple[Phase, ...]
    name: str = "plan"
    modifications: tuple[Modification, ...] = field(default=())

    @cached_property
    def phase_ends(self) -> tuple[int, ...]:
        """Last epoch (1-based) of each phase: (100, 200, 300, 400, 500) for the seed."""
        ends, total = [], 0
        for phase in self.phases:
            total += phase.epochs
            ends.append(total)
        return tuple(ends)

    @property
    def total_epochs(self) -> int:
        return self.phase_ends[-1]

    @property
    def shape(self) -> str:
        """The phases' lengths in words: "5 phases of 2 epochs", "phases of 3, 5 epochs"."""
        lengths = [phase.epochs for phase in self.phases]
        if len(set(lengths)) == 1:
            epochs = f"{lengths[0]} epoch{'s' if lengths[0] != 1 else ''}"
            return f"{len(lengths)} phase{'s' if len(lengths) > 1 else ''} of {epochs}"
        return f"phases of {', '.join(map(str, lengths))} epochs"

    @property
    def fingerprint(self) -> str:
        """12 hex digits of the SHA-256 of the plan's phases and modifications (its name left
        out): two plans that train alike have the same fingerprint, whatever they are called."""
        body = {key: value for key, value in self.to_dict().items() if key != "name"}
        text = json.dumps(body, sort_keys=True, default=float)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def phase_index(self, epoch: int) -> int:
        """0-based index of the phase that holds `epoch`."""
        if not 1 <= epoch <= self.total_epochs:
            raise ValueError(f"epoch {epoch} is outside this plan's 1..{self.total_epochs}")
        for index, end in enumerate(self.phase_ends):
            if epoch <= end:
                return index
        raise AssertionError("unreachable")

    def phase_start(self, index: int) -> int:
        return 1 if index == 0 else self.phase_ends[index - 1] + 1

    def active_modification(self, epoch: int) -> Modification | None:
        active = None
        for mod in self.modifications:
            if mod.from_epoch <= epoch:
                active = mod
        return active

    def lr_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
        """The learning rate before optimizer step `step` (0-based) of `epoch`: the hot path."""
        index = self.phase_index(epoch)
        phase = self.phases[index]
        mod = self.active_modification(epoch)
        scale = 1.0 if mod is None else mod.lr_scale  # the whole schedule, restarts included
        if mod is not None and mod.lr_restart is not None:
            span = PhaseSpan(self.phase_start(index), self.phase_ends[index], phase.lr)
            restarted = mod.lr_restart.lr_at(span, epoch, step, steps_per_epoch, mod.from_epoch)
            if restarted is not None:
                return scale * restarted
        done = (epoch - self.phase_start(index)) * steps_per_epoch + step
        return scale * phase.lr.at(done / (phase.epochs * steps_per_epoch))

    def values_at(self, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> Settings:
        index = self.phase_index(epoch)
        phase = self.phases[index]
        t = (epoch - self.phase_start(index)) / max(phase.epochs - 1, 1)
        mod = self.active_modification(epoch)
        alpha = phase.alpha.at(t)
        teacher_forcing = phase.teacher_forcing.at(t)
        weights = phase.component_weights
        curriculum = phase.curriculum.at(t) if phase.curriculum is not None else 1.0
        weight_decay, noise = phase.weight_decay.at(t), phase.noise.at(t)
        grad_clip = phase.grad_clip.at(t)
        if mod is not None:
            weight_decay *= mod.weight_decay_factor
            noise *= mod.noise_factor
            grad_clip *= mod.grad_clip_scale
            alpha = min(max(alpha + mod.alpha_shift, 0.0), 1.0)
            teacher_forcing = min(max(teacher_forcing + mod.teacher_forcing_shift, 0.0), 1.0)
            weights = mod.component_weights if mod.component_weights is not None else weights
            if mod.curriculum is not None:
                curriculum = mod.curriculum.fraction_at(epoch - mod.from_epoch)
        return Settings(
            epoch=epoch,
            phase=index + 1,
            lr=self.lr_at(epoch, step, steps_per_epoch),
            teacher_forcing=teacher_forcing,
            weight_decay=weight_decay,
            noise=noise,
            grad_clip=grad_clip,
            alpha=alpha,
            max_lag=phase.max_lag,
            component_weights=weights,
            curriculum=curriculum,
        )

    def apply(self, modification: Modification) -> Plan:
        """A new plan with `modification` in force from its `from_epoch` on (later ones dropped)."""
        if not 1 <= modification.from_epoch <= self.total_epochs:
            raise ValueError(
                f"modification from epoch {modification.from_epoch} is outside 1..{self.total_epochs}"
            )
        kept = tuple(m for m in self.modifications if m.from_epoch < modification.from_epoch)
        return replace(self, modifications=(*kept, modification))

    def with_phase_epochs(self, epochs: int) -> Plan:
        """Every phase shortened (or lengthened) to `epochs`; schedules stretch with it."""
        if epochs < 1:
            raise InputError(f"--phase-epochs: must be >= 1 (got {epochs}); e.g. --phase-epochs 2")
        if self.modifications:
            raise InputError(
                "--phase-epochs: this plan carries modifications at fixed epochs; "
                "rescale it only before a search modifies it"
            )
        return replace(self, phases=tuple(replace(p, epochs=epochs) for p in self.phases))

    def to_dict(self) -> dict[str, Any]:
        phases = []
        for phase in self.phases:
            item: dict[str, Any] = {"epochs": phase.epochs}
            for knob in SCHEDULE_KNOBS:
                item[knob] = dump_schedule(getattr(phase, knob))
            item["max_lag"] = phase.max_lag
            if phase.component_weights is not None:
                item["component_weights"] = list(phase.component_weights)
            if phase.curriculum is not None:
                item["curriculum"] = dump_schedule(phase.curriculum)
            phases.append(item)
        out: dict[str, Any] = {"name": self.name, "phases": phases}
        if self.modifications:
            out["modifications"] = [m.to_dict() for m in self.modifications]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "plan") -> Plan:
        return _parse_plan(raw, source)

    @classmethod
    def from_yaml(cls, text: str | bytes, source: str = "plan") -> Plan:
        """The plan in YAML `text` (a file's bytes or its text).

        Raises:
            InputError: binary content, YAML that does not parse (one line each), or a plan
                that does not validate (every problem listed).
        """
        return _parse_plan(parse_yaml(text, source), source)


def _parse_phase(raw: Any, path: str, errors: ErrorList) -> Phase | None:
    if not isinstance(raw, dict):
        errors.add(path, "expected a mapping of knobs", raw)
        return None
    known = {"epochs", *SCHEDULE_KNOBS, "max_lag", "component_weights", "curriculum"}
    for key in raw:
        if key not in known:
            errors.add(
                f"{path}.{key}", "unknown key", None, f"a phase takes {', '.join(sorted(known))}"
            )
    epochs = raw.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        errors.add(f"{path}.epochs", "must be a whole number >= 1", epochs, "e.g. epochs: 100")
    schedules: dict[str, Schedule | None] = {}
    for knob in (*SCHEDULE_KNOBS, "curriculum"):
        if knob not in raw:
            if knob != "curriculum":
                errors.add(f"{path}.{knob}", "missing", None, "every phase sets every knob")
            schedules[knob] = None
            continue
        schedule = parse_schedule(raw[knob], f"{path}.{knob}", errors)
        schedules[knob] = schedule
        if schedule is not None:
            low, high, low_ok, fix = _BOUNDS[knob]
            for key, value in schedule_values(schedule):  # every bad value, not the first
                inside = (value >= low if low_ok else value > low) and value <= high
                if not inside or not math.isfinite(value):
                    where = f"{path}.{knob}.{key}" if key else f"{path}.{knob}"
                    errors.add(where, "out of range", value, fix)
    max_lag = raw.get("max_lag")
    if isinstance(max_lag, bool) or not isinstance(max_lag, int) or max_lag < 1:
        errors.add(f"{path}.max_lag", "must be a whole number >= 1", max_lag, "e.g. max_lag: 10")
    weights = _parse_weights(raw.get("component_weights"), f"{path}.component_weights", errors)
    if errors:
        return None
    assert isinstance(epochs, int) and isinstance(max_lag, int)
    return Phase(
        epochs=epochs,
        max_lag=max_lag,
        component_weights=weights,
        **schedules,  # type: ignore[arg-type]
    )


def _parse_weights(raw: Any, path: str, errors: ErrorList) -> tuple[float, ...] | None:
    if raw is None:
        return None
    numbers = [as_number(w) for w in raw] if isinstance(raw, list) and raw else None
    if numbers is None or any(w is None or not w > 0 for w in numbers):
        errors.add(
            path, "must be a non-empty list of positive numbers", raw, "e.g. [1.0, 1.5, 1.0]"
        )
        return None
    return tuple(float(w) for w in numbers if w is not None)


def _parse_plan(raw: Any, source: str) -> Plan:
    errors = ErrorList(source)
    if not isinstance(raw, dict):
        errors.add("(top level)", "expected a mapping with 'phases'", type(raw).__name__)
        errors.raise_if_any()
    for key in raw:
        if key not in ("name", "phases", "modifications"):
            errors.add(str(key), "unknown key", None, "a plan takes name, phases, modifications")
    raw_phases = raw.get("phases")
    if not isinstance(raw_phases, list) or not raw_phases:
        errors.add("phases", "must be a non-empty list of phases", raw_phases)
        raw_phases = []
    phases = [_parse_phase(p, f"phases.{i + 1}", errors) for i, p in enumerate(raw_phases)]
    mods = [
        parse_modification(m, f"modifications.{i + 1}", errors)
        for i, m in enumerate(raw.get("modifications") or [])
    ]
    name = raw.get("name", "plan")
    if not isinstance(name, str):
        errors.add("name", "must be a string", name)
    errors.raise_if_any()
    plan = Plan(phases=tuple(p for p in phases if p), name=name)
    for i, mod in enumerate(m for m in mods if m):
        if not 1 <= mod.from_epoch <= plan.total_epochs:
            errors.add(
                f"modifications.{i + 1}.from_epoch",
                f"outside 1..{plan.total_epochs}",
                mod.from_epoch,
            )
    errors.raise_if_any()
    ordered = tuple(sorted((m for m in mods if m), key=lambda m: m.from_epoch))
    return replace(plan, modifications=ordered)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply `phases.2.alpha=0.7`-style overrides (phases numbered from 1) to a raw plan dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set {item!r}: expected PATH=VALUE, e.g. --set phases.2.alpha=0.7")
        value = yaml.safe_load(text)
        parts = key.split(".")
        node: Any = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or not 1 <= int(part) <= len(node):
                    raise InputError(
                        f"--set {item!r}: {'.'.join(parts[: depth + 1])} is not a phase number "
                        f"1..{len(node)} (phases are numbered from 1)"
                    )
                if last:
                    node[int(part) - 1] = value
                else:
                    node = node[int(part) - 1]
            elif isinstance(node, dict):
                if last:
                    node[part] = value  # unknown keys are caught by validation, with the fix
                elif part not in node:
                    raise InputError(
                        f"--set {item!r}: the plan has no {'.'.join(parts[: depth + 1])}"
                    )
                else:
                    node = node[part]
            else:
                raise InputError(
                    f"--set {item!r}: {'.'.join(parts[:depth])} holds a value, not a mapping"
                )
    return raw


def parse_yaml(content: str | bytes, source: str) -> Any:
    """YAML `content` (a file's bytes or text) as data.

    Raises:
        InputError: one line: binary content (not UTF-8 text, or holding NUL bytes: a parquet
            file, a checkpoint) or YAML that does not parse (the problem, its line and column).
    """
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8")
        except UnicodeDecodeError:
            content = "\x00"
    if "\x00" in content:
        raise InputError(
            f"{source}: not a plan YAML file: binary content (not UTF-8 text); give a plan YAML "
            "file (see `tune-app plan show`)"
        )
    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"{source}: not valid YAML: {problem}{where}") from None


def read_plan_dict(path: str | Path | None) -> tuple[dict[str, Any], str]:
    """The raw plan mapping and its source name; `None` means the shipped seed plan.

    Raises:
        InputError: one line: no such file, binary content, YAML that does not parse, or YAML
            that is not a mapping.
    """
    if path is None or str(path) == SEED_PLAN:
        content: str | bytes = (
            resources.files("tune_app.plans").joinpath(f"{SEED_PLAN}.yaml").read_text()
        )
        source = f"{SEED_PLAN}.yaml"
    else:
        file = Path(path)
        if not file.is_file():
            raise InputError(f"--plan {path}: no such file; omit --plan for the seed plan")
        content, source = file.read_bytes(), str(path)
    raw = parse_yaml(content, source)
    if not isinstance(raw, dict):
        raise InputError(
            f"{source}: not a plan: expected a YAML mapping with 'phases' (got "
            f"{type(raw).__name__})"
        )
    return raw, source


def load_plan(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    phase_epochs: int | None = None,
) -> Plan:
    """Read, override, validate and (optionally) shorten a plan. Raises InputError listing all problems."""
    raw, source = read_plan_dict(path)
    plan = Plan.from_dict(apply_overrides(raw, overrides), source)
    return plan.with_phase_epochs(phase_epochs) if phase_epochs is not None else plan

"""How a Ray run goes, as plain frozen dataclasses: where and with what resources (`Launch`),
and each command's own settings (`SearchOptions`, `CapacityOptions`, `CompareOptions`).

Their defaults are defined here and nowhere else: the command line's flags default to None and
name these fields. A field made with `kept(...)` is a setting of the run: its manifest records
it (`kept_settings`) and `--resume` goes on with the recorded value (`from_record`), refusing a
flag that differs (cli/resume.py). The other fields say where and with what resources it runs,
which a resumed run may change. No Ray here: the command line imports this module to build its
parser.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from tune_app.tune.selection import DEFAULT_SELECTION

if TYPE_CHECKING:
    from tune_app.runs.storage import Location

__all__ = [
    "OPTIONS",
    "SCHEDULERS",
    "CapacityOptions",
    "CompareOptions",
    "Launch",
    "SearchOptions",
    "from_record",
    "kept",
    "kept_names",
    "kept_settings",
]

SCHEDULERS = ("pbt", "pb2")  # a search's explore step: random perturbation, GP bandit
_KEPT, _UNRECORDED = "tune_app.kept", "tune_app.unrecorded"

Options = TypeVar("Options")


def kept(default: Any, *, unrecorded: Any = MISSING) -> Any:
    """A dataclass field that is a setting of the run: recorded in its manifest, kept on
    `--resume`.

    Args:
        default: the field's default.
        unrecorded: what a run whose manifest lacks the field (an older run) went on with;
            the default when not given.

    Returns:
        The `dataclasses.field`.
    """
    before = default if unrecorded is MISSING else unrecorded
    return field(default=default, metadata={_KEPT: True, _UNRECORDED: before})


def _kept_fields(cls: type) -> list[Field[Any]]:
    return [f for f in fields(cls) if f.metadata.get(_KEPT)]


def kept_names(cls: type) -> tuple[str, ...]:
    """The names of `cls`'s fields made with `kept` (the settings a run records), in order."""
    return tuple(f.name for f in _kept_fields(cls))


def kept_settings(*settings: Any) -> dict[str, Any]:
    """What a run's manifest records of `settings` (dataclass instances): their kept fields."""
    return {name: getattr(s, name) for s in settings for name in kept_names(type(s))}


def from_record(cls: type[Options], record: Any) -> Options:
    """`cls` with the kept settings that `record` (a `RunManifest`) holds: a field the record
    lacks (None: an older run) takes the value such a run went on with.

    Args:
        cls: an options dataclass of this module.
        record: an object with an attribute per kept field (None where not recorded).

    Returns:
        The options the recorded run goes on with.
    """
    values = {}
    for f in _kept_fields(cls):
        value = getattr(record, f.name, None)
        values[f.name] = f.metadata[_UNRECORDED] if value is None else value
    return cls(**values)


@dataclass(frozen=True)
class Launch:
    """Where and how a run goes: storage, name, cluster, resources, resume."""

    name: str | None = None  # None: KIND-TIMESTAMP
    storage: str = "results"  # a local path or a URI (s3://bucket/prefix)
    address: str | None = None  # the Ray cluster to join (None: a Ray of its own, or RAY_ADDRESS)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # trials train on cuda when > 0
    resume: bool = False
    max_failures: int = kept(2)  # retries of a crashed trial from its last checkpoint
    wait_for_resources: float = 60.0  # seconds to wait on a cluster for a node that fits a trial
    verbose: int = 1

    @property
    def device(self) -> str:
        """Where the trials train: "cuda" when they ask for GPUs, else "cpu"."""
        return "cuda" if self.gpus_per_trial > 0 else "cpu"

    def run_name(self, kind: str) -> str:
        return self.name or f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"

    @cached_property
    def root(self) -> Location:
        """`storage` resolved, once. Raises InputError for a URI pyarrow cannot open."""
        from tune_app.runs.storage import locate

        return locate(self.storage)

    def location(self, kind: str) -> Location:
        return self.root.join(self.run_name(kind))


@dataclass(frozen=True)
class SearchOptions:
    """A PBT search's settings (tune/pbt.py)."""

    population: int = kept(4)  # members, the control included
    perturb_every: int | None = kept(None)  # epochs between rounds; None: one phase
    quantile_fraction: float = kept(0.25)  # the bottom fraction that copies the top one
    resample_probability: float = 0.25
    scheduler: str = kept("pbt")  # the explore step, one of SCHEDULERS
    # what a round ranks members on (tune/selection.py); a run that did not record it ranked by
    # truncation, the only rule then
    selection: str = kept(DEFAULT_SELECTION, unrecorded="truncation")


@dataclass(frozen=True)
class CapacityOptions:
    """A capacity search's settings: Optuna's TPE proposes, ASHA stops the weak early."""

    trials: int = kept(8)
    grace_epochs: int | None = kept(None)  # ASHA's first rung; None: one phase
    reduction_factor: int = 2
    max_concurrent: int = kept(2)


@dataclass(frozen=True)
class CompareOptions:
    """A comparison's seeds: every plan trains once on each of seed_offset .. + seeds - 1."""

    seeds: int = kept(5)
    seed_offset: int = kept(1000)  # away from a search's seeds

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seed_offset, self.seed_offset + self.seeds))


# each Ray command's own settings (a baseline has none beyond its launch)
OPTIONS: dict[str, type] = {
    "search": SearchOptions,
    "capacity": CapacityOptions,
    "compare": CompareOptions,
}

"""The files a run writes and other layers read, one frozen dataclass each, with its file name.

Nobody reads these files key by key: a writer builds the record and calls `to_json()`, a reader
calls `read()` / `from_dict()`. No Ray and no torch here, so every layer may use them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tune_app.errors import CheckpointError, InputError
from tune_app.runs.storage import Location
from tune_app.training.normalisation import Normalisation

__all__ = [
    "ARM_KEY",
    "BEST_MODEL_CONFIG",
    "CAPACITY_KEY",
    "CERTIFICATE",
    "CHECKPOINT_PREFIX",
    "COMPARISON",
    "EXPORT_CONFIG",
    "EXPORT_LINEAGE",
    "EXPORT_PLAN",
    "EXPORT_WEIGHTS",
    "INTERVAL_LOSSES",
    "JOURNAL",
    "MANIFEST",
    "MEMBER_KEY",
    "META_FILE",
    "METRICS_FILE",
    "ROUNDS_KEY",
    "SPEC_KEY",
    "TRIAL_PARAMS",
    "ArmScore",
    "Certificate",
    "CheckpointMeta",
    "CompareResult",
    "Comparison",
    "ExportConfig",
    "JournalEvent",
    "Normalisation",
    "PairedDifference",
    "RoundEvent",
    "RunManifest",
    "SearchMember",
    "read_events",
    "read_journal",
    "read_rounds",
    "scan_checkpoints",
]

MANIFEST = "tune_app_run.json"  # at the top of every Ray run directory
JOURNAL = "pbt_journal.jsonl"  # a search's exploit/explore events, one JSON object a line
META_FILE = "meta.json"  # inside every checkpoint directory, next to state.pt
METRICS_FILE = "metrics.parquet"  # every epoch behind a checkpoint / an export / a local run
EXPORT_CONFIG = "config.json"  # in a `tune-app best` export
EXPORT_WEIGHTS = "best_model.pth"
EXPORT_PLAN = "plan.yaml"
EXPORT_LINEAGE = "lineage.json"
COMPARISON = "comparison.json"  # in a compare run (and a search's certify/ and ablate/ runs)
CERTIFICATE = "certificate.json"  # in a certified search run, and in its `tune-app best` export
BEST_MODEL_CONFIG = "best_model_config.json"  # in a capacity run: its best trial's model
TRIAL_PARAMS = "params.json"  # Tune's copy of a trial's config
CHECKPOINT_PREFIX = "checkpoint_"  # Tune's checkpoint folders inside a trial folder
# keys of a trial's Tune config
SPEC_KEY = "spec"  # the RunSpec as a dict
CAPACITY_KEY = "capacity"  # a capacity search's {hidden, layers, dropout, cell, input_len}
MEMBER_KEY = "member"  # a PBT search's SearchMember
ROUNDS_KEY = "rounds"  # a PBT search's {"every": epochs between rounds}
ARM_KEY = "arm"  # a compare trial's {"label", "seed", "plan"}: which plan, on which seed
# in a search member's result at a round's epoch: its val_free_loss over the epochs since the
# previous round, oldest first (the selection rule's data; see tune/selection.py)
INTERVAL_LOSSES = "val_free_interval"


def _known(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in raw.items() if k in names}


def _dumps(record: Any) -> bytes:
    return json.dumps(asdict(record), indent=2, default=float).encode()


@dataclass(frozen=True)
class CheckpointMeta:
    """`meta.json`: what a checkpoint is, readable without loading its weights.

    `data_path` is the file the run trained on (None: built-in synthetic data); `params` a PBT
    member's parameters (None outside a search); `normalisation` the z-score statistics and
    component names it trained with (None: written before they were stored).
    """

    epoch: int
    phase: int
    metrics: dict[str, float]
    data_fingerprint: str
    components: tuple[str, ...]
    plan: dict[str, Any]
    code_fingerprint: str
    versions: dict[str, str]
    data_path: str | None = None
    params: dict[str, Any] | None = None
    version: int = 0  # a PBT member's number of exploits when it wrote this checkpoint
    normalisation: Normalisation | None = None

    def to_json(self) -> bytes:
        return _dumps(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CheckpointMeta:
        raw = _known(cls, raw)
        return cls(
            **{
                **raw,
                "components": tuple(raw.get("components") or ()),
                "normalisation": Normalisation.from_dict(raw.get("normalisation")),
            }
        )

    @classmethod
    def read(cls, checkpoint: Location) -> CheckpointMeta:
        """Raises CheckpointError for a missing or unreadable (half-written) meta.json."""
        try:
            return cls.from_dict(json.loads(checkpoint.join(META_FILE).read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise CheckpointError(
                f"checkpoint {checkpoint.uri}: unreadable {META_FILE} ({exc})"
            ) from None


def scan_checkpoints(folder: Location) -> list[tuple[Location, CheckpointMeta]]:
    """Every checkpoint folder directly under `folder` with a readable meta.json, oldest first.
    A half-written one is never mistaken for a checkpoint."""
    found = []
    for child in folder.children():
        if child.name.startswith(CHECKPOINT_PREFIX) and child.join(META_FILE).exists():
            try:
                found.append((child, CheckpointMeta.read(child)))
            except CheckpointError:
                continue
    return sorted(found, key=lambda item: item[1].epoch)


@dataclass(frozen=True)
class SearchMember:
    """A PBT member, as a trial's config carries it under MEMBER_KEY.

    `version` counts the exploits it made; `restore` (after one) names the donor's checkpoint it
    continues from: `{"trial_dir", "epoch", "version", "donor"}` (the folder in the run, the
    round's epoch, the donor's own version then, the donor's trial id)."""

    index: int
    control: bool
    params: dict[str, Any]
    version: int = 0
    restore: dict[str, Any] | None = None

    @classmethod
    def of_config(cls, config: dict[str, Any]) -> SearchMember | None:
        """The member in a trial's config (Tune's params.json), or None outside a search."""
        raw = config.get(MEMBER_KEY)
        if not isinstance(raw, dict):
            return None
        return cls(
            int(raw.get("index", 0)),
            bool(raw.get("control")),
            dict(raw.get("params", {})),
            int(raw.get("version", 0)),
            raw.get("restore"),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JournalEvent:
    """An exploit line of `pbt_journal.jsonl`: at the round of `epoch`, `trial` (member
    `member`) copied `donor`'s checkpoint of that epoch (in folder `donor_dir`) and explored from
    the donor's parameters (`explore`: "pbt", "pb2", or PBT standing in for PB2 without data).
    `effective` is not written: `Run.journal` works out whether the explored parameters train
    any differently from the donor's (None: not known, an older journal without them)."""

    epoch: int
    trial: str
    donor: str
    val_free_loss: float | None = None
    donor_val_free_loss: float | None = None
    old: dict[str, Any] = field(default_factory=dict)
    donor_params: dict[str, Any] = field(default_factory=dict)
    new: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0
    event: str = "exploit"
    member: int | None = None
    donor_member: int | None = None
    explore: str = "pbt"
    donor_dir: str | None = None
    effective: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RoundEvent:
    """A round line of `pbt_journal.jsonl`: the ranking at `epoch` (best first: trial, member,
    val_free_loss at `epoch`, fitness under the selection rule, params), the exploits (trial,
    donor) and every member left alone, with why. `selection`: the rule that ranked the round
    (`tune/selection.py`; journals written before the choice existed ranked by truncation)."""

    epoch: int
    ranking: tuple[dict[str, Any], ...] = ()
    exploits: tuple[dict[str, Any], ...] = ()
    left_alone: tuple[dict[str, Any], ...] = ()
    time: float = 0.0
    event: str = "round"
    selection: str = "truncation"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _journal_lines(run: Location) -> list[dict[str, Any]]:
    file = run.join(JOURNAL)
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def _event(raw: dict[str, Any]) -> RoundEvent | JournalEvent | None:
    """A journal line as its record: a round, an exploit (older journals hold only these,
    without an `event` field), or None for a line of neither kind."""
    if raw.get("event") == "round":
        known = _known(RoundEvent, raw)
        for key in ("ranking", "exploits", "left_alone"):
            known[key] = tuple(known.get(key) or ())
        return RoundEvent(**known)
    if raw.get("event", "exploit") == "exploit" and raw.get("donor") is not None:
        return JournalEvent(**_known(JournalEvent, raw))
    return None


def read_events(run: Location) -> list[RoundEvent | JournalEvent]:
    """Every round and exploit of a search run, in the journal's order (oldest first).

    Raises:
        ValueError: a line that is not JSON (the journal is rewritten whole and atomically, so
            only a file damaged from outside has one).
    """
    return [event for raw in _journal_lines(run) if (event := _event(raw)) is not None]


def read_journal(run: Location) -> list[JournalEvent]:
    """The exploit events of a search run, oldest first."""
    return [event for event in read_events(run) if isinstance(event, JournalEvent)]


def read_rounds(run: Location) -> list[RoundEvent]:
    """The PBT rounds of a search run, oldest first."""
    return [event for event in read_events(run) if isinstance(event, RoundEvent)]


@dataclass(frozen=True)
class RunManifest:
    """`tune_app_run.json`: what a Ray run is (kind, spec, data, ranking) and, by kind, its
    search settings: what `--resume` goes on with (None: not recorded by an older run)."""

    kind: str
    name: str
    spec: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    components: tuple[str, ...] = ()
    rank: dict[str, Any] = field(default_factory=dict)
    tune_app_version: str = ""
    created: float = 0.0
    space: str | None = None  # the search space's name: its --space file, or search_spaces/NAME
    space_file: str | None = None  # the --space file as given (None: the package's own space)
    # the space as it was parsed (SearchSpace.to_dict), which --resume checks the file against
    space_content: dict[str, Any] | None = None
    population: int | None = None
    perturb_every: int | None = None
    scheduler: str | None = None  # a search's explore step: "pbt" or "pb2"
    selection: str | None = None  # a search's selection rule (None: an older run, truncation)
    quantile_fraction: float | None = None
    members: tuple[dict[str, Any], ...] = ()
    trials: int | None = None
    grace_epochs: int | None = None
    max_concurrent: int | None = None
    max_failures: int | None = None  # retries of a crashed trial (Ray keeps it on --resume)
    seeds: int | None = None  # a compare run's seed count: seeds seed_offset .. + seeds - 1
    seed_offset: int | None = None
    # a compare run's plans: {"label", "source", "fingerprint", "plan"} each
    arms: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> bytes:
        return _dumps(self)

    @classmethod
    def read(cls, run: Location) -> RunManifest:
        """Raises InputError when `run` holds no manifest (not a tune_app run)."""
        file = run.join(MANIFEST)
        if not file.exists():
            if run.join("state.pt").exists() or run.join("checkpoints").exists():
                raise InputError(
                    f"RUN {run.uri}: a checkpoint, not a run (no {MANIFEST}): `tune-app best` "
                    "exports the best checkpoint of a baseline/search/capacity run; this one "
                    "already is one: pass it to tune-app evaluate, generate, continue or "
                    "train --resume"
                )
            raise InputError(
                f"RUN {run.uri}: not a tune_app run (no {MANIFEST}); pass the folder a run "
                "command made"
            )
        try:
            raw = _known(cls, json.loads(file.read_text()))
        except ValueError as exc:
            raise InputError(f"RUN {run.uri}: unreadable {MANIFEST} ({exc})") from None
        raw.setdefault("name", run.name)
        raw.setdefault("kind", "unknown")
        return cls(
            **{
                **raw,
                "components": tuple(raw.get("components") or ()),
                "members": tuple(raw.get("members") or ()),
                "arms": tuple(raw.get("arms") or ()),
            }
        )


@dataclass(frozen=True)
class ExportConfig:
    """`config.json` of a `tune-app best` export: where the weights come from and how to
    rebuild the run that made them (`tune-app train --replay EXPORT`), and the z-score
    statistics and component names any later data is read with (None: an older export)."""

    run: str
    kind: str
    trial: str
    checkpoint: str
    epoch: int
    metric: str
    value: float
    metrics: dict[str, float]
    model: dict[str, Any]
    data: dict[str, Any]
    train: dict[str, Any]
    seed: int
    data_fingerprint: str
    data_path: str | None
    components: tuple[str, ...]
    code_fingerprint: str
    versions: dict[str, str]
    replay: str
    normalisation: Normalisation | None = None

    def to_json(self) -> bytes:
        return _dumps(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ExportConfig:
        raw = _known(cls, raw)
        return cls(
            **{
                **raw,
                "components": tuple(raw.get("components") or ()),
                "normalisation": Normalisation.from_dict(raw.get("normalisation")),
            }
        )


@dataclass(frozen=True)
class ArmScore:
    """One trial of a comparison: plan `arm` trained on `seed`, scored on the test split with
    the weights of its best-validation checkpoint (epoch `epoch`): `mse_z` is the mean over
    components of the free-running forecasts' MSE in the train split's z-units, `components`
    the same per component. `status`: "scored", or why the trial has no score (`mse_z`
    None): "diverged" (its loss became non-finite or exploded) or "failed" (it ended without
    finishing the plan: an error after its retries); either counts against its plan."""

    arm: str
    seed: int
    trial: str
    epoch: int
    val_free_loss: float | None
    mse_z: float | None
    components: dict[str, float] = field(default_factory=dict)
    status: str = "scored"


@dataclass(frozen=True)
class PairedDifference:
    """Plan B against plan A on one score (`score`: "mean" or a component) over paired seeds.

    Per seed, `log_ratios` log(B / A) (negative: B's error is lower) and, to read, the relative
    difference (B - A) / A (`differences`); both None on a seed where one plan has no score
    (it diverged or its trial failed: `failed_a`, `failed_b` name those seeds, each a loss for
    that plan). `mean` is the relative difference of the seeds' geometric means,
    exp(mean log ratio) - 1 (None: no seed where both plans have a score), `low` and `high` the
    95 % t interval of the mean log ratio transformed back the same way (None under two such
    seeds); the Wilcoxon signed-rank p-value on the log ratios (None with one seed); on how many
    seeds B was better and worse (a failure counted against its plan); the `verdict`
    ("better", "worse", "no difference", "one seed", "no result") and the sentence saying it."""

    score: str
    seeds: tuple[int, ...]
    differences: tuple[float | None, ...]
    mean: float | None
    low: float | None
    high: float | None
    p_value: float | None
    better: int
    worse: int
    verdict: str
    text: str
    log_ratios: tuple[float | None, ...] = ()
    failed_a: tuple[int, ...] = ()
    failed_b: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PairedDifference:
        raw = _known(cls, raw)
        return cls(
            **{
                **raw,
                **{
                    key: tuple(raw.get(key) or ())
                    for key in ("seeds", "differences", "log_ratios", "failed_a", "failed_b")
                },
            }
        )


@dataclass(frozen=True)
class Comparison:
    """Plan B against plan A (`a`, `b`: their labels in the run; `*_source`: where each came
    from; `*_fingerprint`: `Plan.fingerprint`), trained on the same `seeds`: every trial's
    scores, the difference on the mean `mse_z` and per component, the best naive forecast's
    test `mse_z` (the same for every trial: it depends on the data only) and how the interval
    was computed (`interval`). Seeds where a trial has no score are in `left_out`, with why."""

    a: str
    b: str
    a_source: str
    b_source: str
    a_fingerprint: str
    b_fingerprint: str
    seeds: tuple[int, ...]
    a_scores: tuple[ArmScore, ...]
    b_scores: tuple[ArmScore, ...]
    mean: PairedDifference
    components: tuple[PairedDifference, ...]
    naive: str
    naive_mse_z: float
    interval: str
    left_out: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Comparison:
        raw = _known(cls, raw)
        scores = {
            key: tuple(ArmScore(**_known(ArmScore, s)) for s in raw.get(key) or ())
            for key in ("a_scores", "b_scores")
        }
        return cls(
            **{
                **raw,
                **scores,
                "seeds": tuple(raw.get("seeds") or ()),
                "mean": PairedDifference.from_dict(raw["mean"]),
                "components": tuple(
                    PairedDifference.from_dict(c) for c in raw.get("components") or ()
                ),
                "left_out": tuple(raw.get("left_out") or ()),
            }
        )


def _read_record(cls: Any, folder: Location, name: str) -> Any:
    """`cls.from_dict` of the JSON file `name` in `folder`, or None without one.
    Raises InputError for a file that cannot be read as one."""
    file = folder.join(name)
    if not file.exists():
        return None
    try:
        return cls.from_dict(json.loads(file.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise InputError(
            f"{file.uri}: unreadable ({exc}); move it away and run the command that wrote it again"
        ) from None


@dataclass(frozen=True)
class CompareResult:
    """`comparison.json` of a compare run: its comparisons, written when every trial ended."""

    comparisons: tuple[Comparison, ...]
    created: float = 0.0

    def to_json(self) -> bytes:
        return _dumps(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CompareResult:
        comparisons = tuple(Comparison.from_dict(c) for c in raw.get("comparisons") or ())
        return cls(comparisons, float(raw.get("created", 0.0)))

    @classmethod
    def read(cls, run: Location) -> CompareResult | None:
        """The run's comparison.json, None before it was written."""
        found: CompareResult | None = _read_record(cls, run, COMPARISON)
        return found


@dataclass(frozen=True)
class Certificate:
    """`certificate.json` of a search run (`tune-app certify`), copied by `tune-app best`: the
    control's plan (A) against the winner's plan (B), both trained from scratch on seeds the
    search did not use; the winner is trial `winner` (`winner_label`) at epoch `winner_epoch`,
    the best checkpoint `tune-app best` exports. `comparison` is None where the winner's plan is
    the control's (`note` says so). `ablations`: the full winner's plan (A) against it with one
    family of modifications removed (B), one comparison per family it uses."""

    run: str
    winner: str
    winner_label: str
    winner_epoch: int
    control: str | None
    comparison: Comparison | None
    ablations: tuple[Comparison, ...] = ()
    note: str = ""
    created: float = 0.0

    def to_json(self) -> bytes:
        return _dumps(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Certificate:
        raw = _known(cls, raw)
        comparison = raw.get("comparison")
        return cls(
            **{
                **raw,
                "comparison": Comparison.from_dict(comparison) if comparison else None,
                "ablations": tuple(Comparison.from_dict(c) for c in raw.get("ablations") or ()),
            }
        )

    @classmethod
    def read(cls, run: Location) -> Certificate | None:
        """The certificate in `run` (a search run or an export), None if it has none."""
        found: Certificate | None = _read_record(cls, run, CERTIFICATE)
        return found

"""Long-format tables -> validated series -> normalised windows for train / val / test.

Splits are by time inside each series at floor(0.70 T) and floor(0.85 T). A val or test window
is one whose outputs lie wholly inside that part (its inputs may reach back). z-score statistics
come from the train parts only. Each train window's difficulty (the error of a persistence
forecast, in normalised units) is computed once here, for curriculum.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import torch

from tune_app.errors import InputError

__all__ = [
    "DataConfig",
    "Dataset",
    "Gap",
    "SeriesTable",
    "Windows",
    "find_gaps",
    "load_dataset",
    "read_series",
]

ID, STEP = "series_id", "step"


@dataclass(frozen=True)
class DataConfig:
    input_len: int = 48
    output_len: int = 24
    stride: int = 1
    train_frac: float = 0.70
    val_frac: float = 0.15
    components: tuple[str, ...] | None = None
    fill: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["components"] = list(self.components) if self.components else None
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataConfig:
        raw = dict(raw)
        if raw.get("components"):
            raw["components"] = tuple(raw["components"])
        return cls(**raw)


@dataclass(frozen=True)
class SeriesTable:
    series_ids: tuple[str, ...]
    components: tuple[str, ...]
    values: tuple[np.ndarray, ...]  # per series, [T, C] float32, ordered by step
    fingerprint: str
    gaps: tuple[Gap, ...] = ()  # only ever non-empty when read with allow_gaps (inspect)


@dataclass
class Windows:
    inputs: torch.Tensor  # [N, input_len, C]
    targets: torch.Tensor  # [N, output_len, C]
    series: np.ndarray  # [N] index into series_ids
    starts: np.ndarray  # [N] first input step's position inside its series
    difficulty: torch.Tensor  # [N] persistence-forecast error

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def to(self, device: torch.device | str) -> Windows:
        return Windows(
            self.inputs.to(device),
            self.targets.to(device),
            self.series,
            self.starts,
            self.difficulty.to(device),
        )


@dataclass
class Dataset:
    table: SeriesTable
    config: DataConfig
    mean: np.ndarray
    std: np.ndarray
    train: Windows
    val: Windows
    test: Windows

    @property
    def components(self) -> tuple[str, ...]:
        return self.table.components

    @property
    def fingerprint(self) -> str:
        return self.table.fingerprint

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(
            self.table,
            self.config,
            self.mean,
            self.std,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
        )

    def normalise(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def denormalise(self, values: np.ndarray) -> np.ndarray:
        return values * self.std + self.mean


def _read_arrow(path: Path) -> pa.Table:
    if not path.is_file():
        raise InputError(
            f"--data {path}: no such file; make one with `tune-app data make-synthetic --out FILE`"
        )
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path)
        if suffix == ".csv":
            # ids stay text: "01", "1" and "007" are three series, not the integers 1, 1, 7
            strings = pacsv.ConvertOptions(column_types={ID: pa.string()})
            return pacsv.read_csv(path, convert_options=strings)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"--data {path}: cannot be read as {suffix[1:]}: {exc}") from None
    raise InputError(f"--data {path}: not a parquet or CSV file (expected .parquet or .csv)")


@dataclass(frozen=True)
class Gap:
    """Steps missing inside a series: `length` steps from `first_missing` on."""

    series_id: str
    first_missing: int
    length: int


def find_gaps(frame: pd.DataFrame) -> list[Gap]:
    """Every run of missing steps inside each series of a frame sorted by (series_id, step)."""
    steps = frame[STEP].to_numpy(dtype=np.int64)
    ids = frame[ID].to_numpy()
    jump = np.diff(steps)
    inside = (ids[1:] == ids[:-1]) & (jump > 1)
    return [Gap(str(ids[i]), int(steps[i]) + 1, int(jump[i]) - 1) for i in np.flatnonzero(inside)]


def _fill(frame: pd.DataFrame, columns: list[str], how: str) -> pd.DataFrame:
    """Missing steps become rows; NaN/inf take the series' last value (its first, at the start).
    `frame` is sorted by (series_id, step)."""
    if how != "ffill":
        raise InputError(
            f"--fill {how!r}: unknown; the only fill is 'ffill' (carry the last value forward)"
        )
    if find_gaps(frame):
        full = frame.groupby(ID, sort=False)[STEP].agg(["min", "max"])
        index = pd.MultiIndex.from_tuples(
            [(sid, step) for sid, (lo, hi) in full.iterrows() for step in range(lo, hi + 1)],
            names=[ID, STEP],
        )
        frame = frame.set_index([ID, STEP]).reindex(index).reset_index()
    frame[columns] = frame[columns].replace([np.inf, -np.inf], np.nan)
    grouped = frame.groupby(ID, sort=False)[columns]
    frame[columns] = grouped.ffill()
    frame[columns] = frame.groupby(ID, sort=False)[columns].bfill()
    return frame


def _refuse_gaps(gaps: list[Gap], path: str) -> None:
    if not gaps:
        return
    shown = "; ".join(
        f"series {g.series_id!r} misses {g.length} step(s) from step {g.first_missing}"
        for g in gaps[:3]
    )
    more = f" (and {len(gaps) - 3} more gaps)" if len(gaps) > 3 else ""
    raise InputError(
        f"{path}: steps must be consecutive; {shown}{more}. Windows would join the values on "
        "either side of a gap; fill the file, or pass --fill ffill to carry the last value "
        "forward (see them all with `tune-app data inspect`)"
    )


def read_series(
    path: str | Path, config: DataConfig = DataConfig(), *, allow_gaps: bool = False
) -> SeriesTable:
    """Read and validate a long-format file. Raises InputError naming the column/series and the fix.

    A series with missing steps is refused unless `config.fill` fills them, or `allow_gaps`
    (for `data inspect`, which lists them in `SeriesTable.gaps`)."""
    return series_from_arrow(
        _read_arrow(Path(path)), config, f"--data {path}", allow_gaps=allow_gaps
    )


def _series_ids(frame: pd.DataFrame, path: str) -> pd.Series:
    """`series_id` as text, whatever type the file stored it as; empty ids are refused."""
    raw = frame[ID]
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise InputError(
            f"{path}: {int(raw.isna().sum())} row(s) without a {ID}, first at step "
            f"{frame[STEP].iloc[row]}; give every row its series"
        )
    if pd.api.types.is_float_dtype(raw) and (raw == raw.round()).all():
        raw = raw.astype(np.int64)  # 1.0 -> "1", as the file's author wrote it
    return raw.astype(str)


def series_from_arrow(
    table: pa.Table, config: DataConfig, path: str, *, allow_gaps: bool = False
) -> SeriesTable:
    """Validate a long-format Arrow table into per-series arrays (see `read_series`)."""
    if table.num_rows == 0:
        raise InputError(f"{path}: the file holds no rows")
    names = table.column_names
    missing = [c for c in (ID, STEP) if c not in names]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; the format is long: "
            f"{ID}, {STEP}, then one float column per component (found: {', '.join(names)})"
        )
    # pandas stores a filtered frame's index as `__index_level_0__`: not a component
    available = [c for c in names if c not in (ID, STEP) and not c.startswith("__index_level_")]
    chosen = list(config.components) if config.components else available
    unknown = [c for c in chosen if c not in available]
    if unknown or not chosen:
        raise InputError(
            f"--components: unknown component(s) {', '.join(unknown) or '(none given)'}; "
            f"this file has: {', '.join(available) or 'no component columns'}"
        )
    for column in chosen:
        kind = table.schema.field(column).type
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            raise InputError(
                f"{path}: column {column!r} is {kind}, not numeric; "
                f"convert it to float or leave it out with --components"
            )
    frame = table.select([ID, STEP, *chosen]).replace_schema_metadata(None).to_pandas()
    if not pd.api.types.is_integer_dtype(frame[STEP]):
        raise InputError(
            f"{path}: column {STEP!r} must hold whole numbers (got {frame[STEP].dtype})"
        )
    frame[ID] = _series_ids(frame, path)
    frame = frame.sort_values([ID, STEP], kind="stable")
    duplicated = frame.duplicated([ID, STEP])
    if duplicated.any():
        where = frame[duplicated].iloc[0]
        raise InputError(f"{path}: series {where[ID]!r} has step {int(where[STEP])} twice")
    if config.fill:
        frame = _fill(frame, chosen, config.fill)
    bad = ~np.isfinite(frame[chosen].to_numpy(dtype=np.float64))
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        where = frame.iloc[row]
        raise InputError(
            f"{path}: {int(bad.sum())} NaN/inf value(s), first in series {where[ID]!r} at step "
            f"{int(where[STEP])}, column {chosen[col]!r}; clean the file or pass --fill ffill"
        )
    gaps = find_gaps(frame)
    if not allow_gaps:
        _refuse_gaps(gaps, path)
    ids, values = [], []
    digest = hashlib.sha256(("|".join(chosen)).encode())
    for series_id, group in frame.groupby(ID, sort=True):
        array = np.ascontiguousarray(group[chosen].to_numpy(dtype=np.float32))
        ids.append(str(series_id))
        values.append(array)
        digest.update(str(series_id).encode())
        digest.update(array.tobytes())
    return SeriesTable(tuple(ids), tuple(chosen), tuple(values), digest.hexdigest(), tuple(gaps))


def _split_points(length: int, config: DataConfig) -> tuple[int, int]:
    return int(np.floor(config.train_frac * length)), int(
        np.floor((config.train_frac + config.val_frac) * length)
    )


def _check_lengths(table: SeriesTable, config: DataConfig) -> None:
    window = config.input_len + config.output_len
    for series_id, values in zip(table.series_ids, table.values, strict=True):
        a, b = _split_points(len(values), config)
        if a < window or b - a < config.output_len or len(values) - b < config.output_len:
            need = int(
                np.ceil(max(window / config.train_frac, config.output_len / config.val_frac) + 2)
            )
            raise InputError(
                f"series {series_id!r} has {len(values)} steps, too short for one train, val and test "
                f"window of {config.input_len} -> {config.output_len} (needs about {need}); "
                f"drop the series or lower --input-len/--output-len"
            )


def _windows(
    table: SeriesTable, normed: list[np.ndarray], config: DataConfig, part: str
) -> Windows:
    inputs, targets, series, starts = [], [], [], []
    i_len, o_len = config.input_len, config.output_len
    for index, values in enumerate(normed):
        a, b = _split_points(len(values), config)
        lo, hi = {"train": (0, a), "val": (a, b), "test": (b, len(values))}[part]
        # outputs must lie in [lo, hi); train inputs also stay inside the train part
        first_output = lo + i_len if part == "train" else max(lo, i_len)
        for out_start in range(first_output, hi - o_len + 1, config.stride):
            inputs.append(values[out_start - i_len : out_start])
            targets.append(values[out_start : out_start + o_len])
            series.append(index)
            starts.append(out_start - i_len)
    x = torch.from_numpy(np.stack(inputs))
    y = torch.from_numpy(np.stack(targets))
    difficulty = ((y - x[:, -1:, :]) ** 2).mean(dim=(1, 2))
    return Windows(x, y, np.asarray(series), np.asarray(starts), difficulty)


def build_dataset(table: SeriesTable, config: DataConfig = DataConfig()) -> Dataset:
    _check_lengths(table, config)
    train_parts = [v[: _split_points(len(v), config)[0]] for v in table.values]
    stacked = np.concatenate(train_parts).astype(np.float64)
    mean = stacked.mean(axis=0)
    std = stacked.std(axis=0)
    std[std < 1e-8] = 1.0  # a constant component: leave it centred, not blown up
    normed = [((v - mean) / std).astype(np.float32) for v in table.values]
    return Dataset(
        table=table,
        config=config,
        mean=mean,
        std=std,
        train=_windows(table, normed, config, "train"),
        val=_windows(table, normed, config, "val"),
        test=_windows(table, normed, config, "test"),
    )


def load_dataset(path: str | Path, config: DataConfig = DataConfig()) -> Dataset:
    return build_dataset(read_series(path, config), config)


def describe(table: SeriesTable) -> str:
    lines = [
        f"series: {len(table.series_ids)}   components: {', '.join(table.components)}",
        f"fingerprint: {table.fingerprint[:16]}",
        f"{'series':>10} {'steps':>7} "
        + " ".join(f"{c + ' mean':>12} {c + ' std':>10}" for c in table.components),
    ]
    for series_id, values in zip(table.series_ids, table.values, strict=True):
        stats = " ".join(
            f"{m:12.4f} {s:10.4f}" for m, s in zip(values.mean(0), values.std(0), strict=True)
        )
        lines.append(f"{series_id:>10} {len(values):7d} {stats}")
    constant = [
        f"{sid}:{c}"
        for sid, v in zip(table.series_ids, table.values, strict=True)
        for c, s in zip(table.components, v.std(0), strict=True)
        if s < 1e-8
    ]
    problems = [f"constant component(s) {', '.join(constant)}"] if constant else []
    problems += [
        f"gap in series {g.series_id!r}: {g.length} step(s) missing from step {g.first_missing}"
        for g in table.gaps
    ]
    if table.gaps:
        problems.append("training refuses gaps: fill them in the file or pass --fill ffill")
    lines.append("problems: " + ("\n  ".join(["", *problems]) if problems else "none"))
    return "\n".join(lines)


def open_series(path: str | Path | None, config: DataConfig = DataConfig()) -> SeriesTable:
    """The file at `path`, or the built-in synthetic data set when `path` is None."""
    if path is None:
        from tune_app.training.synthetic import make_synthetic

        return series_from_arrow(
            pa.Table.from_pandas(make_synthetic()), config, "built-in synthetic data"
        )
    return read_series(path, config)

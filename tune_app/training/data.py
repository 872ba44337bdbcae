"""Long-format tables -> validated series -> normalised windows for train / val / test.

Splits are by time inside each series at floor(0.70 T) and floor(0.85 T). A val or test window
is one whose outputs lie wholly inside that part (its inputs may reach back). Values are read as
float64; the z-score statistics come from the train parts only, in float64
(`normalisation.Normalisation`), and a model's own statistics are applied to any later data.
A `timestamp` column is read and checked (`timestamps`), never a component. Each train window's
difficulty (the error of a persistence forecast, in normalised units) is computed once here,
for curriculum.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from tune_app.errors import InputError
from tune_app.training.configs import DataConfig
from tune_app.training.gaps import Gap, fill, find_gaps, refuse_gaps
from tune_app.training.normalisation import Normalisation
from tune_app.training.tables import (
    ID,
    STEP,
    check_numeric,
    choose_components,
    precision_notes,
    read_arrow,
    refuse_duplicate_names,
)
from tune_app.training.timestamps import TIMESTAMP, Irregular, irregular_intervals, to_utc_ns

__all__ = [
    "DataConfig",
    "Dataset",
    "Gap",
    "Normalisation",
    "SeriesTable",
    "Windows",
    "absolute_data_path",
    "build_dataset",
    "check_recorded_data",
    "find_gaps",
    "load_dataset",
    "open_series",
    "read_series",
]


@dataclass(frozen=True)
class SeriesTable:
    """A validated data file: per series, its values in step order.

    Attributes:
        series_ids: the series, sorted.
        components: the component columns, in the order of `values`' last axis.
        values: per series, [T, C] float64, ordered by step.
        fingerprint: sha256 of the components' names, the series ids and their float64 values
            (two files that differ in any digit are different data).
        older_fingerprint: the same over the values cast to float32, as fingerprints were
            until checkpoints recorded the float64 one: an older checkpoint's still matches
            its data (`matches`).
        gaps: missing steps; only ever non-empty when read with allow_gaps (inspect).
        times: per series, [T] int64 ns since 1970 UTC from the `timestamp` column, or None.
        irregular: intervals far from their series' usual one (only with allow_gaps).
        ignored: the file's component columns left out by the selection.
        notes: one line each for the user (precision lost in the file, ...).
    """

    series_ids: tuple[str, ...]
    components: tuple[str, ...]
    values: tuple[np.ndarray, ...]
    fingerprint: str
    gaps: tuple[Gap, ...] = ()
    times: tuple[np.ndarray, ...] | None = None
    irregular: tuple[Irregular, ...] = ()
    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    older_fingerprint: str = ""

    def matches(self, recorded: str | None) -> bool:
        """Whether a recorded data fingerprint is this data's.

        Args:
            recorded: the fingerprint a checkpoint, export or run recorded (None or "": none).

        Returns:
            True when it equals `fingerprint`, or `older_fingerprint` (a record from before
            fingerprints were taken over float64 values); False for None or "".
        """
        return bool(recorded) and recorded in (self.fingerprint, self.older_fingerprint)


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
        """The same windows on another device.

        Args:
            device: where the tensors go (`"cpu"`, `"cuda"`, a torch.device).

        Returns:
            New Windows whose tensors (inputs, targets, difficulty) are on `device`; `series` and
            `starts` stay numpy arrays.
        """
        return Windows(
            self.inputs.to(device),
            self.targets.to(device),
            self.series,
            self.starts,
            self.difficulty.to(device),
        )


@dataclass
class Dataset:
    """Windows of a table z-scored with `normalisation` (its own train split's statistics, or
    those a model was trained with); `notes` are the table's and this build's lines for the
    user."""

    table: SeriesTable
    config: DataConfig
    normalisation: Normalisation
    train: Windows
    val: Windows
    test: Windows
    notes: tuple[str, ...] = ()

    @property
    def components(self) -> tuple[str, ...]:
        """The component names, in the order of the values' last axis."""
        return self.table.components

    @property
    def fingerprint(self) -> str:
        """The data's fingerprint (`SeriesTable.fingerprint`), recorded with every checkpoint."""
        return self.table.fingerprint

    def matches(self, recorded: str | None) -> bool:
        """Whether a recorded data fingerprint is this data's (`SeriesTable.matches`).

        Args:
            recorded: the fingerprint a checkpoint recorded.

        Returns:
            True for this data's fingerprint, float64 or older float32.
        """
        return self.table.matches(recorded)

    @property
    def mean(self) -> np.ndarray:
        """[C] float64 means used to z-score."""
        return np.asarray(self.normalisation.mean)

    @property
    def std(self) -> np.ndarray:
        """[C] float64 standard deviations used to z-score."""
        return np.asarray(self.normalisation.std)

    def to(self, device: torch.device | str) -> Dataset:
        """The same data set with its windows on another device.

        Args:
            device: where the windows' tensors go.

        Returns:
            A new Dataset; the table, config, statistics and notes are shared.
        """
        return Dataset(
            self.table,
            self.config,
            self.normalisation,
            self.train.to(device),
            self.val.to(device),
            self.test.to(device),
            self.notes,
        )

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Values in the data's units as z-scores under the training statistics.

        Args:
            values: [..., C] values, C the data set's components in its order.

        Returns:
            [..., C] float32 z-scores (the mean subtracted in float64).
        """
        return self.normalisation.apply(values)

    def denormalise(self, values: np.ndarray) -> np.ndarray:
        """Z-scores back in the data's units.

        Args:
            values: [..., C] z-scores under the training statistics.

        Returns:
            [..., C] float64 values in the data's units.
        """
        return self.normalisation.invert(values)


def read_series(
    path: str | Path,
    config: DataConfig = DataConfig(),
    *,
    allow_gaps: bool = False,
    selected_by: str = "named by --components/--component",
) -> SeriesTable:
    """Read and validate a long-format file (parquet or CSV).

    A series with missing steps (or a timestamp that jumps) is refused unless `config.fill`
    fills the steps, or `allow_gaps` (for `data inspect`, which lists them in
    `SeriesTable.gaps` and `SeriesTable.irregular`).

    Args:
        path: the file.
        config: the data settings (`components`: which columns, None for every numeric one;
            `fill`: "ffill" to fill missing steps and NaNs).
        allow_gaps: list gaps and irregular timestamps instead of refusing them.
        selected_by: who chose `config.components`, for the message when the file lacks one.

    Returns:
        The validated series.

    Raises:
        InputError: the file is missing or unreadable, or a column or series is invalid: the
            message names the column or series and the fix.
    """
    return series_from_arrow(
        read_arrow(Path(path)),
        config,
        f"--data {path}",
        allow_gaps=allow_gaps,
        selected_by=selected_by,
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
    table: pa.Table,
    config: DataConfig,
    path: str,
    *,
    allow_gaps: bool = False,
    selected_by: str = "named by --components/--component",
) -> SeriesTable:
    """Validate a long-format Arrow table into per-series arrays in step order (see `read_series`).

    Args:
        table: the file's table: `series_id`, `step`, one numeric column per component, an
            optional `timestamp`.
        config: the data settings (`components`, `fill`).
        path: how messages name the data (`--data FILE`, "built-in synthetic data").
        allow_gaps: list gaps and irregular timestamps instead of refusing them.
        selected_by: who chose `config.components`, for the message when the table lacks one.

    Returns:
        The validated series: float64 values, fingerprint, gaps, timestamps, notes.

    Raises:
        InputError: no rows, a missing or duplicated column, a step that is not a whole number
            or comes twice, NaN/inf without `--fill`, a gap or an irregular timestamp (each
            named, with the fix).
    """
    if table.num_rows == 0:
        raise InputError(f"{path}: the file holds no rows")
    names = table.column_names
    refuse_duplicate_names(names, path)
    missing = [c for c in (ID, STEP) if c not in names]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; the format is long: "
            f"{ID}, {STEP}, then one float column per component (found: {', '.join(names)})"
        )
    chosen = choose_components(names, config.components, path, selected_by)
    check_numeric(table, chosen, path)
    timed = [TIMESTAMP] if TIMESTAMP in names else []
    frame = table.select([ID, STEP, *chosen, *timed]).replace_schema_metadata(None).to_pandas()
    if not pd.api.types.is_integer_dtype(frame[STEP]):
        raise InputError(
            f"{path}: column {STEP!r} must hold whole numbers (got {frame[STEP].dtype})"
        )
    frame[ID] = _series_ids(frame, path)
    aware = False
    if timed:
        # as int64 ns UTC before any fill, so a filled row's time can be interpolated
        frame[TIMESTAMP], aware = to_utc_ns(frame[TIMESTAMP], path)
    frame = frame.sort_values([ID, STEP], kind="stable")
    duplicated = frame.duplicated([ID, STEP])
    if duplicated.any():
        where = frame[duplicated].iloc[0]
        raise InputError(f"{path}: series {where[ID]!r} has step {int(where[STEP])} twice")
    if config.fill:
        frame = fill(frame, chosen, config.fill)
    bad = ~np.isfinite(frame[chosen].to_numpy(dtype=np.float64))
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        where = frame.iloc[row]
        raise InputError(
            f"{path}: {int(bad.sum())} NaN/inf value(s), first in series {where[ID]!r} at step "
            f"{int(where[STEP])}, column {chosen[col]!r}; clean the file or pass --fill ffill"
        )
    gaps = find_gaps(frame)
    ids, values, times, irregular = [], [], [], []
    digest = hashlib.sha256(("|".join(chosen)).encode())
    older = digest.copy()  # over float32 values, as fingerprints were taken before
    for series_id, group in frame.groupby(ID, sort=True):
        array = np.ascontiguousarray(group[chosen].to_numpy(dtype=np.float64))
        ids.append(str(series_id))
        values.append(array)
        for hashed, raw in ((digest, array), (older, array.astype(np.float32))):
            hashed.update(str(series_id).encode())
            hashed.update(raw.tobytes())
        if timed:
            steps = group[STEP].to_numpy(dtype=np.int64)
            stamps = group[TIMESTAMP].to_numpy(dtype=np.int64)
            irregular += irregular_intervals(str(series_id), steps, stamps, aware, path)
            times.append(stamps)
    if not allow_gaps:
        refuse_gaps(gaps, irregular, path)
    ignored = [c for c in names if c not in (ID, STEP, TIMESTAMP, *chosen)]
    ignored = [c for c in ignored if not c.startswith("__index_level_")]
    return SeriesTable(
        tuple(ids),
        tuple(chosen),
        tuple(values),
        digest.hexdigest(),
        tuple(gaps),
        tuple(times) if timed else None,
        tuple(irregular),
        tuple(ignored),
        tuple(precision_notes(table, chosen, path)),
        older.hexdigest(),
    )


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


def build_dataset(
    table: SeriesTable,
    config: DataConfig = DataConfig(),
    normalisation: Normalisation | None = None,
) -> Dataset:
    """Split `table` into z-scored train / val / test windows.

    Args:
        table: the validated series.
        config: window lengths, stride, split fractions.
        normalisation: the statistics to z-score with (a model's, for data it is applied to);
            None: fit them on this table's train parts, in float64.

    Returns:
        The dataset, with `notes` for the user (the table's, and values the float32 cast cuts).

    Raises:
        InputError: a series too short for one window of each split, or statistics whose
            components differ from the table's.
    """
    _check_lengths(table, config)
    if normalisation is None:
        train_parts = [v[: _split_points(len(v), config)[0]] for v in table.values]
        normalisation = Normalisation.fit(train_parts, table.components)
    elif normalisation.components != table.components:
        trained = ", ".join(repr(c) for c in normalisation.components)
        raise InputError(
            f"the model was trained on components {trained}, in that order, and the data "
            f"selected has {', '.join(repr(c) for c in table.components)}: name them as the "
            "model was trained (or leave --components/--component out)"
        )
    normed = [normalisation.apply(v) for v in table.values]
    return Dataset(
        table=table,
        config=config,
        normalisation=normalisation,
        train=_windows(table, normed, config, "train"),
        val=_windows(table, normed, config, "val"),
        test=_windows(table, normed, config, "test"),
        notes=(*table.notes, *normalisation.cast_notes(table.values)),
    )


def load_dataset(path: str | Path, config: DataConfig = DataConfig()) -> Dataset:
    """Read a file and cut it into normalised train / val / test windows.

    Args:
        path: a long-format parquet or CSV file.
        config: the data settings (window lengths, stride, splits, components, fill).

    Returns:
        The data set (`build_dataset` of `read_series`).

    Raises:
        InputError: the file or its columns are invalid (see `read_series`).
    """
    return build_dataset(read_series(path, config), config)


def open_series(
    path: str | Path | None,
    config: DataConfig = DataConfig(),
    selected_by: str = "named by --components/--component",
) -> SeriesTable:
    """The file at `path`, or the built-in synthetic data set when `path` is None.

    Args:
        path: a long-format parquet or CSV file; None for `make_synthetic()`'s data.
        config: the data settings (`components`, `fill`).
        selected_by: who chose `config.components`, for the message when the file lacks one.

    Returns:
        The validated series.

    Raises:
        InputError: the file or its columns are invalid (see `read_series`).
    """
    if path is None:
        from tune_app.training.synthetic import make_synthetic

        return series_from_arrow(
            pa.Table.from_pandas(make_synthetic()),
            config,
            "built-in synthetic data",
            selected_by=selected_by,
        )
    return read_series(path, config, selected_by=selected_by)


def absolute_data_path(path: str | None) -> str | None:
    """A data path as a run records it: a local file as its absolute, resolved path (so a
    checkpoint or export finds it from any folder, and a Ray worker's working directory never
    enters it), a remote URI (`s3://...`) as given.

    Args:
        path: the `--data` value as typed; None for the built-in synthetic data.

    Returns:
        The path to record, or None.
    """
    if path is None or "://" in path:
        return path
    return str(Path(path).resolve())


def check_recorded_data(path: str | None, owner: str) -> None:
    """Refuse, naming it, a model's recorded training file that is not there any more, before
    the reader would blame the user's `--data` for it.

    Args:
        path: the data path the checkpoint, export or run recorded (None: synthetic data).
        owner: what recorded it, for the message ("checkpoint results/t/checkpoints/...").

    Raises:
        InputError: a local recorded file that does not exist (remote URIs are left to the
            reader).
    """
    if path is None or "://" in path or Path(path).is_file():
        return
    relative = (
        "" if Path(path).is_absolute() else " (a path relative to the folder the run started in)"
    )
    raise InputError(
        f"{owner} was trained on {path}{relative}, which is not there now; pass --data with "
        "that file (or a copy of it)"
    )

"""A data file as an Arrow table (pyarrow reads parquet and CSV), with what a user's file can
get wrong about its shape said plainly: another separator (`;`, tab), decimal commas, a column
name given twice."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tune_app.errors import InputError
from tune_app.training.timestamps import TIMESTAMP

__all__ = [
    "ID",
    "STEP",
    "check_numeric",
    "choose_components",
    "precision_notes",
    "read_arrow",
    "refuse_duplicate_names",
]

ID, STEP = "series_id", "step"
SEPARATORS = {";": "semicolon", "\t": "tab", "|": "pipe"}
DECIMAL_COMMA = re.compile(r"(?<![\d.])-?\d+,\d+(?![\d.])")


def _first_lines(path: Path, count: int = 3) -> list[str]:
    with open(path, "rb") as handle:
        head = handle.read(65536).decode("utf-8", errors="replace")
    return head.splitlines()[:count]


def _conversion(path: Path, sep: str, decimal: str) -> str:
    fixed = path.with_name(f"{path.stem}_comma{path.suffix}")
    return (
        "tune_app reads comma-separated files with '.' decimals; convert it, e.g. python -c "
        f"\"import pandas as pd; pd.read_csv('{path}', sep={sep!r}, decimal={decimal!r})"
        f".to_csv('{fixed}', index=False)\""
    )


def _refuse_other_dialect(path: Path) -> None:
    """A CSV whose header has no comma but another separator, e.g. a spreadsheet's export in a
    locale that writes decimal commas: refused, saying how to convert it."""
    lines = _first_lines(path)
    if not lines or "," in lines[0]:
        return
    for sep, name in SEPARATORS.items():
        if sep in lines[0]:
            commas = any(DECIMAL_COMMA.search(line) for line in lines[1:])
            what = f"a {name}-separated CSV" + (" with decimal commas" if commas else "")
            raise InputError(
                f"--data {path}: looks like {what} (header: {lines[0][:80]!r}); "
                + _conversion(path, sep, "," if commas else ".")
            )


def _decimal_comma_hint(path: Path) -> str:
    """Why a comma-separated file's rows have more fields than its header, if decimal commas
    explain it."""
    lines = _first_lines(path)
    if len(lines) > 1 and any(DECIMAL_COMMA.search(line) for line in lines[1:]):
        header = lines[0].count(",")
        if any(line.count(",") > header for line in lines[1:]):
            return "; its numbers look like decimal commas (1,5): " + _conversion(path, ";", ",")
    return ""


def read_arrow(path: Path) -> pa.Table:
    """Read a long-format parquet or CSV file (`series_id` kept as text in a CSV).

    Args:
        path: the file, `.parquet` or `.csv`.

    Returns:
        Its Arrow table, as written (no column checked yet but duplicate names).

    Raises:
        InputError: no such file (or a folder), another format, a duplicated column name, or a CSV in
            another dialect (named, with the conversion).
    """
    if path.is_dir():
        raise InputError(
            f"--data {path}: a folder, not a file; name one .parquet or .csv file in it"
        )
    if not path.is_file():
        raise InputError(
            f"--data {path}: no such file; make one with `tune-app data make-synthetic --out FILE`"
        )
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"--data {path}: not a parquet or CSV file (expected .parquet or .csv)")
    try:
        if suffix == ".parquet":
            # pyarrow refuses duplicate names obscurely ("Multiple matches for FieldRef")
            refuse_duplicate_names(pq.read_schema(path).names, f"--data {path}")
            return pq.read_table(path)
        _refuse_other_dialect(path)
        # ids stay text: "01", "1" and "007" are three series, not the integers 1, 1, 7
        strings = pacsv.ConvertOptions(column_types={ID: pa.string()})
        # duplicate names are kept (not renamed) so that they can be named in the error
        return pacsv.read_csv(path, convert_options=strings)
    except (pa.ArrowInvalid, OSError) as exc:
        hint = _decimal_comma_hint(path) if suffix == ".csv" else ""
        detail = str(exc).splitlines()[0][:200]
        raise InputError(f"--data {path}: cannot be read as {suffix[1:]}: {detail}{hint}") from None


def refuse_duplicate_names(names: list[str], path: str) -> None:
    """Refuse a column name given twice, naming it and its positions (1-based).

    Args:
        names: the file's column names, in order.
        path: how the message names the data (`--data FILE`).

    Raises:
        InputError: a name appears more than once.
    """
    twice = [name for name, count in Counter(names).items() if count > 1]
    if twice:
        shown = "; ".join(
            f"{name!r} at positions {', '.join(str(i + 1) for i, n in enumerate(names) if n == name)}"
            for name in twice
        )
        raise InputError(
            f"{path}: column name(s) given more than once: {shown} (of {len(names)} columns); "
            "rename or drop the copies so each column has its own name"
        )


def choose_components(
    names: list[str], wanted: tuple[str, ...] | None, path: str, selected_by: str
) -> list[str]:
    """The component columns: `wanted` in that order (by name), else every column but
    series_id, step and timestamp.

    Args:
        names: the file's column names.
        wanted: the components asked for (`--components`), or None for every one.
        path: how the message names the data.
        selected_by: who chose `wanted` (a flag, a checkpoint's names), for the message.

    Returns:
        The chosen column names, in order.

    Raises:
        InputError: a wanted column the file lacks, or no component at all, listing what the
            file has.
    """
    # pandas stores a filtered frame's index as `__index_level_0__`: not a component
    available = [
        c for c in names if c not in (ID, STEP, TIMESTAMP) and not c.startswith("__index_level_")
    ]
    chosen = list(wanted) if wanted else available
    unknown = [c for c in chosen if c not in available]
    if unknown or not chosen:
        shown = ", ".join(repr(c) for c in unknown) or "(none given)"
        never = (
            f"; {TIMESTAMP!r} is read as time, never a component" if TIMESTAMP in unknown else ""
        )
        comma = (
            "; a name with a comma is given whole with --component NAME"
            if any("," in c for c in available)
            else ""
        )
        raise InputError(
            f"{path}: no component column {shown} ({selected_by}){never}; this file has: "
            f"{', '.join(repr(c) for c in available) or 'no component columns'}{comma}"
        )
    return chosen


def check_numeric(table: pa.Table, chosen: list[str], path: str) -> None:
    """Refuse a chosen component that is not a number, saying what it looks like: times (name
    the column `timestamp`), numbers with decimal commas, or text to leave out.

    Args:
        table: the file's table.
        chosen: the component columns.
        path: how the message names the data.

    Raises:
        InputError: naming the column, its type and the fix.
    """
    for column in chosen:
        kind = table.schema.field(column).type
        if pa.types.is_floating(kind) or pa.types.is_integer(kind):
            continue
        if pa.types.is_temporal(kind):
            fix = (
                f"name it {TIMESTAMP!r} (the one time column, read and checked, never a "
                "component) or leave it out with --component"
            )
        else:
            sample = table.column(column).drop_null().slice(0, 5).to_pylist()
            commas = any(isinstance(v, str) and "," in v for v in sample)
            fix = (
                "its numbers look like decimal commas (1,5): write them with '.'"
                if commas
                else "leave it out by naming the components with --component"
            )
        raise InputError(f"{path}: column {column!r} is {kind}, not numeric; {fix}")


def precision_notes(table: pa.Table, chosen: list[str], path: str) -> list[str]:
    """A note for each component whose values the file itself stores too coarsely: float32 (or
    float16) near a large level keeps steps that are not small against the column's spread.

    Args:
        table: the file's table.
        chosen: the component columns.
        path: how the note names the data.

    Returns:
        One line per such column (the level, the step kept, the spread); empty if none.
    """
    notes = []
    for column in chosen:
        kind = table.schema.field(column).type
        if not (pa.types.is_float32(kind) or pa.types.is_float16(kind)):
            continue
        values = table.column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        level = float(np.abs(values).max())
        resolution = float(
            np.spacing(np.float32(level) if pa.types.is_float32(kind) else np.float16(level))
        )
        spread = float(values.std())
        if level > 0 and resolution > 0.01 * spread:
            notes.append(
                f"{path}: column {column!r} is stored as {kind}: near {level:.6g} it keeps only "
                f"steps of {resolution:.3g}, against a spread of {spread:.3g}, so part of its "
                "variation was lost when the file was written; store it as float64 (double)"
            )
    return notes

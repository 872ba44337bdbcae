"""Reading, validating, splitting and windowing long-format data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tune_app.errors import InputError
from tune_app.training.data import DataConfig, build_dataset, read_series
from tune_app.training.synthetic import make_synthetic


def test_synthetic_is_deterministic_per_seed():
    a, b, c = make_synthetic(seed=1), make_synthetic(seed=1), make_synthetic(seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert list(a.columns) == ["series_id", "step", "c0", "c1", "c2"]


def test_splits_windows_and_normalisation(synthetic_file: Path):
    config = DataConfig(input_len=16, output_len=8, stride=1)
    table = read_series(synthetic_file, config)
    data = build_dataset(table, config)
    length = len(table.values[0])
    a, b = int(np.floor(0.7 * length)), int(np.floor(0.85 * length))
    for windows, lo, hi in ((data.train, 0, a), (data.val, a, b), (data.test, b, length)):
        first_output = windows.starts + 16
        assert (first_output >= lo).all() and (first_output + 8 <= hi).all()
    assert (data.train.starts >= 0).all()  # train inputs stay inside the train part
    # val windows: every output position of the val part is covered
    assert len(data.val) == len(table.values) * (b - a - 8 + 1)
    train_values = np.concatenate([v[:a] for v in table.values])
    np.testing.assert_allclose(data.mean, train_values.mean(0), rtol=1e-5)
    x = data.train.inputs.numpy()
    np.testing.assert_allclose(x[0], data.normalise(table.values[0][:16]), rtol=1e-5, atol=1e-6)


def test_difficulty_is_persistence_error(tiny_dataset):
    w = tiny_dataset.train
    expected = ((w.targets - w.inputs[:, -1:, :]) ** 2).mean(dim=(1, 2))
    assert np.allclose(w.difficulty.numpy(), expected.numpy())
    assert w.difficulty.std() > 0


def test_csv_and_parquet_agree(tmp_path: Path):
    frame = make_synthetic(series=2, length=120)
    frame.to_parquet(tmp_path / "d.parquet")
    frame.to_csv(tmp_path / "d.csv", index=False)
    a, b = read_series(tmp_path / "d.parquet"), read_series(tmp_path / "d.csv")
    assert a.series_ids == b.series_ids
    np.testing.assert_allclose(a.values[0], b.values[0], rtol=1e-6)


def test_fingerprint_changes_with_content(tmp_path: Path):
    frame = make_synthetic(series=2, length=120)
    frame.to_parquet(tmp_path / "a.parquet")
    frame.loc[5, "c1"] += 1.0
    frame.to_parquet(tmp_path / "b.parquet")
    assert (
        read_series(tmp_path / "a.parquet").fingerprint
        != read_series(tmp_path / "b.parquet").fingerprint
    )
    assert (
        read_series(tmp_path / "a.parquet").fingerprint
        == read_series(tmp_path / "a.parquet").fingerprint
    )


def test_fill_ffill_repairs_nans(tmp_path: Path):
    frame = make_synthetic(series=2, length=120)
    frame.loc[10, "c0"] = np.nan
    frame.to_parquet(tmp_path / "n.parquet")
    table = read_series(tmp_path / "n.parquet", DataConfig(fill="ffill"))
    assert np.isfinite(table.values[0]).all()
    assert table.values[0][10, 0] == table.values[0][9, 0]


def _write(tmp_path: Path, frame: pd.DataFrame, name: str = "bad.parquet") -> Path:
    path = tmp_path / name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def _nan(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame.index[130], "c2"] = np.inf
    return frame


@pytest.mark.parametrize(
    ("make", "name", "config", "fragments"),
    [
        (
            lambda f: f.drop(columns=["step"]),
            "bad.parquet",
            DataConfig(),
            ["missing column", "step"],
        ),
        (
            lambda f: f.assign(c1=f["c1"].astype(str)),
            "bad.parquet",
            DataConfig(),
            ["'c1'", "not numeric"],
        ),
        (_nan, "bad.parquet", DataConfig(), ["NaN/inf", "'s01'", "step 10", "--fill ffill"]),
        (
            lambda f: f[f["step"] < 40],
            "bad.parquet",
            DataConfig(),
            ["too short", "s00", "40 steps"],
        ),
        (lambda f: f.iloc[:0], "bad.parquet", DataConfig(), ["no rows"]),
        (
            lambda f: f,
            "bad.parquet",
            DataConfig(components=("c0", "c9")),
            ["no component column 'c9'", "--components", "'c0', 'c1', 'c2'"],
        ),
        (lambda f: pd.concat([f, f.iloc[:1]]), "bad.parquet", DataConfig(), ["step 0 twice"]),
    ],
)
def test_bad_data_is_named(tmp_path: Path, make, name, config, fragments):
    path = _write(tmp_path, make(make_synthetic(series=2, length=120)), name)
    with pytest.raises(InputError) as info:
        build_dataset(read_series(path, config), config)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("content", "name", "fragment"),
    [
        (b"PAR1 not really", "x.parquet", "cannot be read"),
        (b"a,b\n1,2\n", "x.txt", "not a parquet or CSV"),
    ],
)
def test_unreadable_files(tmp_path: Path, content, name, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=fragment):
        read_series(path)


def test_missing_file():
    with pytest.raises(InputError, match="no such file"):
        read_series("/nonexistent/data.parquet")

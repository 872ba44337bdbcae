"""Shared fixtures: tiny synthetic data and a tiny model, so the default suite stays fast."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import TINY_DATA

from tune_app.training.data import build_dataset, series_from_arrow
from tune_app.training.synthetic import make_synthetic


@pytest.fixture(scope="session")
def synthetic_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic.parquet"
    make_synthetic(series=4, length=160, components=3, seed=0).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(synthetic_file: Path):  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    return build_dataset(
        series_from_arrow(pq.read_table(synthetic_file), TINY_DATA, "test"), TINY_DATA
    )

"""What the benchmarks print (benchmarks/ is not a package: imported from its folder)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _common import spread


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ([0.25], "0.2500 (1 seed)"),  # issue 15's try: "0.2500 +- 0.0000" with one seed
        ([0.2, 0.3], "0.2500 +- 0.0500"),
        ([0.5, 0.5, 0.5], "0.5000 +- 0.0000"),  # seeds that agree do show a spread of 0
    ],
)
def test_one_seed_prints_its_mean_alone(values: list[float], shown: str):
    assert spread(values) == shown

"""ARCHITECTURE.md stays true: every package folder it names exists and every package folder
is named, its layer order is the one tests/test_layers.py enforces, and every file it names
exists."""

from __future__ import annotations

import re
from pathlib import Path

from test_layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tune_app"
TEXT = (ROOT / "ARCHITECTURE.md").read_text()


def _package_folders() -> set[str]:
    return {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}


def test_every_package_folder_it_names_exists_and_every_one_is_named():
    named = set(re.findall(r"tune_app/([A-Za-z_]+)/", TEXT))
    assert named, "ARCHITECTURE.md names no tune_app/ folder"
    assert named <= _package_folders(), f"named but missing: {sorted(named - _package_folders())}"
    assert _package_folders() <= named, (
        f"tune_app/ folders ARCHITECTURE.md does not name: {sorted(_package_folders() - named)}"
    )


def test_its_layer_order_is_the_one_the_layer_test_enforces():
    (line,) = [line for line in TEXT.splitlines() if line.count(" → ") >= 2]
    assert [part.strip() for part in line.split("→")] == LAYERS


def test_every_file_it_names_exists():
    names = re.findall(r"`([A-Za-z0-9_./]+\.(?:py|yaml|md))`", TEXT)
    assert len(names) > 10
    everywhere = {p.name for p in PACKAGE.rglob("*") if p.is_file()}
    missing = [
        name
        for name in names
        if not (
            (ROOT / name).is_file()
            or (PACKAGE / name).is_file()
            or ("/" not in name and name in everywhere)
        )
    ]
    assert not missing, f"ARCHITECTURE.md names files that do not exist: {missing}"

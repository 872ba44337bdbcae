"""The layers of ARCHITECTURE.md (at the repository's root) hold: imports point downward only,
no import cycles, torch never under plan/, ray only under tune/ (imports inside functions count
too). tests/test_architecture.py checks that ARCHITECTURE.md states the same order as LAYERS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tune_app"
# a layer may import itself and the layers after it in this list (plus the shared modules);
# ARCHITECTURE.md draws it as `cli → analysis → tune → runs → training → plan`
LAYERS = ["cli", "analysis", "tune", "runs", "training", "plan"]
SHARED = {"tune_app", "tune_app.errors", "tune_app.plans", "tune_app.search_spaces"}


def _module(file: Path) -> str:
    parts = file.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(file: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


GRAPH = {_module(f): _imports(f) for f in PACKAGE.rglob("*.py")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_downward(module: str):
    layer = _layer(module)
    if layer is None:
        return
    allowed = set(LAYERS[LAYERS.index(layer) :])
    for target in GRAPH[module]:
        if target.startswith("tune_app.") and target not in SHARED:
            other = _layer(target)
            assert other is None or other in allowed, f"{module} imports {target}"
        if target.split(".")[0] == "ray":
            assert layer == "tune", f"{module} imports ray"
        if target.split(".")[0] == "torch":
            assert layer != "plan", f"{module} imports torch"


def test_no_import_cycles_between_modules():
    modules = set(GRAPH)
    edges = {m: {t for t in GRAPH[m] if t in modules and t != m} for m in GRAPH}
    # package __init__ files that re-export are leaves of their own package
    visiting, done = set(), set()

    def visit(node: str, path: list[str]) -> None:
        if node in done:
            return
        assert node not in visiting, " -> ".join([*path, node])
        visiting.add(node)
        for nxt in edges[node]:
            visit(nxt, [*path, node])
        visiting.discard(node)
        done.add(node)

    for module in sorted(modules):
        visit(module, [])


def test_the_public_surface_loads_lazily_and_fully():
    import subprocess
    import sys

    probe = (
        "import sys, tune_app; assert 'torch' not in sys.modules and 'ray' not in sys.modules; "
        "[getattr(tune_app, n) for n in tune_app.__all__]; print(len(tune_app.__all__))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10"


RAY_PRIVATE_HOMES = {"tune_app.tune._ray_internals", "tune_app.tune._ray_gcs"}


def _private_ray(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "ray" and any(p[:1] == "_" and p[:2] != "__" for p in parts[1:])


def test_ray_private_api_is_used_in_its_two_modules_only():
    """ARCHITECTURE.md: every use of Ray's private API is in `_ray_internals` (checked at import)
    or, for joining a cluster, `_ray_gcs`; an import of a `ray...._private`/`_internal` module or
    an attribute chain through one (`ray._private.worker.x`) anywhere else fails here."""
    elsewhere = {}
    for file in PACKAGE.rglob("*.py"):
        module = _module(file)
        if module in RAY_PRIVATE_HOMES:
            continue
        used = {name for name in _imports(file) if _private_ray(name)}
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Attribute):
                chain, inner = [node.attr], node.value
                while isinstance(inner, ast.Attribute):
                    chain.append(inner.attr)
                    inner = inner.value
                if isinstance(inner, ast.Name):
                    dotted = ".".join([inner.id, *reversed(chain)])
                    if _private_ray(dotted):
                        used.add(dotted)
        if used:
            elsewhere[module] = sorted(used)
    assert not elsewhere, elsewhere

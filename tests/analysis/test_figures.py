"""The analysis package's layout by job (issue 23): figures drawn with matplotlib's object API,
no backend switch, the terminal's summary without matplotlib, and metric names from
training/metrics.py rather than written out."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tune_app.training import metrics

PACKAGE = Path(__file__).resolve().parents[2] / "tune_app"
METRICS = {
    metrics.TRAIN_LOSS,
    metrics.VAL_LOSS,
    metrics.VAL_FREE_LOSS,
    metrics.VAL_FREE_MSE,
    metrics.BEST_VAL_FREE_LOSS,
}


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_no_analysis_module_uses_pyplot_or_switches_the_backend():
    for file in (PACKAGE / "analysis").glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                names += [a.name for a in node.names]
                assert not any("pyplot" in n for n in names), f"{file} imports pyplot"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
                called = f"{getattr(target, 'id', '')}.{node.func.attr}"
                assert called != "matplotlib.use", f"{file}:{node.lineno} switches the backend"


def test_drawing_a_figure_leaves_the_process_backend_as_it_was(tmp_path: Path):
    """The report draws PNGs whatever backend the process runs (here svg, set beforehand)."""
    path = tmp_path / "importances.png"
    code = (
        "import matplotlib, pandas as pd\n"
        "from pathlib import Path\n"
        "from tune_app.analysis import figures, page\n"
        "frame = pd.DataFrame({'parameter': ['hidden', 'layers'], 'importance': [0.7, 0.3]})\n"
        f"figures.importances(frame, Path({str(path)!r}))\n"
        "print(matplotlib.get_backend())\n"
    )
    done = _run(code, MPLBACKEND="svg")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "svg"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_terminal_summary_loads_no_matplotlib():
    """What `search` and `best` print comes from analysis.text: it never imports the figures."""
    code = (
        "import sys\n"
        "import tune_app.analysis.text, tune_app.analysis.answer, tune_app.cli.runs\n"
        "import tune_app.cli.results\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib loaded'\n"
        "assert 'tune_app.analysis.figures' not in sys.modules, 'figures loaded'\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr


def _docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        kinds = ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr):
            found.add(id(node.body[0].value))
    return found


def test_analysis_names_metrics_by_their_constants():
    """A metric's name in analysis/ code comes from training/metrics.py (docstrings and
    comments may say it in words): renaming a metric there renames it in every table."""
    written = []
    for file in sorted((PACKAGE / "analysis").glob("*.py")):
        tree = ast.parse(file.read_text())
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and set(re.findall(r"\w+", node.value)) & METRICS
            ):
                written.append(f"{file.name}:{node.lineno}: {node.value!r}")
    assert not written, "\n".join(written)


def test_the_metric_check_sees_a_written_out_name():
    tree = ast.parse('x = frame["val_free_loss"]\ny = f"best val_loss {z}"\n"""a docstring"""')
    constants = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and set(re.findall(r"\w+", str(n.value))) & METRICS
    ]
    assert constants == ["val_free_loss", "best val_loss "]


def test_importances_figure_lists_every_parameter(tmp_path: Path):
    from tune_app.analysis import figures

    frame = pd.DataFrame({"parameter": ["hidden", "layers", "cell"], "importance": [0.6, 0.3, 0.1]})
    path = figures.importances(frame, tmp_path / "importances.png")
    assert path.stat().st_size > 1000

"""tune_app: a multi-phase training plan for a seq2seq sequence generator, run and searched with Ray Tune.

The public surface is `__all__`; everything else is internal. Names load lazily, so `import
tune_app` (and the CLI's start) pulls in neither torch nor Ray.

    >>> import tune_app
    >>> plan = tune_app.load_plan(phase_epochs=2)          # the seed plan, shortened
    >>> run = tune_app.open_run("results/pbt")              # a Ray run, read back without Ray
    >>> config = tune_app.export_best(run, Path("best"))    # weights, plan.yaml, lineage
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from tune_app.errors import CheckpointError, DivergedError, InputError

if TYPE_CHECKING:
    from tune_app.analysis.evaluate import evaluate
    from tune_app.plan.plan import Plan, load_plan
    from tune_app.runs.results import export_best, open_run
    from tune_app.runs.spec import RunSpec
    from tune_app.training.trainer import train

__version__ = "0.1.0"
__all__ = [
    "CheckpointError",
    "DivergedError",
    "InputError",
    "Plan",
    "RunSpec",
    "evaluate",
    "export_best",
    "load_plan",
    "open_run",
    "train",
]

_LAZY = {
    "Plan": "tune_app.plan.plan",
    "load_plan": "tune_app.plan.plan",
    "RunSpec": "tune_app.runs.spec",
    "open_run": "tune_app.runs.results",
    "export_best": "tune_app.runs.results",
    "train": "tune_app.training.trainer",
    "evaluate": "tune_app.analysis.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tune_app' has no attribute {name!r}")

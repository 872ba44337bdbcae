"""What a trial worker process pays when it starts, and what PB2 needs at launch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tune_app.errors import InputError


def test_a_trial_worker_does_not_import_pb2s_scikit_learn():
    """Every worker imports the trainable; PB2's GP (scikit-learn, scipy: ~1.4 s) is the
    driver's alone."""
    code = (
        "import sys, tune_app.tune.trainable; "
        "print(sorted(m for m in ('sklearn', 'ray.tune.schedulers.pb2') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_pb2_without_scikit_learn_is_refused_before_ray_starts(monkeypatch: pytest.MonkeyPatch):
    from tune_app.plan.plan import load_plan
    from tune_app.plan.search_space import load_space
    from tune_app.runs.spec import RunSpec
    from tune_app.training.data import DataConfig
    from tune_app.training.model import ModelConfig
    from tune_app.training.trainer import TrainConfig
    from tune_app.tune import runner

    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` raises ImportError
    monkeypatch.setattr(runner, "init_ray", lambda *_: pytest.fail("Ray started"))
    monkeypatch.setattr(runner, "claim", lambda *_: pytest.fail("the run folder was claimed"))
    spec = RunSpec(
        load_plan(phase_epochs=2), ModelConfig(components=3), DataConfig(), TrainConfig()
    )
    space = load_space(None, "modifications.yaml", "pbt")
    with pytest.raises(InputError, match="--scheduler pb2 needs scikit-learn: pip install"):
        runner.run_search(
            spec,
            spec.open_table(),
            space,
            runner.SearchOptions(population=4, scheduler="pb2"),
            runner.Launch(storage="unused", name="unused"),
        )

"""Tiny shapes shared by the tests, so the default suite stays fast."""

from tune_app.training.data import DataConfig
from tune_app.training.model import ModelConfig
from tune_app.training.trainer import TrainConfig

TINY_DATA = DataConfig(input_len=16, output_len=8, stride=4)
TINY_MODEL = ModelConfig(components=3, hidden=16)
TINY_TRAIN = TrainConfig(seed=0, batch_size=32)

# a tiny `tune-app train` (5 one-epoch phases), for CLI tests that need a checkpoint
TRAIN_FLAGS = ["--phase-epochs", "1", "--hidden", "16", "--stride", "8", "--progress-every", "5"]


def assert_inside(space, params):  # type: ignore[no-untyped-def]
    """Every parameter of `space` is in `params` and lies inside its bounds: a float or int in
    [low, high] (per-component weights are floats of their own), a bool a bool, a choice one of
    its values."""
    assert set(params) == {p.name for p in space.params}, sorted(params)
    for param in space.params:
        value = params[param.name]
        if param.type == "bool":
            assert isinstance(value, bool), (param.name, value)
        elif param.type == "choice":
            assert value in param.values, (param.name, value)
        else:
            assert param.low <= value <= param.high, (param.name, value)


def space_with_a_choice():  # type: ignore[no-untyped-def]
    """The package's PBT space (YAML as data) with the restart period as a choice of three
    fractions: a space with every kind of parameter (float, bool, choice, per-component)."""
    from importlib import resources

    import yaml

    from tune_app.plan.search_space import SPACES_PACKAGE

    raw = yaml.safe_load(resources.files(SPACES_PACKAGE).joinpath("modifications.yaml").read_text())
    raw["params"]["lr_restart_period"] = {"type": "choice", "values": [0.0, 0.25, 0.5]}
    return raw


def export_train_checkpoint(run_dir, checkpoint, out):  # type: ignore[no-untyped-def]
    """Export a `tune-app train` checkpoint exactly as `tune-app best` exports a run's."""
    import json

    from tune_app.runs.records import CheckpointMeta, RunManifest
    from tune_app.runs.results import CheckpointRecord, Run, TrialRecord, export_checkpoint
    from tune_app.runs.storage import locate

    spec = json.loads((run_dir / "config.json").read_text())
    run = Run(locate(run_dir), RunManifest(kind="train", name="train", spec=spec), [])
    trial = TrialRecord("train", locate(run_dir), {})
    meta = CheckpointMeta.read(locate(checkpoint))
    return export_checkpoint(run, trial, CheckpointRecord(locate(checkpoint), meta), out)


def train_tiny(plan, dataset, out_dir, *, model=TINY_MODEL, stop_after=None, report=None, **kw):  # type: ignore[no-untyped-def]
    """An in-process run with the tiny shapes, saving under `out_dir` (runs/local.py does it
    the same way); `report(metrics, state)` sees every epoch."""
    from tune_app.runs.local import train_locally
    from tune_app.runs.spec import RunSpec
    from tune_app.training.monitors import Callback, StopAfter

    class _Report(Callback):
        def on_epoch_end(self, metrics, state):  # type: ignore[no-untyped-def]
            report(metrics, state)

    extra = [StopAfter(stop_after), *([_Report()] if report else [])]
    spec = RunSpec(plan, model, dataset.config, TINY_TRAIN)
    return train_locally(spec, dataset, out_dir, extra=extra, **kw)


def ray_like_run(train_dir, run_dir, kind="baseline"):  # type: ignore[no-untyped-def]
    """A `tune-app train --out` folder laid out as a Ray run of one trial (`trial-00`), as
    `tune-app best` and `tune-app report` read it, without starting Ray."""
    import json
    import shutil

    spec = json.loads((train_dir / "config.json").read_text())
    run_dir.mkdir(parents=True)
    manifest = {"kind": kind, "name": run_dir.name, "spec": spec, "components": ["c0", "c1", "c2"]}
    (run_dir / "tune_app_run.json").write_text(json.dumps(manifest))
    trial = run_dir / "trial-00"
    trial.mkdir()
    (trial / "params.json").write_text(json.dumps({"spec": spec}))
    (trial / "result.json").write_text(json.dumps({"trial_id": "3170e_00000", "epoch": 1}) + "\n")
    for number, checkpoint in enumerate(sorted((train_dir / "checkpoints").iterdir())):
        shutil.copytree(checkpoint, trial / f"checkpoint_{number:06d}")
    return run_dir

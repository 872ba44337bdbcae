"""A run's full description as plain data: plan, model, data and trainer settings.

The CLI builds one from flags; Tune trials receive it as their config; `config.json` records it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from tune_app.errors import InputError
from tune_app.plan.plan import Plan
from tune_app.training.data import (
    DataConfig,
    Dataset,
    Normalisation,
    SeriesTable,
    build_dataset,
    open_series,
)
from tune_app.training.model import ModelConfig
from tune_app.training.trainer import TrainConfig

__all__ = ["RunSpec", "load_model_config", "with_capacity"]


@dataclass(frozen=True)
class RunSpec:
    plan: Plan
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    data_path: str | None = None  # None: the built-in synthetic data

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "model": self.model.to_dict(),
            "data": self.data.to_dict(),
            "train": self.train.to_dict(),
            "data_path": self.data_path,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunSpec:
        return cls(
            plan=Plan.from_dict(raw["plan"]),
            model=ModelConfig.from_dict(raw["model"]),
            data=DataConfig.from_dict(raw["data"]),
            train=TrainConfig.from_dict(raw["train"]),
            data_path=raw.get("data_path"),
        )

    def with_plan(self, plan: Plan) -> RunSpec:
        return replace(self, plan=plan)

    def open_table(self) -> SeriesTable:
        return open_series(self.data_path, self.data)

    def dataset(
        self, table: SeriesTable | None = None, normalisation: Normalisation | None = None
    ) -> Dataset:
        """Build the windows, z-scored with `normalisation` (a checkpoint's, when resuming)
        or, when None, this data's own train split; also checks the model's component count
        against the data."""
        table = table if table is not None else self.open_table()
        if self.model.components != len(table.components):
            raise InputError(
                f"the model has {self.model.components} components but the data has "
                f"{len(table.components)} ({', '.join(repr(c) for c in table.components)}); drop `components` from "
                f"--model-config or choose columns with --components"
            )
        return build_dataset(table, self.data, normalisation)


def with_capacity(spec: RunSpec, capacity: dict[str, Any] | None) -> RunSpec:
    """The spec with a capacity search's choices (a trial's `CAPACITY_KEY` config): its model
    fields, and the window lengths."""
    if not capacity:
        return spec
    model_fields = {k: v for k, v in capacity.items() if k in ModelConfig.__dataclass_fields__}
    data_fields = {k: v for k, v in capacity.items() if k in ("input_len", "output_len")}
    model = ModelConfig.from_dict({**spec.model.to_dict(), **model_fields})
    return replace(spec, model=model, data=replace(spec.data, **data_fields))


def load_model_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model config file (JSON or YAML), e.g. the one `tune-app capacity` writes: the model
    fields, and data fields it also fixes (the input window length)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"--model-config {path}: no such file")
    try:
        raw = (
            json.loads(file.read_text())
            if file.suffix == ".json"
            else yaml.safe_load(file.read_text())
        )
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"--model-config {path}: not valid JSON/YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise InputError(
            f"--model-config {path}: expected a mapping like {{hidden: 64, layers: 1}}"
        )
    if "model" in raw:
        return dict(raw["model"]), dict(raw.get("data") or {})
    return raw, {}

"""Every kind of checkpoint a user can point a command at, read into one validated state.

- a checkpoint directory (`state.pt` + `meta.json`) or a `state.pt` file;
- `best_model_combined.pth` (or `best_model.pth` in a run folder), which `train` and `continue`
  write: the full state in one file;
- a `tune-app best` export (its folder, or the `best_model.pth` in it): the weights only, with
  `config.json`, `plan.yaml` and `metrics.parquet` beside them. Such a state has no optimizer
  and no RNG state, so whoever resumes it starts AdamW afresh (and says so).

The weights are loaded into the model their own config describes before anything else happens,
so a checkpoint whose weights do not fit is refused before any output folder is made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from tune_app.errors import CheckpointError, InputError
from tune_app.plan.plan import Plan
from tune_app.training.checkpoint import load_state, load_torch_file
from tune_app.training.model import ModelConfig, Seq2Seq

__all__ = ["EXPORT_CONFIG", "EXPORT_WEIGHTS", "export_folder", "fresh_optimizer", "open_checkpoint"]

EXPORT_WEIGHTS, EXPORT_CONFIG, EXPORT_PLAN = "best_model.pth", "config.json", "plan.yaml"
EXPORT_METRICS = "metrics.parquet"
_EXPORT_KEYS = ("model", "data", "train", "epoch")


def export_folder(path: Path | str) -> Path | None:
    """The `tune-app best` export that `path` names, if it names one.

    Args:
        path: a folder, or a file in one.

    Returns:
        The export's folder (it holds best_model.pth and config.json) when `path` is that
        folder or its best_model.pth; else None.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    names_it = path.is_dir() or path.name == EXPORT_WEIGHTS
    if names_it and (folder / EXPORT_WEIGHTS).is_file() and (folder / EXPORT_CONFIG).is_file():
        return folder
    return None


def _export_state(folder: Path, map_location: str | torch.device) -> dict[str, Any]:
    """An export as a state: weights, configs, plan, epoch and history; no optimizer, no RNG."""
    weights = load_torch_file(folder / EXPORT_WEIGHTS, map_location)
    if isinstance(weights, dict) and "format" in weights and "model" in weights:
        return dict(weights)  # a full state saved under the export's name: use all of it
    try:
        config = json.loads((folder / EXPORT_CONFIG).read_text())
    except ValueError as exc:
        raise CheckpointError(f"export {folder}: unreadable {EXPORT_CONFIG} ({exc})") from None
    missing = [key for key in _EXPORT_KEYS if key not in config]
    if missing:
        raise CheckpointError(
            f"export {folder}: {EXPORT_CONFIG} lacks {', '.join(missing)}; "
            "export the run again with `tune-app best RUN`"
        )
    plan_file = folder / EXPORT_PLAN
    plan = (
        Plan.from_yaml(plan_file.read_text(), str(plan_file)).to_dict()
        if plan_file.is_file()
        else None
    )
    if plan is None:
        raise CheckpointError(f"export {folder}: no {EXPORT_PLAN}; export the run again")
    metrics_file = folder / EXPORT_METRICS
    history = pd.read_parquet(metrics_file).to_dict("records") if metrics_file.is_file() else []
    return {
        "model": weights,
        "model_config": config["model"],
        "data_config": config["data"],
        "train_config": config["train"],
        "plan": plan,
        "epoch": int(config["epoch"]),
        "history": history,
        "data_path": config.get("data_path"),
        "data_fingerprint": config.get("data_fingerprint"),
        "normalisation": config.get("normalisation"),
        "components": config.get("components"),  # an export from before the statistics
    }


def _check_fit(state: dict[str, Any], path: Path) -> None:
    """Load the weights (and optimizer state) into the model the checkpoint's config describes."""
    try:
        model = Seq2Seq(ModelConfig.from_dict(dict(state["model_config"])))
    except (InputError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path}: its model config is unusable ({exc})") from None
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else type(exc).__name__)
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the checkpoint's model config "
            f"({state['model_config']}: {detail[:160]}); the file was altered or mixed up "
            "with another, use another checkpoint"
        ) from None
    if "optimizer" in state:
        try:
            torch.optim.AdamW(model.parameters()).load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(
                f"checkpoint {path}: its optimizer state does not fit its model ({exc}); "
                "use another checkpoint"
            ) from None


def open_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Any checkpoint a command takes (see the module doc), checked to fit its model config.

    Args:
        path: a checkpoint directory, a state file, or a `tune-app best` export (folder or file).
        map_location: where tensors are loaded (torch.load's map_location).

    Returns:
        The state: `model`, `model_config`, `data_config`, `train_config`, `plan`, `epoch`,
        `history`, and `optimizer` and `rng` unless it came from an export.

    Raises:
        CheckpointError: missing, unsafe, corrupt, foreign, or weights that do not fit (exit 2).
    """
    path = Path(path)
    folder = export_folder(path)
    state = _export_state(folder, map_location) if folder else load_state(path, map_location)
    _check_fit(state, path)
    return state


def fresh_optimizer(state: dict[str, Any], path: Path | str) -> str | None:
    """What to tell the user when resuming `state` starts a new optimizer.

    Args:
        state: a loaded checkpoint state (`load_state`).
        path: where it was loaded from, for the message.

    Returns:
        One line (an export holds weights and config only: AdamW's moments restart), or None
        when the state holds the optimizer's.
    """
    if "optimizer" in state:
        return None
    return (
        f"{path}: a `tune-app best` export holds weights and config only; resuming from its "
        f"epoch {state['epoch']} with a fresh optimizer (AdamW moments restart)"
    )

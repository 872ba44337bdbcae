"""After a run: load a checkpoint or export, score it against naive forecasts, generate continuations.

Scores are free-running, in the data's own units (MSE, MAE per component) plus the
autocorrelation error, next to two references the model has to beat: persistence (the last
observed value repeated) and seasonal naive (the last season repeated).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tune_app.errors import CheckpointError, InputError
from tune_app.runs.records import (
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    META_FILE,
    CheckpointMeta,
    ExportConfig,
)
from tune_app.runs.storage import locate
from tune_app.training.checkpoint import STATE_FILE, load_state
from tune_app.training.data import DataConfig, Dataset, Windows, build_dataset, open_series
from tune_app.training.loss import autocorrelation
from tune_app.training.model import ModelConfig, Seq2Seq

__all__ = ["LoadedModel", "evaluate", "generate", "load_model", "naive_forecasts"]


@dataclass
class LoadedModel:
    model: Seq2Seq
    model_config: ModelConfig
    data_config: DataConfig
    rank_max_lag: int
    components: list[str] | None
    source: str


def load_model(path: str | Path) -> LoadedModel:
    """A `tune-app best` export (best_model.pth + config.json) or a checkpoint directory/file."""
    path = Path(path)
    if (path / EXPORT_WEIGHTS).is_file() and (path / EXPORT_CONFIG).is_file():
        config = ExportConfig.from_dict(json.loads((path / EXPORT_CONFIG).read_text()))
        try:
            weights = torch.load(path / EXPORT_WEIGHTS, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                f"{path / EXPORT_WEIGHTS}: unreadable ({str(exc)[:160]})"
            ) from None
        model_raw, data_raw, train_raw = config.model, config.data, config.train
        components: list[str] | None = list(config.components) or None
    elif (path / STATE_FILE).is_file() or path.is_file():
        state = load_state(path)
        weights, model_raw, data_raw, train_raw = (
            state["model"],
            state["model_config"],
            state["data_config"],
            state["train_config"],
        )
        meta = CheckpointMeta.read(locate(path)) if (path / META_FILE).is_file() else None
        components = list(meta.components) if meta else None
    else:
        raise InputError(
            f"CHECKPOINT {path}: neither a `tune-app best` export nor a checkpoint directory"
        )
    model_config = ModelConfig.from_dict(model_raw)
    model = Seq2Seq(model_config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(
            f"CHECKPOINT {path}: weights do not fit its model config ({str(exc)[:160]})"
        ) from None
    model.eval()
    return LoadedModel(
        model,
        model_config,
        DataConfig.from_dict(data_raw),
        int(train_raw.get("rank_max_lag", 20)),
        components,
        str(path),
    )


def dataset_for(loaded: LoadedModel, data_path: str | None) -> Dataset:
    config = loaded.data_config
    table = open_series(data_path, config)
    if loaded.components and list(table.components) != list(loaded.components):
        raise InputError(
            f"--data: the model was trained on components {loaded.components}, "
            f"this data has {list(table.components)}; pass --components or the right file"
        )
    if len(table.components) != loaded.model_config.components:
        raise InputError(
            f"--data: the model expects {loaded.model_config.components} components, the data has {len(table.components)}"
        )
    return build_dataset(table, config)


def estimate_season(dataset: Dataset) -> int:
    """The period of the training inputs: the lag of the highest mean autocorrelation after its
    first dip (a smooth series correlates most with its nearest lags, which is not a season)."""
    inputs = dataset.train.inputs
    acf = autocorrelation(inputs, inputs.shape[1] - 1).mean(dim=(0, 1)).tolist()  # lag 1 first
    dip = next((i for i in range(1, len(acf)) if acf[i] > acf[i - 1]), None)
    if dip is None:
        return 1
    return dip + int(np.argmax(acf[dip:])) + 1


def naive_forecasts(windows: Windows, season: int) -> dict[str, torch.Tensor]:
    x, steps = windows.inputs, windows.targets.shape[1]
    persistence = x[:, -1:, :].expand(-1, steps, -1)
    season = max(1, min(season, x.shape[1]))
    index = x.shape[1] - season + (torch.arange(steps) % season)
    return {"persistence": persistence, "seasonal_naive": x[:, index, :]}


def _scores(
    pred: torch.Tensor, truth: torch.Tensor, dataset: Dataset, max_lag: int
) -> dict[str, Any]:
    std = torch.as_tensor(dataset.std, dtype=pred.dtype)
    error = (pred - truth) * std  # back to the data's units
    acf_error = (
        (autocorrelation(pred, max_lag) - autocorrelation(truth, max_lag)).square().mean(dim=(0, 2))
    )
    out: dict[str, Any] = {}
    for i, name in enumerate(dataset.components):
        out[name] = {
            "mse": float(error[..., i].square().mean()),
            "mae": float(error[..., i].abs().mean()),
            "acf_error": float(acf_error[i]),
        }
    out["mean"] = {
        k: float(np.mean([out[c][k] for c in dataset.components]))
        for k in ("mse", "mae", "acf_error")
    }
    return out


@torch.no_grad()
def evaluate(
    loaded: LoadedModel, dataset: Dataset, split: str = "test", season: int | None = None
) -> dict[str, Any]:
    windows = {"train": dataset.train, "val": dataset.val, "test": dataset.test}.get(split)
    if windows is None:
        raise InputError(f"--split {split!r}: use train, val or test")
    season = season or estimate_season(dataset)
    pred = loaded.model(windows.inputs, windows.targets.shape[1])
    results = {"model": _scores(pred, windows.targets, dataset, loaded.rank_max_lag)}
    for name, forecast in naive_forecasts(windows, season).items():
        results[name] = _scores(forecast, windows.targets, dataset, loaded.rank_max_lag)
    return {
        "split": split,
        "windows": len(windows),
        "season": season,
        "checkpoint": loaded.source,
        "scores": results,
    }


def format_scores(report: dict[str, Any]) -> str:
    scores = report["scores"]
    lines = [
        f"{report['split']} split, {report['windows']} windows, free-running (season {report['season']} for seasonal naive)",
        f"{'component':<12} {'forecast':<15} {'MSE':>12} {'MAE':>12} {'ACF error':>12}",
    ]
    components = [k for k in scores["model"] if k != "mean"] + ["mean"]
    for component in components:
        for name, table in scores.items():
            row = table[component]
            lines.append(
                f"{component:<12} {name:<15} {row['mse']:>12.5f} {row['mae']:>12.5f} {row['acf_error']:>12.5f}"
            )
    model, best_naive = (
        scores["model"]["mean"]["mse"],
        min(scores[n]["mean"]["mse"] for n in scores if n != "model"),
    )
    lines.append(
        f"model MSE / best naive MSE = {model / best_naive:.3f} ({'beats' if model < best_naive else 'does not beat'} them)"
    )
    return "\n".join(lines)


@torch.no_grad()
def generate(
    loaded: LoadedModel, dataset: Dataset, series: str, steps: int | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Continue `series` from the start of its test part for `steps` steps, next to the truth.
    Returns the frame and the context it started from."""
    table = dataset.table
    if series not in table.series_ids:
        shown = ", ".join(table.series_ids[:20])
        raise InputError(f"--series {series!r}: no such series; this data has {shown}")
    values = table.values[table.series_ids.index(series)]
    start = int(np.floor((dataset.config.train_frac + dataset.config.val_frac) * len(values)))
    context_len = dataset.config.input_len
    start = max(start, context_len)
    steps = steps or dataset.config.output_len
    context = torch.from_numpy(dataset.normalise(values[start - context_len : start]))[None]
    generated = dataset.denormalise(loaded.model(context, steps)[0].numpy())
    frame = pd.DataFrame(generated, columns=list(table.components))
    frame.insert(0, "step", np.arange(start, start + steps))
    frame.insert(0, "series_id", series)
    truth = values[start : start + steps]
    for i, name in enumerate(table.components):
        column = np.full(steps, np.nan)
        column[: len(truth)] = truth[:, i]
        frame[f"{name}_true"] = column
    return frame, values[start - context_len : start]


def plot_generation(
    frame: pd.DataFrame, context: np.ndarray, components: list[str], path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        len(components), 1, figsize=(10, 2.6 * len(components)), sharex=True, squeeze=False
    )
    first = int(frame["step"].iloc[0])
    for i, (ax, name) in enumerate(zip(axes[:, 0], components, strict=True)):
        if len(context):
            ax.plot(
                np.arange(first - len(context), first), context[:, i], color="grey", label="context"
            )
        ax.plot(frame["step"], frame[f"{name}_true"], color="black", label="truth")
        ax.plot(frame["step"], frame[name], color="tab:red", ls="--", label="generated")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_title(f"series {frame['series_id'].iloc[0]}: free-running generation")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

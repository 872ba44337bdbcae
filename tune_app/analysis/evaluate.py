"""After a run: load a checkpoint or export, score it against naive forecasts, generate continuations.

Scores are free-running: per component, MSE in the train split's z-units (`mse_z`, what the
headline compares, so a component in large units does not outweigh the others), MSE and MAE in
the data's own units, and the autocorrelation error; next to two references the model has to
beat: persistence (the last observed value repeated) and seasonal naive (the last season
repeated, the season found from the data).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tune_app.analysis.season import Season, estimate_season
from tune_app.errors import InputError
from tune_app.runs.records import (
    EXPORT_CONFIG,
    META_FILE,
    CheckpointMeta,
)
from tune_app.runs.storage import locate
from tune_app.training.data import DataConfig, Dataset, Windows, build_dataset, open_series
from tune_app.training.loss import autocorrelation
from tune_app.training.model import ModelConfig, Seq2Seq
from tune_app.training.resumable import export_folder, open_checkpoint

__all__ = ["LoadedModel", "evaluate", "generate", "headline", "load_model", "naive_forecasts"]


@dataclass
class LoadedModel:
    model: Seq2Seq
    model_config: ModelConfig
    data_config: DataConfig
    rank_max_lag: int
    components: list[str] | None
    source: str
    data_path: str | None = None  # the file it was trained on (None: unknown or synthetic)


def load_model(path: str | Path) -> LoadedModel:
    """The model of any checkpoint a command takes (`training.resumable.open_checkpoint`): a
    `tune-app best` export (its folder or best_model.pth), a checkpoint directory or state file,
    a `best_model_combined.pth`, or a `tune-app train --out` folder (its best_model.pth).

    Raises:
        CheckpointError: missing, unsafe, corrupt, or weights that do not fit their config.
    """
    state = open_checkpoint(path)  # also checks the weights fit their model config
    source = export_folder(path) or Path(path)
    components: list[str] | None = None
    if (source / EXPORT_CONFIG).is_file() and export_folder(path):
        with contextlib.suppress(ValueError, TypeError):
            exported = json.loads((source / EXPORT_CONFIG).read_text())
            components = list(exported.get("components") or []) or None
    elif (source / META_FILE).is_file():
        components = list(CheckpointMeta.read(locate(source)).components) or None
    model_config = ModelConfig.from_dict(state["model_config"])
    model = Seq2Seq(model_config)
    model.load_state_dict(state["model"])
    model.eval()
    return LoadedModel(
        model,
        model_config,
        DataConfig.from_dict(state["data_config"]),
        int(state["train_config"].get("rank_max_lag", 20)),
        components,
        str(path),
        state.get("data_path"),
    )


def dataset_for(loaded: LoadedModel, data_path: str | None, fill: str | None = None) -> Dataset:
    """The data to score `loaded` on: `data_path`, else the file it was trained on; `fill`
    ("ffill") fills NaNs and missing steps as training's `--fill` does."""
    config = replace(loaded.data_config, fill=fill) if fill else loaded.data_config
    table = open_series(data_path or loaded.data_path, config)
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


def naive_forecasts(windows: Windows, season: int) -> dict[str, torch.Tensor]:
    x, steps = windows.inputs, windows.targets.shape[1]
    persistence = x[:, -1:, :].expand(-1, steps, -1)
    season = max(1, min(season, x.shape[1]))
    index = x.shape[1] - season + (torch.arange(steps) % season)
    return {"persistence": persistence, "seasonal_naive": x[:, index, :]}


def _scores(
    pred: torch.Tensor, truth: torch.Tensor, dataset: Dataset, max_lag: int
) -> dict[str, Any]:
    """Per component and as their mean: `mse_z` (MSE in the train split's z-units, the unit of
    the rank metric), `mse` and `mae` in the data's own units, and the ACF error.
    `pred` and `truth` are [windows, steps, components] in z-units."""
    std = torch.as_tensor(dataset.std, dtype=pred.dtype)
    error_z = pred - truth
    error = error_z * std  # back to the data's units
    acf_error = (
        (autocorrelation(pred, max_lag) - autocorrelation(truth, max_lag)).square().mean(dim=(0, 2))
    )
    out: dict[str, Any] = {}
    for i, name in enumerate(dataset.components):
        out[name] = {
            "mse_z": float(error_z[..., i].square().mean()),
            "mse": float(error[..., i].square().mean()),
            "mae": float(error[..., i].abs().mean()),
            "acf_error": float(acf_error[i]),
        }
    return out


def _with_skill_and_means(scores: dict[str, Any], components: list[str]) -> None:
    """Add each component's `skill` (1 - model mse_z / the best naive forecast's mse_z on that
    component; > 0: the model beats every reference there) and a `mean` row per forecast,
    the plain average over components of every field except `skill`, which the mean row
    computes the same way from the mean `mse_z` (against the reference best on average, as
    the headline compares)."""
    references = [name for name in scores if name != "model"]
    for component in components:
        best = min(scores[name][component]["mse_z"] for name in references)
        model = scores["model"][component]
        model["skill"] = 1.0 - model["mse_z"] / best if best > 0 else 0.0
    for table in scores.values():
        fields = [f for f in table[components[0]] if f != "skill"]
        table["mean"] = {f: float(np.mean([table[c][f] for c in components])) for f in fields}
    best_mean = min(scores[name]["mean"]["mse_z"] for name in references)
    model_mean = scores["model"]["mean"]
    model_mean["skill"] = 1.0 - model_mean["mse_z"] / best_mean if best_mean > 0 else 0.0


def headline(scores: dict[str, Any], components: list[str]) -> dict[str, Any]:
    """The model against the naive forecasts on mean `mse_z` (components weigh alike whatever
    their units), and on how many components it beats each reference."""
    references = [name for name in scores if name != "model"]
    best = min(references, key=lambda name: scores[name]["mean"]["mse_z"])
    model, reference = scores["model"]["mean"]["mse_z"], scores[best]["mean"]["mse_z"]
    beats = {
        name: sum(scores["model"][c]["mse_z"] < scores[name][c]["mse_z"] for c in components)
        for name in references
    }
    ratio = model / reference if reference > 0 else float("inf")
    counts = ", ".join(f"{name} on {n} of {len(components)}" for name, n in beats.items())
    text = (
        f"model mse_z {model:.4g} vs best naive ({best}) {reference:.4g}: ratio {ratio:.3f}, "
        f"{'beats' if model < reference else 'does not beat'} it on the mean; "
        f"beats {counts} components"
    )
    return {
        "metric": "mse_z",
        "model": model,
        "best_naive": best,
        "best_naive_mse_z": reference,
        "ratio": ratio,
        "beats_on_mean": model < reference,
        "components_beaten": beats,
        "components": len(components),
        "text": text,
    }


@torch.no_grad()
def evaluate(
    loaded: LoadedModel,
    dataset: Dataset,
    split: str = "test",
    season: int | None = None,
    data_path: str | None = None,
) -> dict[str, Any]:
    """Score the model's free-running forecasts of `split` next to persistence and seasonal
    naive (see `_scores` for the fields, `headline` for the summary).

    Args:
        loaded: the model.
        dataset: the data (z-scored with its train split's statistics).
        split: train, val or test.
        season: the seasonal-naive period in steps; None: found from the data
            (`tune_app.analysis.season.estimate_season`, with `data_path`'s timestamps if it has them).
        data_path: the data file, read only for its `timestamp` column.

    Returns:
        A JSON-ready dict: split, windows, season, season_source, components, scores
        (forecast -> component or "mean" -> fields), headline.

    Raises:
        InputError: an unknown split.
    """
    windows = {"train": dataset.train, "val": dataset.val, "test": dataset.test}.get(split)
    if windows is None:
        raise InputError(f"--split {split!r}: use train, val or test")
    found = Season(season, "--season") if season else estimate_season(dataset, data_path)
    pred = loaded.model(windows.inputs, windows.targets.shape[1])
    results = {"model": _scores(pred, windows.targets, dataset, loaded.rank_max_lag)}
    for name, forecast in naive_forecasts(windows, found.steps).items():
        results[name] = _scores(forecast, windows.targets, dataset, loaded.rank_max_lag)
    components = list(dataset.components)
    _with_skill_and_means(results, components)
    return {
        "split": split,
        "windows": len(windows),
        "season": found.steps,
        "season_source": found.source,
        "checkpoint": loaded.source,
        "components": components,
        "scores": results,
        "headline": headline(results, components),
    }


def format_scores(report: dict[str, Any]) -> str:
    """The report as text: a row per component and forecast, the mean, the headline."""
    scores = report["scores"]
    components = [*report["components"], "mean"]
    width = max(9, *(len(c) for c in components))
    lines = [
        f"{report['split']} split, {report['windows']} windows, free-running; "
        f"seasonal naive: season {report['season']} ({report['season_source']})",
        "mse_z: MSE in the train split's z-units (comparable across components); MSE, MAE: "
        "the data's units; skill: 1 - mse_z / best naive mse_z",
        f"{'component':<{width}} {'forecast':<15} {'mse_z':>10} {'MSE':>12} {'MAE':>12} "
        f"{'skill':>7}",
    ]
    for component in components:
        for name, table in scores.items():
            row = table[component]
            skill = f"{row['skill']:>+7.3f}" if "skill" in row else f"{'':>7}"
            lines.append(
                f"{component:<{width}} {name:<15} {row['mse_z']:>10.5f} {row['mse']:>12.5g} "
                f"{row['mae']:>12.5g} {skill}"
            )
    lines.append(report["headline"]["text"])
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

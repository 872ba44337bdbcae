"""After a run: load a checkpoint or export, score it against naive forecasts, generate continuations.

Scores are free-running: per component, MSE in the train split's z-units (`mse_z`, what the
headline compares, so a component in large units does not outweigh the others), MSE and MAE in
the data's own units, and the autocorrelation error; next to two references the model has to
beat: persistence (the last observed value repeated) and seasonal naive (the last season
repeated, the season found from the data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tune_app.analysis.season import Season, estimate_season
from tune_app.errors import InputError
from tune_app.runs.records import META_FILE, CheckpointMeta
from tune_app.runs.storage import locate
from tune_app.training.data import (
    DataConfig,
    Dataset,
    Windows,
    build_dataset,
    check_recorded_data,
    open_series,
)
from tune_app.training.loss import autocorrelation
from tune_app.training.model import ModelConfig, Seq2Seq
from tune_app.training.normalisation import Normalisation
from tune_app.training.resumable import export_folder, open_checkpoint

__all__ = [
    "LoadedModel",
    "dataset_for",
    "evaluate",
    "format_scores",
    "generate",
    "headline",
    "load_model",
    "naive_forecasts",
    "plot_generation",
]


@dataclass
class LoadedModel:
    """A model ready to score: its configs, and what it was trained on.

    `normalisation` holds the training's z-score statistics and component names (None: a
    checkpoint from before they were stored); `components` the names it was trained on (from
    the statistics, or an older checkpoint's meta.json / export config; None: unknown)."""

    model: Seq2Seq
    model_config: ModelConfig
    data_config: DataConfig
    rank_max_lag: int
    components: list[str] | None
    source: str
    data_path: str | None = None  # the file it was trained on (None: unknown or synthetic)
    normalisation: Normalisation | None = None


def _older_components(state: dict[str, Any], path: str | Path) -> list[str] | None:
    """The component names an older checkpoint recorded without its statistics: an export's
    config.json, a checkpoint directory's meta.json."""
    if state.get("components"):
        return list(state["components"])
    folder = Path(path)
    if export_folder(path) is None and (folder / META_FILE).is_file():
        return list(CheckpointMeta.read(locate(folder)).components) or None
    return None


def load_model(path: str | Path) -> LoadedModel:
    """The model of any checkpoint a command takes (`training.resumable.open_checkpoint`): a
    `tune-app best` export (its folder or best_model.pth), a checkpoint directory or state file,
    a `best_model_combined.pth`, or a `tune-app train --out` folder (its best_model.pth).

    Raises:
        CheckpointError: missing, unsafe, corrupt, or weights that do not fit their config.
    """
    state = open_checkpoint(path)  # also checks the weights fit their model config
    normalisation = Normalisation.from_dict(state.get("normalisation"))
    components = list(normalisation.components) if normalisation else _older_components(state, path)
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
        normalisation,
    )


def dataset_for(loaded: LoadedModel, data_path: str | None, fill: str | None = None) -> Dataset:
    """The data to score `loaded` on, read as the model was trained: `data_path` (else the file
    it was trained on), its columns selected and ordered by the model's component names (others
    ignored, with a note), z-scored with the model's training statistics, never the file's own;
    `fill` ("ffill") fills NaNs and missing steps as training's `--fill` does.

    A checkpoint from before the statistics were stored is z-scored with the file's own train
    split, as it was then, and says so in `Dataset.notes`.

    Raises:
        InputError: the file lacks a component the model was trained on (named), or holds
            another number of components than an older checkpoint's model.
    """
    names = tuple(loaded.components) if loaded.components else None
    config = replace(loaded.data_config, components=names or loaded.data_config.components)
    config = replace(config, fill=fill) if fill else config
    if data_path is None:
        check_recorded_data(loaded.data_path, f"the model {loaded.source}")
    source = data_path or loaded.data_path
    shown = ", ".join(repr(c) for c in names or ())
    table = open_series(source, config, selected_by=f"the model was trained on {shown}")
    if len(table.components) != loaded.model_config.components:
        raise InputError(
            f"--data: the model expects {loaded.model_config.components} components, the data has {len(table.components)}"
        )
    dataset = build_dataset(table, config, loaded.normalisation)
    where = f"--data {source}" if source else "the built-in synthetic data"
    notes = []
    if names and table.ignored:
        notes.append(
            f"{where}: column(s) {', '.join(repr(c) for c in table.ignored)} ignored; the "
            f"model uses {shown}"
        )
    if not names:
        notes.append(
            f"{loaded.source} does not record its component names (an older checkpoint): the "
            f"file's columns are taken in their order, {', '.join(repr(c) for c in table.components)}"
        )
    if loaded.normalisation is None:
        notes.append(
            f"{loaded.source} does not record its training statistics (an older checkpoint): "
            f"{where} is z-scored with its own train split, as before; export or train again "
            "to store them"
        )
    return replace(dataset, notes=(*notes, *dataset.notes))


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
    component; > 0: the model beats every reference there; None where that reference is exact,
    mse_z 0, as on a constant component: no ratio to it means anything) and a `mean` row per
    forecast, the plain average over components of every field except `skill`, which the mean
    row computes the same way from the mean `mse_z` (against the reference best on average, as
    the headline compares)."""
    references = [name for name in scores if name != "model"]
    for component in components:
        best = min(scores[name][component]["mse_z"] for name in references)
        model = scores["model"][component]
        model["skill"] = _skill(model["mse_z"], best)
    for table in scores.values():
        fields = [f for f in table[components[0]] if f != "skill"]
        table["mean"] = {f: float(np.mean([table[c][f] for c in components])) for f in fields}
    best_mean = min(scores[name]["mean"]["mse_z"] for name in references)
    model_mean = scores["model"]["mean"]
    model_mean["skill"] = _skill(model_mean["mse_z"], best_mean)


def _skill(model: float, reference: float) -> float | None:
    """1 - model / reference (Murphy's skill score on MSE), None for a zero reference."""
    return 1.0 - model / reference if reference > 0 else None


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
    ratio = model / reference if reference > 0 else None  # an exact reference: no ratio
    counts = ", ".join(f"{name} on {n} of {len(components)}" for name, n in beats.items())
    shown = f"{ratio:.3f}" if ratio is not None else "n/a"
    text = (
        f"model mse_z {model:.4g} vs best naive ({best}) {reference:.4g}: ratio {shown}, "
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
) -> dict[str, Any]:
    """Score the model's free-running forecasts of `split` next to persistence and seasonal
    naive (see `_scores` for the fields, `headline` for the summary).

    Args:
        loaded: the model.
        dataset: the data (z-scored with the model's training statistics: `dataset_for`).
        split: train, val or test.
        season: the seasonal-naive period in steps, at most the input window (the forecast
            repeats the input's last season); None: found from the data and its timestamps
            (`tune_app.analysis.season.estimate_season`).

    Returns:
        A JSON-ready dict: split, windows, season, season_source, components, scores
        (forecast -> component or "mean" -> fields), headline.

    Raises:
        InputError: an unknown split, or a season longer than the input window.
    """
    windows = {"train": dataset.train, "val": dataset.val, "test": dataset.test}.get(split)
    if windows is None:
        raise InputError(f"--split {split!r}: use train, val or test")
    window = dataset.config.input_len
    if season is not None and season > window:
        raise InputError(
            f"--season {season}: the seasonal-naive forecast repeats the last season of the "
            f"model's input window, {window} steps, so a season can be at most {window}; pass "
            f"--season {window} or less, or leave it out to find it from the data"
        )
    found = Season(season, "--season") if season else estimate_season(dataset)
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
        "mse_z: MSE in the model's training z-units (comparable across components); MSE, MAE: "
        "the data's units; skill: 1 - mse_z / best naive mse_z (n/a: that reference is exact)",
        f"{'component':<{width}} {'forecast':<15} {'mse_z':>10} {'MSE':>12} {'MAE':>12} "
        f"{'skill':>7}",
    ]
    for component in components:
        for name, table in scores.items():
            row = table[component]
            if "skill" not in row:
                skill = f"{'':>7}"
            else:
                skill = f"{row['skill']:>+7.3f}" if row["skill"] is not None else f"{'n/a':>7}"
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

    Args:
        loaded: the model.
        dataset: the data, z-scored with the model's statistics (`dataset_for`).
        series: the series to continue.
        steps: how many steps (default: the output length); refused when they would take
            longer than `GENERATE_SECONDS` (estimated from a short probe run).

    Returns:
        The frame (series_id, step, each component generated and `NAME_true`) and the
        context [input_len, C] it started from, in the data's units.

    Raises:
        InputError: an unknown series, or too many steps (with the estimate).
    """
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
    _check_generation_time(loaded.model, context, steps)
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


# generate runs in one call, without progress: a run longer than a couple of minutes would look
# hung, and a free-running forecast that far past a context of input_len steps says little
GENERATE_SECONDS = 120.0
PROBE_STEPS = 512


def _check_generation_time(model: Seq2Seq, context: torch.Tensor, steps: int) -> None:
    """Refuse `steps` whose generation would take over GENERATE_SECONDS on this machine: the
    time per step of a PROBE_STEPS-step run, times `steps`."""
    if steps <= PROBE_STEPS:
        return
    began = time.perf_counter()
    model(context, PROBE_STEPS)
    per_step = (time.perf_counter() - began) / PROBE_STEPS
    estimate = per_step * steps
    if estimate > GENERATE_SECONDS:
        fits = max(PROBE_STEPS, int(GENERATE_SECONDS / per_step))
        raise InputError(
            f"--steps {steps}: would take about {_duration(estimate)} here ({per_step * 1e6:.0f} "
            f"µs per step) and {steps * (2 * context.shape[-1] + 2) * 8 / 2**30:.1f} GiB for the "
            f"table; generate at most about {fits} steps at a time (a {GENERATE_SECONDS:.0f} s "
            "limit: generation shows no progress)"
        )


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def plot_generation(
    frame: pd.DataFrame, context: np.ndarray, components: list[str], path: Path
) -> Path:
    """The generated continuation against the truth, one panel per component, the context
    before it in grey (matplotlib's object API: the process's backend is left as it was).

    Args:
        frame: `generate`'s table (step, series_id, each component and its `<name>_true`).
        context: the observed steps before the first generated one, (steps, components), in
            the data's units.
        components: the components' names, one panel each.
        path: the PNG file to write (its folder is made).

    Returns:
        `path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 2.6 * len(components)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(components), 1, sharex=True, squeeze=False)
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
    return path

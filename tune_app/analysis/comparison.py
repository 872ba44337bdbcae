"""A finished compare run read back without Ray: every trial scored on the test split.

Each trial (a plan, `ARM_KEY`'s label, trained on one seed) is scored with the weights of its
best-validation checkpoint (lowest finite `val_free_loss`, the checkpoint `tune-app best` would
pick in a run of one trial): `tune-app evaluate`'s free-running test `mse_z`, mean and per
component (`analysis.evaluate`, so the data is read and normalised as every other command does),
and the best naive forecast's, which depends on the data only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tune_app.analysis.certification import compare_scores
from tune_app.analysis.evaluate import dataset_for, evaluate, load_model
from tune_app.analysis.outcome import best_checkpoint
from tune_app.errors import InputError
from tune_app.runs.records import ARM_KEY, ArmScore, Comparison
from tune_app.runs.results import Run, TrialRecord
from tune_app.training.data import Dataset
from tune_app.training.metrics import RANK_METRIC

__all__ = ["Naive", "arm_of", "comparisons", "score_trials"]

Naive = tuple[str, float]  # the best naive forecast on the test split: name, mean mse_z


def arm_of(trial: TrialRecord) -> tuple[str, int] | None:
    """The (plan label, seed) of a compare trial, None for any other trial."""
    arm = trial.params.get(ARM_KEY)
    if not isinstance(arm, dict) or "label" not in arm:
        return None
    return str(arm["label"]), int(arm["seed"])


def _ended_without_score(trial: TrialRecord, total: int) -> str | None:
    """Why a compare trial that has ended has no score: "diverged" (the trainable reported
    it), "failed" (it ended short of the plan's last epoch: an error after its retries), or
    None (it finished the plan)."""
    if trial.diverged:
        return "diverged"
    if not any(c.epoch >= total for c in trial.checkpoints):
        return "failed"
    return None


def score_trials(run: Run) -> tuple[list[ArmScore], Naive]:
    """Score every trial of a compare run on the test split.

    Args:
        run: a compare run (`open_run`), its trials ended.

    Returns:
        One ArmScore per trial, and the best naive forecast's name and test mse_z (NaN where
        no trial has a score). A trial that diverged, or ended short of the plan's last epoch
        (it failed), has no score (`mse_z` None, `status` says which): it counts against its
        plan, never scored at a checkpoint from before it went wrong.

    Raises:
        InputError: the run's data cannot be read, or is not the data it trained on.
    """
    data_path = run.manifest.spec.get("data_path")
    total = sum(int(p["epochs"]) for p in run.manifest.spec["plan"]["phases"])
    datasets: dict[str, Dataset] = {}
    scores, naive = [], ("", float("nan"))
    for trial in run.trials:
        arm = arm_of(trial)
        if arm is None:
            continue
        checkpoint = best_checkpoint(trial)
        last = max((c.epoch for c in trial.checkpoints), default=0)
        why = _ended_without_score(trial, total)
        if why is not None or checkpoint is None:  # no finite checkpoint: it diverged at once
            status = why or "diverged"
            scores.append(ArmScore(arm[0], arm[1], trial.trial_id, last, None, None, status=status))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            loaded = load_model(checkpoint.location.download(Path(tmp) / "checkpoint"))
        key = repr(loaded.data_config.to_dict())
        if key not in datasets:
            datasets[key] = dataset_for(loaded, data_path)
        dataset = datasets[key]
        recorded = checkpoint.meta.data_fingerprint
        if recorded and not dataset.matches(recorded):
            raise InputError(
                f"RUN {run.location.uri}: the data at {data_path or 'the built-in synthetic data'}"
                " is not the data it trained on (its fingerprint differs); put that file back"
            )
        report: dict[str, Any] = evaluate(loaded, dataset, "test")
        model = report["scores"]["model"]
        scores.append(
            ArmScore(
                arm=arm[0],
                seed=arm[1],
                trial=trial.trial_id,
                epoch=checkpoint.epoch,
                val_free_loss=float(checkpoint.meta.metrics[RANK_METRIC]),
                mse_z=float(model["mean"]["mse_z"]),
                components={c: float(model[c]["mse_z"]) for c in report["components"]},
            )
        )
        headline = report["headline"]
        naive = (str(headline["best_naive"]), float(headline["best_naive_mse_z"]))
    return sorted(scores, key=lambda s: (s.seed, s.arm)), naive


def comparisons(
    run: Run,
    pairs: Sequence[tuple[str, str]],
    names: dict[str, str],
    scores: Sequence[ArmScore],
    naive: Naive,
    arms: Sequence[dict[str, Any]] = (),
) -> list[Comparison]:
    """The comparisons of `pairs` (A label, B label) from `scores`.

    Args:
        run: the compare run whose manifest names the arms (label, source, fingerprint).
        pairs: which arm is compared with which, A first.
        names: how the verdicts name each label ("the winner's plan").
        scores: the trials' scores (`score_trials`, of this run and any other sharing seeds).
        naive: the best naive forecast.
        arms: more arms than the run's own (a certificate's ablation pairs with the winner of
            another run).

    Returns:
        One Comparison per pair (a trial that diverged or failed counts against its plan; a
        pair where no trial has a score has the verdict "no result").
    """
    known = {arm["label"]: arm for arm in (*run.manifest.arms, *arms)}
    return [
        compare_scores(
            scores,
            (a, str(known[a]["source"]), str(known[a]["fingerprint"])),
            (b, str(known[b]["source"]), str(known[b]["fingerprint"])),
            (names.get(a, a), names.get(b, b)),
            naive,
        )
        for a, b in pairs
    ]

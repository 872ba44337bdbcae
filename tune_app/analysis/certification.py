"""Does plan B beat plan A beyond seed noise? The statistics of `tune-app compare` and `certify`.

Both plans are trained from scratch on the same K seeds (seed i for both: a paired design, so
what a seed does to the initial weights and batch order largely cancels) and scored on the test
split. Per seed the relative difference d_i = (B_i - A_i) / A_i of the test `mse_z` (an error:
negative d_i means B's is lower); over the seeds:

- the mean of d_i and its 95 % confidence interval, **Student's t** over the seeds:
  mean ± t(0.975, K-1) · s / √K (s the sample standard deviation, ddof=1). Why t and not a
  bootstrap: with the K ≈ 5 seeds a comparison can afford, a percentile bootstrap over seeds
  resamples five numbers (126 distinct resamples), its interval is about as narrow as a normal
  one with the *sample* s and it under-covers (well below 95 % at K = 5: Efron and Tibshirani,
  An Introduction to the Bootstrap, 1993, sec. 13); t's wider quantile (2.78 at K = 5 against
  1.96) is what pays for estimating s from five values. It assumes the d_i roughly normal,
  which ratios of two MSEs near each other are; the Wilcoxon test below does not.
- the **Wilcoxon signed-rank** p-value (two-sided, `scipy.stats.wilcoxon`, zero differences
  dropped as Wilcoxon did; exact for small K without ties), a distribution-free check. With n
  non-zero differences it cannot go below 2 / 2^n: 0.5 at n = 2, 0.0625 at n = 5, 0.031 at
  n = 6, so with 5 seeds it never reaches 0.05 and the verdict rests on the interval; the text
  says so.
- on how many seeds B was better (d_i < 0) and worse (d_i > 0); a tie counts as neither.
- the verdict: "better" where the interval lies below 0, "worse" where it lies above,
  else "no difference" (beyond seed noise); with one seed there is no interval: "one seed".

The same is computed per component, so a plan that helps one component and hurts another
says so. Nothing here runs Ray or torch: the numbers come in, records.PairedDifference and
records.Comparison go out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tune_app.runs.records import ArmScore, Comparison, PairedDifference

__all__ = [
    "INTERVAL",
    "compare_scores",
    "comparison_lines",
    "numbers",
    "paired_difference",
    "smallest_p",
]

INTERVAL = "95 % Student t interval over seeds of the mean per-seed relative difference"
LEVEL = 0.95


def smallest_p(nonzero: int) -> float:
    """The smallest two-sided p-value Wilcoxon's signed-rank test can give with `nonzero`
    non-zero differences: every difference of one sign, 2 / 2^n."""
    return min(1.0, 2.0 / 2**nonzero) if nonzero else 1.0


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    mean = float(values.mean())
    spread = float(values.std(ddof=1)) / math.sqrt(len(values))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, len(values) - 1)) * spread
    return mean - half, mean + half


def _wilcoxon(values: np.ndarray) -> float:
    """Two-sided p; 1.0 when every difference is zero (nothing to rank)."""
    from scipy import stats

    if not np.any(values != 0):
        return 1.0
    return float(stats.wilcoxon(values).pvalue)


def _percent(value: float, unit: str = " %") -> str:
    return f"{abs(value) * 100:.1f}{unit}"


def _signed(value: float, unit: str = " %") -> str:
    return f"{value * 100:+.1f}{unit}"


def _p_text(p: float, nonzero: int) -> str:
    """`p = 0.062`, and where the seeds are too few for p < 0.05 at all, the floor."""
    if not nonzero:
        return "p = 1: every difference is 0"
    text = f"p = {p:.2g}"
    floor = smallest_p(nonzero)
    if floor > 0.05:
        if math.isclose(p, floor):
            text += f", the smallest Wilcoxon's test gives with {nonzero} non-zero differences"
        else:
            text += (
                f"; with {nonzero} non-zero differences Wilcoxon's p cannot go below {floor:.2g}"
            )
    return text


def numbers(difference: PairedDifference) -> str:
    """The difference in numbers, without names: `+5.1 % (95 % CI +1.0 to +9.2 %; better on
    0, worse on 5 of 5 seeds; p = 0.062)`; one seed: `+5.1 % (one seed: no interval)`."""
    if difference.low is None or difference.high is None or difference.p_value is None:
        return f"{_signed(difference.mean)} (one seed: no interval)"
    count = len(difference.differences)
    return (
        f"{_signed(difference.mean)} (95 % CI {_signed(difference.low, '')} to "
        f"{_signed(difference.high)}; better on {difference.better}, worse on "
        f"{difference.worse} of {count} seeds; p = {difference.p_value:.2g})"
    )


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    seeds: Sequence[int],
    score: str = "mean",
    names: tuple[str, str] = ("A", "B"),
) -> PairedDifference:
    """B against A on one error score (lower is better), paired by seed.

    Args:
        a: A's score on each seed (e.g. test mse_z), all > 0.
        b: B's score on the same seeds, in the same order.
        seeds: the seeds, in that order.
        score: what the scores are ("mean" for the mean mse_z, or a component's name).
        names: how the sentence names A and B ("the control's plan", "the winner's plan").

    Returns:
        The per-seed relative differences (B - A) / A, their mean, the 95 % t interval (None
        for one seed), the Wilcoxon p-value (None for one seed), seeds better / worse, the
        verdict and its sentence, e.g. "B beats A by 8.1 % (95 % CI 3.2 to 12.9 %; better on
        5 of 5 seeds; p = 0.062, ...)".

    Raises:
        ValueError: no seed, lengths that differ, or a score of A that is not > 0.
    """
    if not len(a) or len(a) != len(b) or len(a) != len(seeds):
        raise ValueError(f"paired scores need one per seed: {len(a)} for A, {len(b)} for B")
    base = np.asarray(a, dtype=np.float64)
    if np.any(~(base > 0)):
        raise ValueError(f"A's scores must be > 0 to divide by (got {list(a)})")
    differences = (np.asarray(b, dtype=np.float64) - base) / base
    mean = float(differences.mean())
    better, worse = int((differences < 0).sum()), int((differences > 0).sum())
    first, second = names
    count = len(differences)
    if count == 1:
        how = (
            "scores the same as"
            if mean == 0
            else ("is better than" if mean < 0 else "is worse than")
        )
        by = "" if mean == 0 else f" by {_percent(mean)}"
        text = f"{second} {how} {first}{by} (one seed: no interval)"
        return PairedDifference(
            score,
            tuple(seeds),
            tuple(differences.tolist()),
            mean,
            None,
            None,
            None,
            better,
            worse,
            "one seed",
            text,
        )
    low, high = _t_interval(differences)
    p = _wilcoxon(differences)
    nonzero = better + worse
    if high < 0:
        verdict = "better"
        text = (
            f"{second} beats {first} by {_percent(mean)} (95 % CI {_percent(high, '')} to "
            f"{_percent(low)}; better on {better} of {count} seeds; {_p_text(p, nonzero)})"
        )
    elif low > 0:
        verdict = "worse"
        text = (
            f"{second} is worse than {first} by {_percent(mean)} (95 % CI {_percent(low, '')} to "
            f"{_percent(high)}; worse on {worse} of {count} seeds; {_p_text(p, nonzero)})"
        )
    else:
        verdict = "no difference"
        text = (
            f"no difference between {second} and {first} beyond seed noise (difference "
            f"{_signed(mean)}, 95 % CI {_signed(low, '')} to {_signed(high)}; better on "
            f"{better}, worse on {worse} of {count} seeds; {_p_text(p, nonzero)})"
        )
    return PairedDifference(
        score,
        tuple(seeds),
        tuple(differences.tolist()),
        mean,
        low,
        high,
        p,
        better,
        worse,
        verdict,
        text,
    )


def compare_scores(
    scores: Sequence[ArmScore],
    a: tuple[str, str, str],
    b: tuple[str, str, str],
    names: tuple[str, str],
    naive: tuple[str, float],
) -> Comparison:
    """Plan B against plan A from their trials' scores, paired by seed.

    Args:
        scores: every trial's scores (other arms' are ignored).
        a: A's (label, source, plan fingerprint); its trials are the scores with arm == label.
        b: B's, likewise.
        names: how the sentences name A and B.
        naive: the best naive forecast's name and test mse_z.

    Returns:
        The comparison over the seeds where both plans have a score (a trial that diverged has
        none: that seed is left out, and `left_out` says so), on the mean mse_z and per
        component.

    Raises:
        ValueError: no seed where both plans have a score.
    """
    by_arm: dict[str, dict[int, ArmScore]] = {a[0]: {}, b[0]: {}}
    for score in scores:
        if score.arm in by_arm:
            by_arm[score.arm][score.seed] = score
    seeds = sorted(set(by_arm[a[0]]) | set(by_arm[b[0]]))
    paired, left_out = [], []
    for seed in seeds:
        missing = [
            label
            for label in (a[0], b[0])
            if seed not in by_arm[label] or by_arm[label][seed].mse_z is None
        ]
        if missing:
            left_out.append(
                f"seed {seed}: no score for {' and '.join(missing)} (diverged or not run)"
            )
        else:
            paired.append(seed)
    if not paired:
        raise ValueError(f"no seed where both {a[0]} and {b[0]} have a test score")
    a_rows = [by_arm[a[0]][s] for s in paired]
    b_rows = [by_arm[b[0]][s] for s in paired]
    mean = paired_difference(
        [r.mse_z or 0.0 for r in a_rows], [r.mse_z or 0.0 for r in b_rows], paired, "mean", names
    )
    components = [
        paired_difference(
            [r.components[c] for r in a_rows], [r.components[c] for r in b_rows], paired, c, names
        )
        for c in a_rows[0].components
    ]
    return Comparison(
        a=a[0],
        b=b[0],
        a_source=a[1],
        b_source=b[1],
        a_fingerprint=a[2],
        b_fingerprint=b[2],
        seeds=tuple(paired),
        a_scores=tuple(a_rows),
        b_scores=tuple(b_rows),
        mean=mean,
        components=tuple(components),
        naive=naive[0],
        naive_mse_z=naive[1],
        interval=INTERVAL,
        left_out=tuple(left_out),
    )


def comparison_lines(comparison: Comparison) -> list[str]:
    """The comparison as text: the verdict, a row per seed, the verdict per component.

    Args:
        comparison: a compare run's or a certificate's comparison.

    Returns:
        Lines to print (no trailing newline), the verdict first.
    """
    lines = [f"verdict (test mse_z): {comparison.mean.text}"]
    for which, label, source, fingerprint in (
        ("A", comparison.a, comparison.a_source, comparison.a_fingerprint),
        ("B", comparison.b, comparison.b_source, comparison.b_fingerprint),
    ):
        named = which if label == which else f"{which} = {label}"
        lines.append(f"  {named}: {source} (plan {fingerprint})")
    lines.append(f"  {'seed':>6} {'A mse_z':>10} {'B mse_z':>10} {'(B-A)/A':>9}  best-val epochs")
    for a, b, d in zip(
        comparison.a_scores, comparison.b_scores, comparison.mean.differences, strict=True
    ):
        lines.append(
            f"  {a.seed:>6} {a.mse_z or 0.0:>10.5f} {b.mse_z or 0.0:>10.5f} {_signed(d):>9}  "
            f"{a.epoch}, {b.epoch}"
        )
    lines.append(
        f"  best naive forecast ({comparison.naive}): test mse_z {comparison.naive_mse_z:.5f}"
    )
    if len(comparison.components) > 1:
        lines.append("  per component:")
        lines += [f"    {c.score}: {c.text}" for c in comparison.components]
    lines += [f"  left out: {line}" for line in comparison.left_out]
    return lines

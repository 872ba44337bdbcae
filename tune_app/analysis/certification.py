"""Does plan B beat plan A beyond seed noise? The statistics of `tune-app compare` and `certify`.

Both plans are trained from scratch on the same K seeds (seed i for both: a paired design, so
what a seed does to the initial weights and batch order largely cancels) and scored on the test
split. Per seed the **log ratio** l_i = log(B_i / A_i) of the test `mse_z` (an error: negative
l_i means B's is lower). Why the log ratio and not the relative difference d_i = (B_i - A_i) /
A_i: d_i is skewed (it cannot go below -100 % and has no upper bound, and B twice as good,
-50 %, does not mirror B twice as bad, +100 %), while log(B/A) is symmetric (+-log 2) and
additive, so its mean over seeds is what a t interval assumes. Over the seeds:

- the relative difference **exp(mean l_i) - 1** (the ratio of the two plans' geometric mean
  errors, minus 1) and its 95 % confidence interval: **Student's t** on the l_i,
  mean ± t(0.975, K-1) · s / √K (s the sample standard deviation, ddof=1), both ends
  transformed back the same way (exp(.) - 1). Why t and not a bootstrap: with the K ≈ 5 seeds
  a comparison can afford, a percentile bootstrap over seeds resamples five numbers (126
  distinct resamples), its interval is about as narrow as a normal one with the *sample* s and
  it under-covers (well below 95 % at K = 5: Efron and Tibshirani, An Introduction to the
  Bootstrap, 1993, sec. 13); t's wider quantile (2.78 at K = 5 against 1.96) is what pays for
  estimating s from five values. It assumes the l_i roughly normal; the Wilcoxon test below
  does not. The per-seed d_i are kept to read (the table's `(B-A)/A` column).
- the **Wilcoxon signed-rank** p-value on the l_i (two-sided, `scipy.stats.wilcoxon`, zero
  differences dropped as Wilcoxon did; exact for small K without ties), a distribution-free
  check. With n non-zero differences it cannot go below 2 / 2^n: 0.5 at n = 2, 0.0625 at
  n = 5, 0.031 at n = 6, so with 5 seeds it never reaches 0.05 and the verdict rests on the
  interval; the text says so.
- on how many seeds B was better (l_i < 0) and worse (l_i > 0); a tie counts as neither.
- a seed where one plan has no score (its trial diverged or failed) counts against that plan:
  a loss in the wins and losses, and in Wilcoxon's test a difference larger than any other
  (ranked last); the interval is over the seeds where both have a score. A seed where both
  failed counts for neither (`compare_scores` leaves it out, saying so).
- the verdict: a plan that failed on more seeds than the other is the worse one ("worse" when
  B failed more often, "better" when A did), whatever the seeds both finished say; otherwise
  "better" where the interval lies below 0, "worse" where it lies above, else "no difference"
  (beyond seed noise); one seed: "one seed" (no interval); no seed at all: "no result".

The same is computed per component, so a plan that helps one component and hurts another
says so. Nothing here runs Ray or torch: the numbers come in, records.PairedDifference and
records.Comparison go out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

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

INTERVAL = (
    "relative difference exp(mean log(B/A)) - 1 over seeds; 95 % Student t interval of the mean "
    "per-seed log ratio log(B/A), transformed back; Wilcoxon signed-rank test on the log ratios"
)
LEVEL = 0.95
_BLANK = PairedDifference("", (), (), None, None, None, None, 0, 0, "", "")


def smallest_p(nonzero: int) -> float:
    """The smallest two-sided p-value Wilcoxon's signed-rank test can give with `nonzero`
    non-zero differences: every difference of one sign, 2 / 2^n."""
    return min(1.0, 2.0 / 2**nonzero) if nonzero else 1.0


def _t_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95 % t interval of the mean of `values` (>= 2 of them)."""
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


def _back(log_ratio: float) -> float:
    """A log ratio as a relative difference: exp(l) - 1."""
    return math.expm1(log_ratio)


def _digits(percent: float, sign: str = "") -> str:
    """One decimal, or two significant digits where one decimal would show a non-zero value
    as 0.0 (a bound of 0.03 % is not 0: the verdict rests on its sign)."""
    if percent != 0 and abs(percent) < 0.05:
        return f"{percent:{sign}.2g}"
    return f"{percent:{sign}.1f}"


def _percent(value: float, unit: str = " %") -> str:
    return f"{_digits(abs(value) * 100)}{unit}"


def _signed(value: float, unit: str = " %") -> str:
    return f"{_digits(value * 100, '+')}{unit}"


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


def _seed_list(seeds: Sequence[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _failed_text(difference: PairedDifference, names: tuple[str, str]) -> str:
    """`B diverged or failed on seed 1003`, both plans' where both have such seeds; empty
    without any."""
    parts = []
    for name, seeds in zip(names, (difference.failed_a, difference.failed_b), strict=True):
        if seeds:
            parts.append(f"{name} diverged or failed on {_seed_list(seeds)}")
    return " and ".join(parts)


def _numbers(difference: PairedDifference, tail: str = "") -> str:
    if difference.mean is None:
        return f"no seed where both have a score{tail}"
    if len(difference.seeds) == 1:
        return f"{_signed(difference.mean)} (one seed: no interval)"
    if difference.low is None or difference.high is None or difference.p_value is None:
        return f"{_signed(difference.mean)} (no interval: one seed where both have a score{tail})"
    return (
        f"{_signed(difference.mean)} (95 % CI {_signed(difference.low, '')} to "
        f"{_signed(difference.high)}; better on {difference.better}, worse on "
        f"{difference.worse} of {len(difference.seeds)} seeds; p = {difference.p_value:.2g}{tail})"
    )


def numbers(difference: PairedDifference, names: tuple[str, str] = ("A", "B")) -> str:
    """The difference in numbers: `+5.1 % (95 % CI +1.0 to +9.2 %; better on 0, worse on 5
    of 5 seeds; p = 0.062)` (the relative difference exp(mean log(B/A)) - 1 and its interval);
    one seed: `+5.1 % (no interval: ...)`; each plan's failed seeds named (`names`: how to
    name A and B)."""
    failed = _failed_text(difference, names)
    return _numbers(difference, f"; {failed}" if failed else "")


def _checked(values: Sequence[float | None], who: str) -> list[float | None]:
    bad = [v for v in values if v is not None and not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(f"{who}'s scores must be finite and > 0 to divide by (got {list(values)})")
    return list(values)


def paired_difference(
    a: Sequence[float | None],
    b: Sequence[float | None],
    seeds: Sequence[int],
    score: str = "mean",
    names: tuple[str, str] = ("A", "B"),
) -> PairedDifference:
    """B against A on one error score (lower is better), paired by seed (see the module doc).

    Args:
        a: A's score on each seed (e.g. test mse_z), each > 0, or None where A's trial
            diverged or failed (a loss for A).
        b: B's score on the same seeds, in the same order; None likewise.
        seeds: the seeds, in that order.
        score: what the scores are ("mean" for the mean mse_z, or a component's name).
        names: how the sentence names A and B ("the control's plan", "the winner's plan").

    Returns:
        The per-seed log ratios log(B/A) and relative differences (B - A) / A, the relative
        difference exp(mean log ratio) - 1, its 95 % t interval transformed back (None under
        two seeds where both have a score), the Wilcoxon p-value (None with one seed), seeds
        better / worse, the verdict and its sentence, e.g. "B beats A by 8.1 % (95 % CI 3.2 to
        12.9 %; better on 5 of 5 seeds; p = 0.062, ...)".

    Raises:
        ValueError: no seed, lengths that differ, a score that is not finite and > 0, or a
            seed where both are None.
    """
    if not len(a) or len(a) != len(b) or len(a) != len(seeds):
        raise ValueError(f"paired scores need one per seed: {len(a)} for A, {len(b)} for B")
    first_scores, second_scores = _checked(a, "A"), _checked(b, "B")
    both_none = [s for s, x, y in zip(seeds, a, b, strict=True) if x is None and y is None]
    if both_none:
        raise ValueError(f"seeds {both_none}: neither plan has a score; leave them out")
    logs: list[float | None] = []
    differences: list[float | None] = []
    for x, y in zip(first_scores, second_scores, strict=True):
        finite = x is not None and y is not None
        logs.append(math.log(y / x) if finite else None)  # type: ignore[operator]
        differences.append((y - x) / x if finite else None)  # type: ignore[operator]
    failed_a = tuple(s for s, x in zip(seeds, first_scores, strict=True) if x is None)
    failed_b = tuple(s for s, y in zip(seeds, second_scores, strict=True) if y is None)
    paired = np.asarray([v for v in logs if v is not None], dtype=np.float64)
    better = int((paired < 0).sum()) + len(failed_a)
    worse = int((paired > 0).sum()) + len(failed_b)
    count = len(seeds)
    mean = _back(float(paired.mean())) if len(paired) else None
    low = high = p = None
    if len(paired) >= 2:
        log_low, log_high = _t_interval(paired)
        low, high = _back(log_low), _back(log_high)
    if count >= 2:
        # a failure ranks beyond every finite log ratio, against its plan
        beyond = 1.0 + 2.0 * float(np.abs(paired).max(initial=0.0))
        ranked = np.concatenate([paired, [beyond] * len(failed_b), [-beyond] * len(failed_a)])
        p = _wilcoxon(ranked)
    verdict, text = _verdict(
        replace(
            _BLANK, score=score, seeds=tuple(seeds), mean=mean, low=low, high=high, p_value=p,
            better=better, worse=worse, failed_a=failed_a, failed_b=failed_b,
        ),
        names,
    )  # fmt: skip
    return PairedDifference(
        score=score,
        seeds=tuple(seeds),
        differences=tuple(differences),
        mean=mean,
        low=low,
        high=high,
        p_value=p,
        better=better,
        worse=worse,
        verdict=verdict,
        text=text,
        log_ratios=tuple(logs),
        failed_a=failed_a,
        failed_b=failed_b,
    )


def _verdict(d: PairedDifference, names: tuple[str, str]) -> tuple[str, str]:
    """The verdict and its sentence; the words follow the numbers they quote: "beats" only
    with an interval wholly below 0 (or the other plan failing more often), "worse" only with
    one wholly above 0 (or this plan failing more often)."""
    first, second = names
    count = len(d.seeds)
    if len(d.failed_a) != len(d.failed_b):
        b_lost = len(d.failed_b) > len(d.failed_a)
        loser, winner = (second, first) if b_lost else (first, second)
        lost, other = (d.failed_b, d.failed_a) if b_lost else (d.failed_a, d.failed_b)
        verdict = "worse" if b_lost else "better"
        head = (
            f"{second} is worse than {first}" if verdict == "worse" else f"{second} beats {first}"
        )
        rest = (
            f"; on the seeds where both have a score: {_numbers(d)}" if d.mean is not None else ""
        )
        return verdict, (
            f"{head}: {loser} diverged or failed on {_seed_list(lost)}, {winner} on "
            f"{_seed_list(other) if other else 'none'} (each a seed lost by the plan that "
            f"failed there){rest}"
        )
    failed = _failed_text(d, names)
    tail = f"; {failed}" if failed else ""
    if d.mean is None:
        return "no result", f"no seed where both {second} and {first} have a score{tail}"
    if count == 1:
        how = (
            "scores the same as"
            if d.mean == 0
            else ("is better than" if d.mean < 0 else "is worse than")
        )
        by = "" if d.mean == 0 else f" by {_percent(d.mean)}"
        return "one seed", f"{second} {how} {first}{by} (one seed: no interval)"
    if d.low is None or d.high is None or d.p_value is None:
        return "no difference", (
            f"no difference between {second} and {first} that the seeds can show: one seed "
            f"where both have a score ({_signed(d.mean)}), no interval{tail}"
        )
    p_text = _p_text(d.p_value, d.better + d.worse)
    if d.high < 0:
        return "better", (
            f"{second} beats {first} by {_percent(d.mean)} (95 % CI {_percent(d.high, '')} to "
            f"{_percent(d.low)}; better on {d.better} of {count} seeds; {p_text}{tail})"
        )
    if d.low > 0:
        return "worse", (
            f"{second} is worse than {first} by {_percent(d.mean)} (95 % CI "
            f"{_percent(d.low, '')} to {_percent(d.high)}; worse on {d.worse} of {count} seeds; "
            f"{p_text}{tail})"
        )
    return "no difference", (
        f"no difference between {second} and {first} beyond seed noise (difference "
        f"{_signed(d.mean)}, 95 % CI {_signed(d.low, '')} to {_signed(d.high)}: it includes 0; "
        f"better on {d.better}, worse on {d.worse} of {count} seeds; {p_text}{tail})"
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
        The comparison over the seeds where both plans ran, on the mean mse_z and per
        component. A trial without a score (it diverged or failed) counts against its plan
        (see the module doc); a seed where both have none, or where a plan did not run, is
        left out, and `left_out` says so.
    """
    by_arm: dict[str, dict[int, ArmScore]] = {a[0]: {}, b[0]: {}}
    for score in scores:
        if score.arm in by_arm:
            by_arm[score.arm][score.seed] = score
    counted, left_out = [], []
    for seed in sorted(set(by_arm[a[0]]) | set(by_arm[b[0]])):
        missing = [label for label in (a[0], b[0]) if seed not in by_arm[label]]
        if missing:
            left_out.append(f"seed {seed}: {' and '.join(missing)} did not run")
        elif all(by_arm[label][seed].mse_z is None for label in (a[0], b[0])):
            states = " and ".join(f"{label} {by_arm[label][seed].status}" for label in (a[0], b[0]))
            left_out.append(f"seed {seed}: {states}: it counts for neither")
        else:
            counted.append(seed)
    a_rows = [by_arm[a[0]][s] for s in counted]
    b_rows = [by_arm[b[0]][s] for s in counted]
    if counted:
        mean = paired_difference(
            [r.mse_z for r in a_rows], [r.mse_z for r in b_rows], counted, "mean", names
        )
    else:
        mean = replace(
            _BLANK,
            score="mean",
            verdict="no result",
            text=f"no seed where {names[1]} or {names[0]} has a score: every trial diverged, "
            "failed or did not run",
        )
    scored = next((r for r in (*a_rows, *b_rows) if r.mse_z is not None), None)
    components = [
        paired_difference(
            [r.components.get(c) if r.mse_z is not None else None for r in a_rows],
            [r.components.get(c) if r.mse_z is not None else None for r in b_rows],
            counted,
            c,
            names,
        )
        for c in (scored.components if scored else ())
    ]
    return Comparison(
        a=a[0],
        b=b[0],
        a_source=a[1],
        b_source=b[1],
        a_fingerprint=a[2],
        b_fingerprint=b[2],
        seeds=tuple(counted),
        a_scores=tuple(a_rows),
        b_scores=tuple(b_rows),
        mean=mean,
        components=tuple(components),
        naive=naive[0],
        naive_mse_z=naive[1],
        interval=INTERVAL,
        left_out=tuple(left_out),
    )


def _cell(score: ArmScore) -> str:
    return f"{score.mse_z:>10.5f}" if score.mse_z is not None else f"{score.status:>10}"


def _per_seed(a: ArmScore, b: ArmScore, difference: float | None, log: float | None) -> str:
    """A seed's (B-A)/A, log(B/A) and best-validation epochs, or which plan lost it by
    diverging or failing."""
    if difference is None:
        loser = a if a.mse_z is None else b
        which = "A" if loser is a else "B"
        return f"{'-':>9} {'-':>9}  {which} {loser.status}: a loss for {which}"
    if log is None:  # a comparison written before the log ratios were
        log = math.log1p(difference)
    return f"{_signed(difference):>9} {log:>+9.4f}  {a.epoch}, {b.epoch}"


def comparison_lines(comparison: Comparison) -> list[str]:
    """The comparison as text: the verdict, a row per seed, the verdict per component.

    Args:
        comparison: a compare run's or a certificate's comparison.

    Returns:
        Lines to print (no trailing newline), the verdict first. The table gives per seed both
        test mse_z, (B-A)/A and log(B/A) (the verdict's relative difference is
        exp(mean log(B/A)) - 1, its interval the log ratios' t interval transformed back; the
        last line says so), or which plan diverged or failed there (a loss for it).
    """
    lines = [f"verdict (test mse_z): {comparison.mean.text}"]
    for which, label, source, fingerprint in (
        ("A", comparison.a, comparison.a_source, comparison.a_fingerprint),
        ("B", comparison.b, comparison.b_source, comparison.b_fingerprint),
    ):
        named = which if label == which else f"{which} = {label}"
        lines.append(f"  {named}: {source} (plan {fingerprint})")
    lines.append(
        f"  {'seed':>6} {'A mse_z':>10} {'B mse_z':>10} {'(B-A)/A':>9} {'log(B/A)':>9}  "
        "best-val epochs"
    )
    differences = comparison.mean.differences
    logs = comparison.mean.log_ratios or (None,) * len(differences)
    for a, b, d, log in zip(
        comparison.a_scores, comparison.b_scores, differences, logs, strict=True
    ):
        lines.append(f"  {a.seed:>6} {_cell(a)} {_cell(b)} {_per_seed(a, b, d, log)}")
    lines.append(
        "  the relative difference is exp(mean log(B/A)) - 1 (the ratio of the geometric mean "
        "errors), its 95 % CI the t interval of the mean log(B/A), transformed back; a plan "
        "that diverged or failed on a seed loses that seed"
    )
    lines.append(
        f"  best naive forecast ({comparison.naive}): test mse_z {comparison.naive_mse_z:.5f}"
    )
    if len(comparison.components) > 1:
        lines.append("  per component:")
        lines += [f"    {c.score}: {c.text}" for c in comparison.components]
    lines += [f"  left out: {line}" for line in comparison.left_out]
    return lines

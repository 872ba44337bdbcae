"""The statistics of `compare` and `certify`, on hand-made numbers: per-seed relative
differences, the t interval, Wilcoxon's p, wins and losses, the verdict in words."""

from __future__ import annotations

import json
import math

import pytest

from tune_app.analysis.certification import (
    compare_scores,
    comparison_lines,
    numbers,
    paired_difference,
    smallest_p,
)
from tune_app.errors import InputError
from tune_app.runs.records import ArmScore, Certificate, Comparison
from tune_app.runs.storage import locate

SEEDS5 = [1000, 1001, 1002, 1003, 1004]


@pytest.mark.parametrize(
    ("a", "b", "verdict", "said"),
    [
        # a plan against itself: every difference exactly 0
        ([2.0, 3.0, 4.0], [2.0, 3.0, 4.0], "no difference", "no difference between B and A"),
        # B lower on every seed, by 8-10 %: better, the interval below 0
        ([1.0] * 5, [0.90, 0.92, 0.91, 0.92, 0.90], "better", "B beats A by 9.0 % (95 % CI"),
        # B higher on every seed: worse
        ([1.0] * 5, [1.10, 1.12, 1.08, 1.09, 1.11], "worse", "B is worse than A by 10.0 %"),
        # mixed signs around 0: no difference beyond seed noise
        ([1.0] * 5, [0.95, 1.04, 1.01, 0.98, 1.03], "no difference", "beyond seed noise"),
        # one seed: the difference alone
        ([2.0], [1.5], "one seed", "B is better than A by 25.0 % (one seed: no interval)"),
        ([2.0], [2.0], "one seed", "B scores the same as A (one seed: no interval)"),
    ],
)
def test_verdicts(a, b, verdict, said):
    result = paired_difference(a, b, list(range(len(a))))
    assert result.verdict == verdict
    assert said in result.text, result.text


def test_a_plan_against_itself_differs_by_exactly_zero():
    result = paired_difference([1.3, 2.7, 0.4], [1.3, 2.7, 0.4], [5, 6, 7])
    assert result.differences == (0.0, 0.0, 0.0)
    assert (result.mean, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (result.better, result.worse) == (0, 0)
    assert "p = 1: every difference is 0" in result.text


def test_per_seed_relative_differences_are_kept_and_log_ratios_carry_the_statistics():
    result = paired_difference([2.0, 4.0], [1.0, 5.0], [10, 11])
    assert result.differences == (-0.5, 0.25)  # (B - A) / A, to read
    assert result.log_ratios == pytest.approx((math.log(0.5), math.log(1.25)))
    # the ratio of the geometric means, not the mean of (B - A) / A (-12.5 %)
    assert result.mean == pytest.approx(math.sqrt(0.5 * 1.25) - 1)
    assert result.seeds == (10, 11)


def test_twice_as_good_and_twice_as_bad_cancel_on_the_log_scale():
    """(B-A)/A is skewed: B at half A's error on one seed (-50 %) and twice it on another
    (+100 %) averages to +25 %; their log ratios cancel, and the interval is symmetric on the
    ratio scale (its ends are reciprocal ratios)."""
    result = paired_difference([1.0, 1.0], [0.5, 2.0], [0, 1])
    assert sum(result.differences) / 2 == pytest.approx(0.25)  # what the old statistic said
    assert result.mean == pytest.approx(0.0, abs=1e-12)
    assert result.low is not None and result.high is not None
    assert (1 + result.low) * (1 + result.high) == pytest.approx(1.0)
    assert result.verdict == "no difference"


def test_the_interval_is_students_t_on_the_log_ratios_transformed_back():
    ratios = [0.90, 0.92, 0.91, 0.92, 0.90]
    result = paired_difference([1.0] * 5, ratios, SEEDS5)
    logs = [math.log(r) for r in ratios]
    mean = sum(logs) / 5
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4)
    assert result.mean == pytest.approx(math.exp(mean) - 1)
    assert (result.low, result.high) == pytest.approx(
        (math.exp(mean - half) - 1, math.exp(mean + half) - 1)
    )


def test_wilcoxon_ranks_the_log_ratios():
    """B at 0.5, 1.6, 1.7, 1.8, 0.45 x A: by |(B-A)/A| the two gains rank lowest, by
    |log(B/A)| highest, so the two tests' p-values differ; the log ratios' is reported."""
    from scipy import stats

    ratios = [0.5, 1.6, 1.7, 1.8, 0.45, 1.75]
    result = paired_difference([1.0] * 6, ratios, list(range(6)))
    on_logs = stats.wilcoxon([math.log(r) for r in ratios]).pvalue
    on_differences = stats.wilcoxon([r - 1 for r in ratios]).pvalue
    assert on_logs != pytest.approx(on_differences)
    assert result.p_value == pytest.approx(on_logs)


def test_the_table_keeps_the_per_seed_difference_and_says_how_the_verdict_is_computed():
    scores = [_score("A", s, 1.0) for s in range(3)]
    scores += [_score("B", s, c0) for s, c0 in enumerate([0.5, 1.5, 0.9])]
    lines = comparison_lines(_comparison(scores))
    header = next(line for line in lines if "seed" in line and "A mse_z" in line)
    assert "(B-A)/A" in header and "log(B/A)" in header
    row = next(line for line in lines if line.split()[:1] == ["0"])
    # seed 0: mean mse_z (0.5 + 1) / 2 against 1: -25 %, log(0.75)
    assert "-25.0 %" in row and f"{math.log(0.75):+.4f}" in row
    assert any("exp(mean log(B/A)) - 1" in line for line in lines)


@pytest.mark.parametrize(
    ("a", "b", "better", "worse"),
    [
        ([1.0] * 4, [0.9, 1.0, 1.1, 0.8], 2, 1),  # a tie counts as neither
        ([1.0] * 3, [1.0, 1.0, 1.2], 0, 1),
        ([1.0] * 3, [0.9, 0.9, 0.9], 3, 0),
    ],
)
def test_wins_and_losses_leave_ties_out(a, b, better, worse):
    result = paired_difference(a, b, list(range(len(a))))
    assert (result.better, result.worse) == (better, worse)


def test_zero_differences_are_dropped_from_wilcoxons_ranks():
    with_ties = paired_difference([1.0] * 6, [0.9, 0.8, 0.85, 0.95, 1.0, 1.0], list(range(6)))
    without = paired_difference([1.0] * 4, [0.9, 0.8, 0.85, 0.95], list(range(4)))
    assert with_ties.p_value == pytest.approx(without.p_value)  # ranks of the 4 non-zero ones


@pytest.mark.parametrize(
    ("nonzero", "floor"),
    [(1, 1.0), (2, 0.5), (3, 0.25), (5, 0.0625), (6, 0.03125)],
)
def test_wilcoxon_has_a_floor_of_2_over_2_to_the_n(nonzero, floor):
    assert smallest_p(nonzero) == floor
    if nonzero >= 2:  # every difference of one sign reaches the floor, never below
        result = paired_difference([1.0] * nonzero, [0.8] * nonzero, list(range(nonzero)))
        assert result.p_value == pytest.approx(floor)


def test_two_seeds_cannot_reach_p_below_005_and_say_so():
    """K = 2: B better on both seeds by a wide margin; Wilcoxon's p cannot go below 0.5, so the
    verdict rests on the interval, and the sentence says the p is the floor."""
    result = paired_difference([1.0, 1.0], [0.5, 0.52], [0, 1])
    assert result.p_value == 0.5
    assert result.verdict == "better"  # the t interval excludes 0: the differences agree
    assert "the smallest Wilcoxon's test gives with 2 non-zero differences" in result.text


def test_five_seeds_say_p_cannot_reach_005():
    result = paired_difference([1.0] * 5, [0.9, 1.02, 0.95, 0.97, 0.96], SEEDS5)
    assert result.p_value is not None and result.p_value > 0.0625
    assert "Wilcoxon's p cannot go below 0.062" in result.text


def test_six_seeds_can_reach_005():
    result = paired_difference([1.0] * 6, [0.9, 0.91, 0.92, 0.93, 0.9, 0.91], list(range(6)))
    assert result.p_value == pytest.approx(0.03125)
    assert "cannot go below" not in result.text and "smallest" not in result.text


@pytest.mark.parametrize(
    ("a", "b", "seeds", "problem"),
    [
        ([], [], [], "one per seed"),
        ([1.0, 2.0], [1.0], [0, 1], "one per seed"),
        ([1.0, 0.0], [1.0, 1.0], [0, 1], "must be finite and > 0"),
        ([1.0, 1.0], [1.0, math.inf], [0, 1], "must be finite and > 0"),
        ([1.0, None], [1.0, None], [0, 1], "neither plan has a score"),
    ],
)
def test_bad_scores_are_refused(a, b, seeds, problem):
    with pytest.raises(ValueError, match=problem):
        paired_difference(a, b, seeds)


def _score(arm: str, seed: int, c0: float | None, c1: float = 1.0) -> ArmScore:
    if c0 is None:
        return ArmScore(arm, seed, f"{arm}-{seed}", 0, None, None, status="diverged")
    return ArmScore(arm, seed, f"{arm}-{seed}", 10, 0.5, (c0 + c1) / 2, {"c0": c0, "c1": c1})


def _comparison(scores: list[ArmScore]) -> Comparison:
    return compare_scores(
        scores, ("A", "seed", "aaaa"), ("B", "b.yaml", "bbbb"), ("A", "B"), ("persistence", 1.5)
    )


def test_a_plan_that_helps_one_component_and_hurts_another_says_so():
    scores = [_score("A", s, 1.0, 1.0) for s in range(4)]
    scores += [_score("B", s, 0.8 + 0.01 * s, 1.2 + 0.01 * s) for s in range(4)]
    comparison = _comparison(scores)
    by_component = {c.score: c.verdict for c in comparison.components}
    assert by_component == {"c0": "better", "c1": "worse"}
    text = "\n".join(comparison_lines(comparison))
    assert "c0: B beats A" in text and "c1: B is worse than A" in text


def test_a_seed_where_a_plan_diverged_counts_against_it():
    scores = [_score("A", s, 1.0) for s in range(4)]
    scores += [_score("B", s, 0.9) for s in range(3)] + [_score("B", 3, None)]
    comparison = _comparison(scores)
    assert comparison.seeds == (0, 1, 2, 3) and comparison.left_out == ()
    mean = comparison.mean
    assert mean.failed_b == (3,) and mean.failed_a == ()
    assert (mean.better, mean.worse) == (3, 1)  # the diverged seed is a loss for B
    # B is 10 % better where it finished, but it diverged where A did not: worse
    assert mean.verdict == "worse"
    assert mean.text.startswith("B is worse than A: B diverged or failed on seed 3, A on none")
    assert mean.low is not None and mean.high is not None and mean.high < 0  # the finished 3
    lines = comparison_lines(comparison)
    row = next(line for line in lines if line.split()[:1] == ["3"])
    assert "diverged" in row and "a loss for B" in row
    assert all(c.failed_b == (3,) for c in comparison.components)


def test_a_plan_that_fails_where_the_other_does_not_loses_even_a_close_call():
    scores = [_score("A", s, 1.0) for s in range(3)] + [_score("A", 3, None)]
    scores += [_score("B", s, 1.05) for s in range(4)]
    mean = _comparison(scores).mean
    assert mean.verdict == "better" and mean.text.startswith("B beats A: A diverged or failed")


def test_wilcoxon_ranks_a_failure_beyond_every_finished_seed():
    from scipy import stats

    scores = [_score("A", s, 1.0) for s in range(5)]
    scores += [_score("B", s, c0) for s, c0 in enumerate([1.1, 1.2, 0.9, 1.05])]
    scores.append(_score("B", 4, None))
    mean = _comparison(scores).mean
    logs = [v for v in mean.log_ratios if v is not None]
    expected = stats.wilcoxon([*logs, 10.0]).pvalue  # any value beyond the others' sizes
    assert mean.p_value == pytest.approx(expected)


def test_a_seed_where_both_diverged_is_left_out_and_named():
    scores = [_score("A", s, 1.0) for s in range(3)] + [_score("A", 3, None)]
    scores += [_score("B", s, 0.9) for s in range(3)] + [_score("B", 3, None)]
    comparison = _comparison(scores)
    assert comparison.seeds == (0, 1, 2)
    assert comparison.left_out == ("seed 3: A diverged and B diverged: it counts for neither",)
    assert comparison.mean.verdict == "better"


def test_no_seed_with_a_score_is_a_comparison_without_a_result():
    comparison = _comparison([_score("A", 0, None), _score("B", 0, None)])
    assert comparison.mean.verdict == "no result" and comparison.seeds == ()
    assert "every trial diverged, failed or did not run" in comparison.mean.text
    assert comparison_lines(comparison)[0].startswith("verdict (test mse_z): no seed where")


def test_numbers_without_names():
    result = paired_difference([1.0] * 3, [1.1, 1.1, 1.1], [0, 1, 2])
    assert numbers(result).startswith("+10.0 % (95 % CI +10.0 to +10.0 %; better on 0, worse on 3")
    assert numbers(paired_difference([1.0], [0.9], [0])) == "-10.0 % (one seed: no interval)"


def test_the_records_read_back_as_written(tmp_path):
    scores = [_score("A", s, 1.0) for s in range(3)] + [_score("B", s, 0.9) for s in range(3)]
    comparison = _comparison(scores)
    certificate = Certificate(
        run="r", winner="t1", winner_label="member-01", winner_epoch=10, control="t0",
        comparison=comparison, ablations=(comparison,), created=1.0,
    )  # fmt: skip
    (tmp_path / "certificate.json").write_bytes(certificate.to_json())
    assert Certificate.read(locate(tmp_path)) == certificate
    assert Certificate.read(locate(tmp_path / "nothing")) is None
    (tmp_path / "certificate.json").write_text(json.dumps({"run": "r"}))  # cut short
    with pytest.raises(InputError, match=r"certificate\.json: unreadable"):
        Certificate.read(locate(tmp_path))


def _quoted_interval(text: str) -> tuple[float, float]:
    """The two ends of the `95 % CI x to y %` a sentence quotes, as printed (signed or not)."""
    import re

    found = re.search(r"95 % CI ([+-]?[\d.e-]+) to ([+-]?[\d.e-]+) %", text)
    assert found, text
    return float(found.group(1)), float(found.group(2))


@pytest.mark.parametrize(
    ("b", "verdict"),
    [
        ([0.90, 0.92, 0.91, 0.92, 0.90], "better"),
        ([1.10, 1.12, 1.08, 1.09, 1.11], "worse"),
        ([0.95, 1.04, 1.01, 0.98, 1.03], "no difference"),
        # an interval wholly below 0 by less than 0.05 %: still quoted as not touching 0
        ([0.9996, 0.9997, 0.9996, 0.9997, 0.9996], "better"),
        # an interval that touches 0 only in the fourth digit: includes it
        ([0.9996, 1.0001, 0.9997, 0.9999, 0.9998], "no difference"),
    ],
)
def test_each_verdicts_words_match_its_numbers(b, verdict):
    result = paired_difference([1.0] * 5, b, SEEDS5)
    assert result.verdict == verdict
    assert result.low is not None and result.high is not None
    low, high = _quoted_interval(result.text)
    if verdict == "better":
        assert result.high < 0 and result.text.startswith("B beats A by")
        assert 0 < low <= high  # printed as the gain's size, both ends above 0
        assert "worse" not in result.text.split("(")[0]
    elif verdict == "worse":
        assert result.low > 0 and result.text.startswith("B is worse than A by")
        assert 0 < low <= high
        assert "beats" not in result.text
    else:
        assert result.low <= 0 <= result.high
        assert low <= 0 <= high and "it includes 0" in result.text
        assert "beats" not in result.text and "worse than" not in result.text


def _certificate(b: list[float | None]) -> Certificate:
    scores = [ArmScore("control", s, f"c{s}", 10, 1.0, 1.0, {"c0": 1.0}) for s in range(len(b))]
    scores += [
        ArmScore("winner", s, f"w{s}", 10, 1.0, v, {"c0": v})
        if v is not None
        else ArmScore("winner", s, f"w{s}", 3, None, None, status="diverged")
        for s, v in enumerate(b)
    ]
    comparison = compare_scores(
        scores, ("control", "as written", "aaaa"), ("winner", "member-01", "bbbb"),
        ("the control's plan", "the winner's plan"), ("persistence", 1.5),
    )  # fmt: skip
    return Certificate("r", "t1", "member-01", 10, "t0", comparison)


@pytest.mark.parametrize(
    ("b", "verdict", "lead"),
    [
        ([0.90, 0.92, 0.91], "better", "Certified on 3 fresh seeds 0-2: the winner's plan beats"),
        ([1.10, 1.12, 1.08], "worse", "Not certified on 3 fresh seeds 0-2: the winner's plan is worse"),
        ([0.95, 1.04, 1.01], "no difference", "Not certified on 3 fresh seeds 0-2: no difference"),
        ([0.9], "one seed", "Not certified on 1 fresh seed 0: one seed gives no interval"),
        # better where it finished, but it diverged where the control did not
        ([0.8, 0.8, None], "worse", "Not certified on 3 fresh seeds 0-2: the winner's plan is worse"),
    ],
)  # fmt: skip
def test_the_certificate_says_certified_only_when_the_winner_is_better(b, verdict, lead):
    from tune_app.analysis.certificate import certificate_lines

    certificate = _certificate(b)
    assert certificate.comparison is not None
    assert certificate.comparison.mean.verdict == verdict
    first = certificate_lines(certificate)[0]
    assert first.startswith(lead), first
    assert ("Certified" in first) == (verdict == "better")

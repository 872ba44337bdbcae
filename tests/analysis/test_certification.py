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


def test_relative_differences_are_b_minus_a_over_a_per_seed():
    result = paired_difference([2.0, 4.0], [1.0, 5.0], [10, 11])
    assert result.differences == (-0.5, 0.25)
    assert result.mean == pytest.approx(-0.125)
    assert result.seeds == (10, 11)


def test_the_interval_is_students_t_over_the_seeds():
    diffs = [-0.10, -0.08, -0.09, -0.08, -0.10]
    result = paired_difference([1.0] * 5, [1 + d for d in diffs], SEEDS5)
    mean = sum(diffs) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4)
    assert result.mean == pytest.approx(mean)
    assert (result.low, result.high) == pytest.approx((mean - half, mean + half))


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
        ([1.0, 0.0], [1.0, 1.0], [0, 1], "must be > 0"),
    ],
)
def test_bad_scores_are_refused(a, b, seeds, problem):
    with pytest.raises(ValueError, match=problem):
        paired_difference(a, b, seeds)


def _score(arm: str, seed: int, c0: float | None, c1: float = 1.0) -> ArmScore:
    if c0 is None:
        return ArmScore(arm, seed, f"{arm}-{seed}", 0, None, None)
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


def test_a_diverged_seed_is_left_out_and_named():
    scores = [_score("A", s, 1.0) for s in range(3)] + [_score("A", 3, None)]
    scores += [_score("B", s, 0.9) for s in range(4)]
    comparison = _comparison(scores)
    assert comparison.seeds == (0, 1, 2)
    assert comparison.left_out == ("seed 3: no score for A (diverged or not run)",)
    assert [s.seed for s in comparison.a_scores] == [0, 1, 2]


def test_no_seed_with_both_scores_is_refused():
    with pytest.raises(ValueError, match="no seed where both"):
        _comparison([_score("A", 0, None), _score("B", 0, 0.9)])


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

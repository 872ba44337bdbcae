"""What the benchmarks print (benchmarks/ is not a package: imported from its folder)."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import pbt_vs_baseline as bench
from _common import mean_std, spread


@pytest.mark.parametrize(
    ("values", "shown"),
    [
        ([0.25], "0.2500 (1 seed)"),  # issue 15's try: "0.2500 +- 0.0000" with one seed
        ([0.2, 0.3], "0.2500 +- 0.0707"),  # the sample std; ddof=0 showed half the gap, 0.0500
        ([0.5, 0.5, 0.5], "0.5000 +- 0.0000"),  # seeds that agree do show a spread of 0
    ],
)
def test_one_seed_prints_its_mean_alone(values: list[float], shown: str):
    assert spread(values) == shown


def test_the_spread_is_the_sample_std():
    values = [0.31, 0.27, 0.4, 0.35]
    assert mean_std(values) == (statistics.mean(values), statistics.stdev(values))
    assert mean_std([0.3]) == (0.3, None)


# -- arguments: refused before any work, naming the bad value and the allowed ones


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--sets", "bogus"], ["--sets", "'bogus'", "synthetic, co2, elnino, macro, weather"]),
        (["--sets", "co2,"], ["--sets", "an empty name", "synthetic, co2"]),
        (["--schedulers", "foo"], ["--schedulers", "'foo'", "pbt, pb2"]),
        (["--schedulers", "pbt,PB2"], ["--schedulers", "'PB2'", "pbt, pb2"]),
        (["--search-seeds", "0"], ["--search-seeds", "must be >= 1, got 0"]),
        (["--population", "1"], ["--population", "must be >= 2, got 1"]),
        (["--phase-epochs", "0"], ["--phase-epochs", "must be >= 1, got 0"]),
        (["--phase-epochs", "two"], ["--phase-epochs", "expected a whole number, got 'two'"]),
    ],
)
def test_a_bad_argument_exits_2_with_one_clear_message(
    argv: list[str], named: list[str], capsys: pytest.CaptureFixture[str]
):
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    for text in named:
        assert text in error


def test_bad_arguments_stop_the_benchmark_before_any_training(monkeypatch: pytest.MonkeyPatch):
    # the user's try: --search-seeds 0 and --schedulers foo failed after the plan's runs
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("trained before checking the arguments")

    monkeypatch.setattr(bench, "baselines", no_work)
    monkeypatch.setattr(bench, "load_plan", no_work)
    for argv in (["--search-seeds", "0"], ["--schedulers", "foo"], ["--sets", "bogus"]):
        with pytest.raises(SystemExit) as exited:
            bench.main(["--sets", "co2", *argv])
        assert exited.value.code == 2


def test_a_set_whose_package_is_missing_is_refused_up_front(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr(bench, "_installed", lambda module: module != "vega_datasets")
    with pytest.raises(SystemExit) as exited:
        bench.parse_args(["--sets", "co2,weather"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "weather needs vega_datasets" in error and "leave it out" in error
    bench.parse_args(["--sets", "co2,synthetic"])  # the others still run


def test_good_arguments_parse_to_lists_and_counts():
    args = bench.parse_args(
        ["--sets", "co2, macro,co2", "--schedulers", "pb2", "--search-seeds", "3"]
    )
    assert args.sets == ["co2", "macro"]  # a repeat runs once
    assert args.schedulers == ["pb2"]
    assert (args.population, args.phase_epochs, args.search_seeds) == (4, 10, 3)
    defaults = bench.parse_args([])
    assert defaults.sets == list(bench.SETS) and defaults.schedulers == ["pbt", "pb2"]


# -- the closing line


def test_fewer_than_three_sets_say_the_target_needs_three():
    row = _new_row()
    lines = bench.target_lines({"co2": row})
    assert "of 1 sets" not in "\n".join(lines)
    assert lines[0].endswith(
        "on >= 3 sets; only 1 set (co2) here, too few to meet it (run at least 3)"
    )
    assert lines[1] == "  pbt: <= 0.90 on 1 of 1 (co2): not met"


def test_three_or_more_sets_count_the_hits():
    hit, miss = _new_row(search_val=0.8), _new_row(search_val=0.95)
    results = {"a": hit, "b": hit, "c": miss, "d": hit}
    lines = bench.target_lines(results)
    assert lines[0].endswith("on >= 3 of the 4 sets")
    assert lines[1] == "  pbt: <= 0.90 on 3 of 4 (a, b, d): met"


# -- the table: test loss and test MSE, labelled, n/a where not measured


def test_the_table_shows_the_test_mse_next_to_the_test_loss():
    lines = bench.set_lines("co2", _new_row(), population=2, search_seeds=2)
    assert lines[0] == (
        "co2: 10 epochs, 1 component, population 2 vs 2 seeded runs of the plan, 2 search seeds"
    )
    assert "test loss" in lines[1] and "test MSE (z)" in lines[1]
    assert lines[2] == "  plan    1.0000 +- 0.1414   0.9000 +- 0.1414   0.5000 +- 0.1414   -"
    assert lines[3] == (
        "  PBT     0.8500 +- 0.0707   0.8000 +- 0.0707   0.4500 +- 0.0707   3, 5       "
        "0.850, 0.889, 0.900"
    )
    legend = bench.legend()
    assert "0.6 x MSE + 0.4 x temporal" in legend and "z-units of the train split" in legend
    assert "sample std (ddof=1)" in legend


def test_a_set_stored_before_the_test_mse_shows_n_a_and_merges(tmp_path: Path):
    path = tmp_path / "pbt_vs_baseline.json"
    settings = {"population": 4, "phase_epochs": 1, "search_seeds": 2}
    path.write_text(json.dumps({**settings, "results": {"weather": _old_row()}}))
    new = {"co2": _new_row()}
    merged, kept = bench.merge_earlier(path, settings, new)
    assert kept == ["weather"] and list(merged) == ["weather", "co2"]
    lines = bench.set_lines("weather", merged["weather"], population=4, search_seeds=2)
    assert lines[0] == "weather: population 4 vs 4 seeded runs of the plan, 2 search seeds"
    assert lines[2] == "  plan    0.8700 +- 0.0693   0.8100 +- 0.0577   n/a                -"
    assert lines[3] == (
        "  PBT     0.6950 +- 0.0495   0.6850 +- 0.0636   n/a                4, 2       "
        "0.800, 0.850, n/a"
    )
    # the old file's stds were ddof=0: now sample stds, the plan's scaled by sqrt(4 / 3)
    assert merged["weather"]["baseline_val"][1] == pytest.approx(0.06 * math.sqrt(4 / 3))
    assert merged["weather"]["pbt"]["val"][1] == pytest.approx(statistics.stdev([0.66, 0.73]))
    assert bench.merge_earlier(path, {**settings, "population": 2}, new) == (new, [])


def test_a_new_row_stores_the_test_mse_of_every_run():
    base = [{"val": 1.0, "test": 0.9, "test_mse": 0.5}, {"val": 1.2, "test": 1.1, "test_mse": 0.7}]
    row = bench.plan_row(base, epochs=10, components=1)
    runs = [_search_run(0.8, 3), _search_run(0.9, 5)]
    bench.add_search(row, "pbt", runs)
    stored = json.loads(json.dumps(row))
    assert stored["baseline_test_mse"] == [
        pytest.approx(0.6),
        pytest.approx(statistics.stdev([0.5, 0.7])),
    ]
    assert stored["pbt"]["test_mse"][0] == pytest.approx(0.45)
    assert stored["pbt"]["ratio_test_mse"] == pytest.approx(0.45 / 0.6)
    assert [run["test_mse"] for run in stored["pbt"]["runs"]] == [0.4, 0.5]


def test_each_winner_is_certified_under_its_searchs_line():
    row = _new_row()
    certified = {
        "pbt-0": {"ratio": 0.947, "low": 0.912, "high": 0.982, "verdict": "better"},
        "pbt-1": {"ratio": 1.0, "low": 1.0, "high": 1.0, "verdict": "the plan as written"},
    }
    bench.add_certified(row, certified, seeds=5)
    stored = json.loads(json.dumps(row))
    assert stored["certify_seeds"] == 5
    assert [run["certified"]["ratio"] for run in stored["pbt"]["runs"]] == [0.947, 1.0]
    assert stored["pbt"]["ratio_certified"] == pytest.approx((0.947 + 1.0) / 2)
    lines = bench.set_lines("co2", stored, population=2, search_seeds=2)
    assert lines[4] == (
        "          certified PBT winner/plan, test MSE on 5 fresh seeds: "
        "0.947 [0.912, 0.982]; 1.000 [1.000, 1.000]"
    )
    assert "certified" in bench.legend() and "fresh seeds" in bench.legend()
    one = {"pbt-0": {"ratio": 0.9, "low": None, "high": None, "verdict": "one seed"}}
    bench.add_certified(row := _new_row(), {**one, "pbt-1": one["pbt-0"]}, seeds=1)
    assert bench.set_lines("co2", row, 2, 2)[4].endswith("0.900 (1 seed); 0.900 (1 seed)")


def test_a_set_stored_before_certification_has_no_certified_line():
    lines = bench.set_lines("weather", _old_row(), population=4, search_seeds=2)
    assert len(lines) == 4 and not any("certified" in line for line in lines)


def test_certify_seeds_are_checked_up_front(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit):
        bench.parse_args(["--certify-seeds", "-1"])
    assert "--certify-seeds" in capsys.readouterr().err
    assert bench.parse_args([]).certify_seeds == 5
    assert bench.parse_args(["--certify-seeds", "0"]).certify_seeds == 0


def _search_run(val: float, exploits: int) -> dict:
    return {"val": val, "test": val - 0.05, "test_mse": round(val - 0.4, 6), "exploits": exploits}


def _new_row(search_val: float = 0.85) -> dict:
    base = [{"val": 0.9, "test": 0.8, "test_mse": 0.4}, {"val": 1.1, "test": 1.0, "test_mse": 0.6}]
    row = bench.plan_row(base, epochs=10, components=1)
    runs = [_search_run(search_val - 0.05, 3), _search_run(search_val + 0.05, 5)]
    bench.add_search(row, "pbt", runs)
    return row


def _old_row() -> dict:
    """A set as the JSON held it before the test MSE (pbt_vs_baseline.json, weather, trimmed)."""
    runs = [
        {"val": 0.66, "test": 0.64, "control_val": 0.8, "exploits": 4, "rounds": 4, "lineage": []},
        {"val": 0.73, "test": 0.73, "control_val": 0.8, "exploits": 2, "rounds": 4, "lineage": []},
    ]
    return {
        "baseline_val": [0.87, 0.06],
        "baseline_test": [0.81, 0.05],
        "pbt": {
            "runs": runs,
            "val": [0.695, 0.035],
            "test": [0.685, 0.045],
            "ratio_val": 0.8,
            "ratio_test": 0.85,
        },
        "seconds": 120.0,
    }


def test_the_test_mse_is_evaluates_mean_mse_z():
    # the unit the table names: what `tune-app evaluate` reports as the mean mse_z
    import torch
    from tiny import TINY_DATA, TINY_MODEL, TINY_TRAIN

    from tune_app.analysis.evaluate import LoadedModel, evaluate
    from tune_app.plan.plan import load_plan
    from tune_app.runs.spec import RunSpec
    from tune_app.training.model import Seq2Seq
    from tune_app.training.trainer import evaluate_free

    torch.manual_seed(0)
    model = Seq2Seq(TINY_MODEL).eval()
    spec = RunSpec(load_plan(phase_epochs=1), TINY_MODEL, TINY_DATA, TINY_TRAIN)
    scores = bench._test_scores(model, spec)
    dataset = spec.dataset()
    loaded = LoadedModel(model, TINY_MODEL, TINY_DATA, TINY_TRAIN.rank_max_lag, None, "-")
    report = evaluate(loaded, dataset, "test", season=4)
    assert scores["test_mse"] == pytest.approx(report["scores"]["model"]["mean"]["mse_z"], rel=1e-5)
    reference = evaluate_free(model, dataset.test, 0.6, 20)
    assert scores["test"] == pytest.approx(float(reference["loss"]))
    assert scores["test"] != pytest.approx(scores["test_mse"])  # two different scores


# -- trainer_overhead's GRU paths: the compiled ways time the model's own function


@pytest.mark.parametrize(
    ("hidden", "batch", "steps_in", "steps_out"), [(8, 3, 5, 4), (32, 7, 48, 24)]
)
def test_the_functional_gru_the_compile_column_times_is_the_models(
    hidden: int, batch: int, steps_in: int, steps_out: int
):
    import gru_paths
    import torch

    from tune_app.training.model import ModelConfig, Seq2Seq

    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig(components=3, hidden=hidden)).train()
    x, target = torch.randn(batch, steps_in, 3), torch.randn(batch, steps_out, 3)
    found = gru_paths.ways(model, modes=[])  # the uncompiled functions torch.compile is given
    by_torch = found["nn.GRU"](x, target, torch.Generator().manual_seed(1))
    functional = gru_paths.seq2seq(
        gru_paths.gru_cell,
        x,
        steps_out,
        target,
        torch.rand((batch, steps_out, 1), generator=torch.Generator().manual_seed(1))
        < gru_paths.TEACHER_FORCING,
        *[list(m.parameters()) for m in (model.encoder, model.decoder, model.head)],
    )
    torch.testing.assert_close(functional, by_torch, rtol=1e-5, atol=1e-6)
    by_hand = found["hand-written"](x, target, torch.Generator().manual_seed(1))
    assert torch.equal(by_hand, by_torch)


def _gru_row(hidden: int, cell: float, sequence: float) -> dict:  # type: ignore[type-arg]
    ms = {"nn.GRU": 30.0, "hand-written": 20.0, "cell compiled (default)": 20.0 * cell}
    ms["sequence compiled (default)"] = 20.0 * sequence
    return {
        "hidden": hidden,
        "batch": 64,
        "steps_in": 48,
        "steps_out": 24,
        "components": 3,
        "teacher_forcing": 0.7,
        "rounds": 20,
        "ms_per_batch": ms,
        "to_hand_written": {name: value / 20.0 for name, value in ms.items()},
        "compile_s": {"cell compiled (default)": 17.0, "sequence compiled (default)": 128.0},
        "compile_startup_s": 9.0,
    }


@pytest.mark.parametrize(
    ("cell", "sequence", "verdicts"),
    [
        ((1.65, 1.3), (0.56, 0.7), ("no", "yes")),
        ((1.05, 1.12), (1.1, 1.0), ("no", "yes")),  # within 10 % at every size, or not at all
        ((1.0, 1.09), (1.2, 1.3), ("yes", "no")),
    ],
)
def test_the_gru_table_says_which_compiled_way_is_within_ten_percent(cell, sequence, verdicts):
    import trainer_overhead

    rows = [_gru_row(32, cell[0], sequence[0]), _gru_row(64, cell[1], sequence[1])]
    lines = trainer_overhead.gru_lines(rows)
    assert "hidden 32" in lines[1] and "hidden 64" in lines[1]
    assert f"{cell[0]:.2f}x" in next(line for line in lines if "cell compiled (default) " in line)
    assert lines[-2].endswith(f"within 10 %: {verdicts[0]}")
    assert lines[-1].endswith(f"within 10 %: {verdicts[1]}")
    assert lines[-2].startswith("  cell compiled (default): ")

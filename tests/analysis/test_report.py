"""The report: every section and image, on a finished run and on one still going."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from tiny import TINY_DATA, TINY_MODEL, train_tiny

from tune_app.analysis.outcome import plateaus
from tune_app.cli import main
from tune_app.plan.plan import load_plan
from tune_app.training.data import build_dataset, series_from_arrow

COMPONENTS = ["ozone", "no2", "temperature"]  # named, to check the report uses the names


@pytest.fixture(scope="module")
def named(synthetic_file: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The synthetic data with its components named, as a file and as a data set."""
    import pyarrow.parquet as pq

    frame = pd.read_parquet(synthetic_file).rename(
        columns=dict(zip(["c0", "c1", "c2"], COMPONENTS, strict=True))
    )
    path = tmp_path_factory.mktemp("named") / "named.parquet"
    frame.to_parquet(path, index=False)
    return path, build_dataset(series_from_arrow(pq.read_table(path), TINY_DATA, "t"), TINY_DATA)


BASE_SECTIONS = [
    "Summary",
    "Trials",
    "Learning curves",
    "Train/val gap",
    "Per-component validation losses",
    "Schedules used",
]


def fake_run(
    root: Path,
    dataset,
    kind: str = "baseline",
    trials: int = 1,
    epochs: int | None = None,
    data_path: Path | None = None,
) -> Path:  # type: ignore[no-untyped-def]
    """A run directory laid out as Ray Tune writes one, from real in-process training."""
    plan = load_plan(phase_epochs=2)
    run = root / kind
    run.mkdir(parents=True)
    spec = {"plan": plan.to_dict(), "train": {}, "data_path": str(data_path) if data_path else None}
    (run / "tune_app_run.json").write_text(
        json.dumps({"kind": kind, "spec": spec, "components": COMPONENTS})
    )
    for index in range(trials):
        trial_dir = run / f"member-{index:02d}"
        # a search's control gets a much smaller model, so a searcher surely beats it
        model = replace(TINY_MODEL, hidden=2) if kind == "search" and index == 0 else TINY_MODEL
        result = train_tiny(plan, dataset, trial_dir / "work", model=model, stop_after=epochs)
        member = {"index": index, "control": index == 0, "params": {"alpha_shift": 0.1 * index}}
        params = (
            {"member": member}
            if kind == "search"
            else {"capacity": {"hidden": 16 + index, "layers": 1}}
            if kind == "capacity"
            else {}
        )
        (trial_dir / "params.json").write_text(json.dumps(params))
        rows = [
            {**row, "trial_id": f"t{index}", "training_iteration": row["epoch"], "config": params}
            for row in result.history
        ]
        (trial_dir / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for number, checkpoint in enumerate(sorted((trial_dir / "work" / "checkpoints").iterdir())):
            shutil.copytree(checkpoint, trial_dir / f"checkpoint_{number:06d}")
    if kind == "search":  # an older exploit line (no "event"), a round and a newer exploit
        events = [
            {"epoch": 2, "trial": "t1", "donor": "t0", "val_free_loss": 1.0,
             "donor_val_free_loss": 0.9, "old": {"alpha_shift": 0.1},
             "new": {"alpha_shift": 0.15}},
            {"event": "round", "epoch": 4,
             "ranking": [{"trial": t, "member": i, "val_free_loss": v, "params": {}}
                         for i, (t, v) in enumerate([("t0", 0.8), ("t1", 0.7), ("t2", 1.1)])],
             "exploits": [{"trial": "t2", "donor": "t1"}],
             "left_alone": [{"trial": "t0", "member": 0, "reason": "control (never changed)"}]},
            {"event": "exploit", "epoch": 4, "trial": "t2", "donor": "t1",
             "val_free_loss": 1.1, "donor_val_free_loss": 0.9, "old": {"alpha_shift": 0.2},
             "donor_params": {"alpha_shift": 0.15}, "new": {"alpha_shift": 0.05}},
        ]  # fmt: skip
        (run / "pbt_journal.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return run


def _check(out: Path, sections: list[str], images_expected: int = 4) -> str:
    page = (out / "report.html").read_text()
    markdown = (out / "report.md").read_text()
    for title in sections:
        assert f"<h2>{title}</h2>" in page, title
        assert f"## {title}" in markdown, title
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == len(re.findall(r"!\[", markdown)) == images_expected
    assert all(len(i) > 1000 for i in images)
    for name in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (out / name).is_file()
    return page


def _summary(page: str) -> str:
    """The text of the Summary section, which must be the first."""
    first = page.index("<h2>")
    assert page[first:].startswith("<h2>Summary</h2>"), page[first : first + 80]
    return page[first : page.index("<h2>", first + 1)]


@pytest.mark.parametrize(
    ("kind", "extra", "images", "said"),
    [
        ("baseline", [], 4, ["baseline: the plan as written", "free-running) validation"]),
        (
            "search",
            ["PBT family tree", "Modifications ranked"],
            5,
            [
                "against the control",
                "test mse_z",
                "Exploits behind the winner",
                "Modifications in force",
            ],
        ),
        (
            "capacity",
            ["Parameter importances"],
            5,
            ["Capacity of the winner", "free-running) validation"],
        ),
    ],
)
def test_report_opens_with_its_answer_and_has_every_section(
    kind, extra, images, said, named, tmp_path: Path
):
    path, dataset = named
    run = fake_run(tmp_path, dataset, kind, trials=1 if kind == "baseline" else 3, data_path=path)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    page = _check(tmp_path / "out", BASE_SECTIONS + extra, images)
    summary = _summary(page)
    for words in said:
        assert words in summary, (words, summary)
    assert "10 epochs in 5 phases" in summary and str(path) in summary
    assert "could not be computed" not in summary
    assert re.search(r"test (mse_z )?\d\.\d+", summary), summary  # scored on the test split
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## Trials")
    for name in COMPONENTS:
        assert name in summary and name in markdown
    assert "val_c0" not in page and "val_c0" not in markdown


def test_report_counts_epochs_from_checkpoints_not_tunes_cut_short_results(named, tmp_path: Path):
    """An exploited trial's result.json can stop short; the report reads the checkpoint's history
    (as `best` does) and shows the finished trial as finished."""
    path, dataset = named
    run = fake_run(tmp_path, dataset, "search", trials=2, data_path=path)
    result = run / "member-01" / "result.json"
    result.write_text("".join(result.read_text().splitlines(keepends=True)[:7]))
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "not finished yet" not in page
    assert page.count("<td>10/10</td>") == 2


def test_report_names_each_exploit_and_its_change(named, tmp_path: Path):
    path, dataset = named
    run = fake_run(tmp_path, dataset, "search", trials=3, data_path=path)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    tree = markdown[markdown.index("## PBT family tree") : markdown.index("## Modifications")]
    assert "2 exploit(s)" in tree  # the round event is not an exploit
    assert "| 2 | member-01 | member-00 (control) |" in tree
    assert "alpha_shift 0.1→0.15" in tree and "alpha_shift 0.15→0.05" in tree
    mods = markdown[markdown.index("## Modifications ranked") :]
    header = next(line for line in mods.splitlines() if line.startswith("| parameter"))
    assert header.count("member-0") == 3  # one column per member: the table is transposed


def test_evidence_of_what_helped_follows_each_exploit_to_the_next_round(named, tmp_path: Path):
    from tune_app.analysis.text import exploit_effects, winner_modifications
    from tune_app.runs.results import open_run

    path, dataset = named
    run = open_run(str(fake_run(tmp_path, dataset, "search", trials=3, data_path=path)))
    effects = exploit_effects(run)
    first, second = effects.to_dict("records")
    # epoch 2: member-01 copied the control; at the next round, epoch 4, it scored 0.7 and the
    # control, going on from the same weights, 0.8
    assert (first["member"], first["copied"], first["next epoch"]) == (
        "member-01",
        "member-00 (control)",
        4,
    )
    assert (first["copier next"], first["donor next"]) == (0.7, 0.8)
    assert first["vs donor"] == pytest.approx(0.7 - 0.8)
    assert first["parameters changed"] == "alpha_shift 0.1→0.15"
    # epoch 4: no later round, so both members' last checkpoints, at the same epoch
    last = {t.trial_id: t.checkpoints[-1].meta.metrics["val_free_loss"] for t in run.trials}
    assert second["next epoch"] == 10 and second["donor at exploit"] == 0.9
    assert (second["copier next"], second["donor next"]) == (last["t2"], last["t1"])
    lines = winner_modifications(run)
    # fake_run trains every member on the plan as written (its params are labels only); its
    # journal has member-01 copy the control at epoch 2, so every winner's chain starts there
    assert lines[0] == "epochs 1-2 by member-00 (control): the plan as written", lines
    assert re.fullmatch(
        r"epochs \d+-10 by member-0[12], copied from member-0[01].*: the plan as written", lines[-1]
    ), lines
    markdown = tmp_path / "out" / "report.md"
    assert main(["report", str(tmp_path / "search"), "--out", str(markdown.parent)]) == 0
    text = markdown.read_text()
    helped = text[text.index("## Which modification helped") : text.index("## Modifications")]
    assert "not a claim of causality" in helped and "| vs donor |" in helped
    assert "| 2 | member-01 | member-00 (control) | 0.9 | 4 | 0.7 | 0.8 | -0.1 |" in helped


def test_report_names_a_pb2_search_pb2(named, tmp_path: Path):
    """Issue 15's try: a PB2 search was labelled PBT in the report and the search summary."""
    path, dataset = named
    run = fake_run(tmp_path, dataset, "search", trials=2, data_path=path)
    manifest = json.loads((run / "tune_app_run.json").read_text())
    (run / "tune_app_run.json").write_text(json.dumps({**manifest, "scheduler": "pb2"}))
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "## PB2 family tree" in markdown and "PB2 search of 2 members" in markdown
    assert "PBT" not in markdown


def test_search_summary_names_members_as_the_report_does(named, tmp_path: Path):
    """The lines `tune-app search` ends with: rounds, the winner's lineage, against the control."""
    from tune_app.analysis.text import search_summary
    from tune_app.runs.results import open_run

    path, dataset = named
    lines = search_summary(open_run(str(fake_run(tmp_path, dataset, "search", 3, data_path=path))))
    assert lines[0] == "PBT: 1 rounds, 1 exploits (epoch 4: 1)"
    assert re.fullmatch(
        r"winner: (member-0[12]) at epoch \d+: (member-0\d.* epochs 1-\d+ -> )*\1 epochs \d+-\d+",
        lines[1],
    ), lines
    # the control trains a much smaller model (see fake_run): the winner beats it
    assert re.fullmatch(
        r"selection \(optimistic\): winner val_free_loss \S+ = 0\.\d+ x the control's best "
        r"\(\S+, the plan as written\)",
        lines[2],
    )
    # its test score next to its validation one, and how to certify it
    assert re.fullmatch(
        r"winner mse_z: test \S+, validation \S+ \(selection\); the control's: test \S+, "
        r"validation \S+; winner / control on test \d\.\d+",
        lines[3],
    ), lines[3]
    assert lines[4].startswith("Not certified: the search's own scores chose the winner")
    assert "run `tune-app certify " in " ".join(" ".join(lines[4:]).split())


def test_report_on_a_run_still_going(named, tmp_path: Path):
    path, dataset = named
    run = fake_run(tmp_path, dataset, "baseline", epochs=3, data_path=path)
    with open(next(run.glob("member-*")) / "result.json", "a") as handle:
        handle.write('{"epoch": 4, "val_free')  # a line being written right now
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    page = _check(tmp_path / "out", BASE_SECTIONS)
    assert "not finished yet" in page


def test_report_on_a_run_with_no_results_yet(tmp_path: Path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "tune_app_run.json").write_text(json.dumps({"kind": "search"}))
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    assert "No trial has reported" in (tmp_path / "out" / "report.html").read_text()


def test_report_on_something_that_is_not_a_run(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "not a tune_app run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([5, 4, 3, 2, 1], []),
        ([5] + [6] * 35 + [4], [(2, 36)]),
        ([5] + [6] * 31, [(2, 32)]),
        ([5] + [6] * 30, []),
    ],
)
def test_plateaus_longer_than_30_epochs(losses, expected):
    frame = pd.DataFrame({"epoch": range(1, len(losses) + 1), "val_free_loss": losses})
    assert plateaus(frame, 30) == expected


def test_tables_use_the_checkpoint_history_not_a_cut_short_result_json(
    tiny_dataset, tmp_path: Path, capsys
):
    """Failure 2 of issue 12: an exploited trial's result.json can stop early (6 rows where its
    checkpoints hold 10 epochs); `best` and `report` showed the winner at a worse value."""
    from tune_app.runs.results import open_run, trial_table

    run = fake_run(tmp_path, tiny_dataset, "search", trials=2)
    cut = run / "member-01" / "result.json"
    rows = cut.read_text().splitlines()
    cut.write_text("\n".join(rows[:2]) + "\n")  # Tune's record of trial 1 cut short
    history = pd.read_parquet(sorted(run.glob("member-01/checkpoint_*"))[-1] / "metrics.parquet")
    assert len(history) == len(rows) == 10
    (row,) = [r for r in trial_table(open_run(str(run))) if r["trial"] == "t1"]
    assert row["epochs"] == 10
    assert row["best_val_free_loss"] == pytest.approx(history["val_free_loss"].min())
    assert main(["best", str(run), "--out", str(tmp_path / "best")]) == 0
    summary = capsys.readouterr().out
    assert f"{history['val_free_loss'].min():.6f}" in summary
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    assert f"{history['val_free_loss'].min():.6g}" in (tmp_path / "out" / "report.html").read_text()


def _certify_by_hand(run: Path, winner: bool = True) -> str:
    """A certificate as `tune-app certify` writes it, from hand-made scores: the winner's plan
    lower on each of 3 seeds. Returns the verdict it states."""
    from tune_app.analysis.certification import compare_scores
    from tune_app.runs.records import ArmScore, Certificate
    from tune_app.runs.results import find_best, open_run

    trial, checkpoint = find_best(open_run(str(run)))
    scores = [ArmScore("control", s, f"c{s}", 10, 1.0, 1.0, {"ozone": 1.0}) for s in range(3)]
    scores += [
        ArmScore("winner", s, f"w{s}", 10, 0.9, 0.9 + s / 100, {"ozone": 0.9}) for s in range(3)
    ]
    comparison = compare_scores(
        scores, ("control", "as written", "aaa"), ("winner", "member", "bbb"),
        ("the control's plan", "the winner's plan"), ("persistence", 1.4),
    )  # fmt: skip
    certificate = Certificate(
        run=str(run), winner=trial.trial_id if winner else "another", winner_label="member",
        winner_epoch=checkpoint.epoch, control="t0", comparison=comparison,
    )  # fmt: skip
    (run / "certificate.json").write_bytes(certificate.to_json())
    return comparison.mean.text


def test_a_certified_search_report_opens_with_its_certificate(named, tmp_path: Path):
    path, dataset = named
    run = fake_run(tmp_path, dataset, "search", trials=3, data_path=path)
    verdict = _certify_by_hand(run)
    assert verdict.startswith("the winner's plan beats the control's plan by 9.0 %")
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    summary = markdown[markdown.index("## Summary") : markdown.index("## Trials")]
    first = summary.splitlines()[2]
    assert first.startswith("- Certified on 3 fresh seeds 0-2: the winner's plan beats the plan")
    assert verdict in first
    assert "valid" not in first.replace("best-validation", "")  # before any validation number
    assert "validation mse_z, a selection (optimistic) score" in summary
    assert "| seed | control's plan: test mse_z | winner's plan: test mse_z |" in summary
    assert "| val_free_loss (selection) | val mse_z (selection) |" in summary
    assert "Not certified" not in summary


def test_an_uncertified_search_report_says_how_to_certify(named, tmp_path: Path):
    path, dataset = named
    run = fake_run(tmp_path, dataset, "search", trials=2, data_path=path)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    summary = markdown[markdown.index("## Summary") : markdown.index("## Trials")]
    assert summary.splitlines()[2].startswith("- Not certified: the search's own scores")
    assert f"tune-app certify {run}" in summary


@pytest.mark.parametrize("same_checkpoint", [True, False])
def test_best_carries_the_certificate_of_its_checkpoint(named, same_checkpoint, tmp_path, capsys):
    path, dataset = named
    run = fake_run(tmp_path, dataset, "search", trials=2, data_path=path)
    verdict = _certify_by_hand(run, winner=same_checkpoint)
    assert main(["best", str(run), "--out", str(tmp_path / "best")]) == 0
    out = " ".join(capsys.readouterr().out.split())  # unwrapped
    assert (tmp_path / "best" / "certificate.json").is_file() == same_checkpoint
    if same_checkpoint:
        assert verdict in out and "metrics.parquet certificate.json" in out
        copied = json.loads((tmp_path / "best" / "certificate.json").read_text())
        assert copied == json.loads((run / "certificate.json").read_text())
    else:
        assert "the run's certificate is about trial another" in out and "not copied" in out


def test_capacity_importances_use_the_space_the_run_recorded(named, tmp_path: Path):
    """Issue 23: the importances loaded the package's capacity.yaml, not the run's --space, so
    a capacity outside the package's bounds (hidden 16-128) made Optuna raise."""
    from tune_app.analysis.importances import parameter_importances, recorded_space
    from tune_app.analysis.outcome import trial_metrics
    from tune_app.plan.search_space import parse_space
    from tune_app.runs.results import open_run

    path, dataset = named
    run = fake_run(tmp_path, dataset, "capacity", trials=3, data_path=path)
    space = parse_space(
        {
            "kind": "capacity",
            "params": {
                "hidden": {"type": "int", "low": 160, "high": 512, "log": True},
                "layers": {"type": "int", "low": 1, "high": 3},
            },
        },
        "wide.yaml",
        "capacity",
    )
    manifest = json.loads((run / "tune_app_run.json").read_text())
    manifest |= {"space": "wide.yaml", "space_file": "wide.yaml", "space_content": space.to_dict()}
    (run / "tune_app_run.json").write_text(json.dumps(manifest))
    for index, trial in enumerate(sorted(run.glob("member-*"))):
        capacity = {"hidden": 200 + 100 * index, "layers": 1 + index % 2}
        (trial / "params.json").write_text(json.dumps({"capacity": capacity}))
    opened = open_run(str(run))
    assert recorded_space(opened, "capacity.yaml", "capacity").params == space.params
    table = parameter_importances(opened, trial_metrics(opened))
    assert table is not None and sorted(table["parameter"]) == ["hidden", "layers"]
    assert table["importance"].sum() == pytest.approx(1.0, abs=1e-3)
    assert main(["report", str(run), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "report.md").read_text()
    shown = markdown[markdown.index("## Parameter importances") :]
    assert "![Parameter importances](importances.png)" in shown and "| hidden |" in shown

"""Real users' data files (issue 20, items 1-7 and the CSV dialects of 12): no silent wrong
numbers, timestamps as users have them. Each case runs the CLI as a user would: exit code, the
message's key words, no traceback, and numbers equal where they must be."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import TRAIN_FLAGS, export_train_checkpoint

from tune_app.cli import main
from tune_app.training.synthetic import make_synthetic

KINDS = ["run", "run/checkpoints/epoch_00005", "export", "run/best_model.pth"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """syn.parquet (4 series x 200 steps x 3 components), a tiny `train` on it in run/, its
    last checkpoint exported to export/, and an older-format copy of each (no statistics)."""
    root = tmp_path_factory.mktemp("user_data")
    make_synthetic(series=4, length=200, components=3).to_parquet(root / "syn.parquet")
    argv = ["train", "--data", str(root / "syn.parquet"), *TRAIN_FLAGS, "--out", str(root / "run")]
    assert main(argv) == 0
    export_train_checkpoint(root / "run", root / "run/checkpoints/epoch_00005", root / "export")
    # as tune_app wrote them before checkpoints carried their statistics
    old = root / "old_checkpoint"
    shutil.copytree(root / "run/checkpoints/epoch_00005", old)
    state = torch.load(old / "state.pt", weights_only=True)
    state.pop("normalisation", None)
    torch.save(state, old / "state.pt")
    meta = json.loads((old / "meta.json").read_text())
    meta.pop("normalisation", None)
    (old / "meta.json").write_text(json.dumps(meta))
    shutil.copytree(root / "export", root / "old_export")
    config = json.loads((root / "old_export/config.json").read_text())
    config.pop("normalisation", None)
    (root / "old_export/config.json").write_text(json.dumps(config))
    return root


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def _generated(trained: Path, kind: str, capsys, *data: str, steps: int = 3) -> pd.DataFrame:
    out = trained / f"gen-{abs(hash((kind, data)))}.parquet"
    argv = ["generate", trained / kind, "--series", "s01", "--steps", steps, "--out", out, *data]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    return pd.read_parquet(out)


def _mse_z(trained: Path, kind: str, capsys, *data: str) -> dict[str, float]:
    code, out, err = _run(["evaluate", trained / kind, "--json", *data], capsys)
    assert code == 0, err
    scores = json.loads(out)["scores"]["model"]
    return {name: row["mse_z"] for name, row in scores.items()}


# 1. a file is z-scored with the model's statistics, never its own
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "select",
    [
        lambda f: f[f.series_id == "s01"],  # the series alone
        lambda f: f[f.series_id.isin(["s01", "s03"])],
        lambda f: pd.concat([f, f[f.series_id == "s00"].assign(series_id="big", c0=f.c0 * 50)]),
    ],
    ids=["alone", "with-s03", "with-a-larger-series"],
)
def test_the_same_forecast_whatever_else_the_file_holds(kind, select, trained: Path, capsys):
    frame = pd.read_parquet(trained / "syn.parquet")
    other = trained / "other.parquet"
    select(frame).to_parquet(other, index=False)
    own = _generated(trained, kind, capsys)
    pd.testing.assert_frame_equal(_generated(trained, kind, capsys, "--data", str(other)), own)


# 2. columns are selected and ordered by the names the model was trained on
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("columns", "said"),
    [
        (["c2", "c0", "c1"], ""),
        (["c1", "extra", "c2", "c0"], "column(s) 'extra' ignored; the model uses 'c0', 'c1', 'c2'"),
    ],
    ids=["reordered", "extra-column"],
)
def test_reordered_or_extra_columns_score_the_same(kind, columns, said, trained: Path, capsys):
    frame = pd.read_parquet(trained / "syn.parquet").assign(extra=1.0)
    other = trained / "columns.csv"
    frame[["series_id", "step", *columns]].to_csv(other, index=False)
    own = _mse_z(trained, kind, capsys)  # the CSV holds float32 values in decimal: 1e-7 apart
    assert _mse_z(trained, kind, capsys, "--data", str(other)) == pytest.approx(own, rel=1e-5)
    code, _, err = _run(["evaluate", trained / kind, "--data", other], capsys)
    assert code == 0 and said in err
    gen = _generated(trained, kind, capsys, "--data", str(other))
    own_gen = _generated(trained, kind, capsys)
    pd.testing.assert_frame_equal(gen, own_gen, check_exact=False, rtol=1e-5)  # c0 is still c0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["evaluate", "generate"])
def test_a_missing_component_is_named(kind, command, trained: Path, capsys):
    other = trained / "missing.parquet"
    pd.read_parquet(trained / "syn.parquet").drop(columns=["c1"]).to_parquet(other)
    argv = [
        command,
        trained / kind,
        "--data",
        other,
        *(["--series", "s01"] * (command == "generate")),
    ]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert "no component column 'c1' (the model was trained on 'c0', 'c1', 'c2')" in err
    assert "--components" not in err  # a flag these commands do not have


@pytest.mark.parametrize("older", ["old_checkpoint", "old_export"])
def test_an_older_checkpoint_still_loads_and_says_how_it_normalises(older, trained, capsys):
    code, _, err = _run(["evaluate", trained / older], capsys)
    assert code == 0, err
    assert "does not record its training statistics" in err and "own train split" in err
    assert _mse_z(trained, older, capsys) == _mse_z(trained, "export", capsys)  # same data


def test_resume_and_continue_use_the_checkpoints_statistics(trained: Path, tmp_path, capsys):
    """--allow-other-data on a file holding s01 only: z-scored as the checkpoint was trained,
    so the first resumed epoch starts from the same normalised values."""
    other = tmp_path / "s01.parquet"
    frame = pd.read_parquet(trained / "syn.parquet")
    frame[frame.series_id == "s01"].to_parquet(other, index=False)
    checkpoint = trained / "run/checkpoints/epoch_00003"
    out = tmp_path / "resumed"
    argv = ["train", "--resume", checkpoint, "--data", other, "--allow-other-data", *TRAIN_FLAGS]
    code, _, err = _run([*argv, "--out", out], capsys)
    assert code == 0, err
    stored = json.loads((checkpoint / "meta.json").read_text())["normalisation"]
    assert json.loads((out / "config.json").read_text())["normalisation"] == stored
    cont = tmp_path / "cont"
    argv = ["continue", "--model_path", trained / "export", "--epochs", "1", "--data", other]
    argv += ["--start_lr", "1e-4", "--min_lr", "1e-5", "--output_dir", cont, "--allow-other-data"]
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    assert json.loads((cont / "config.json").read_text())["normalisation"] == stored


def test_every_kind_records_names_and_statistics(trained: Path):
    run = json.loads((trained / "run/config.json").read_text())
    meta = json.loads((trained / "run/checkpoints/epoch_00005/meta.json").read_text())
    export = json.loads((trained / "export/config.json").read_text())
    best = torch.load(trained / "run/best_model.pth", weights_only=True)
    frame = pd.read_parquet(trained / "syn.parquet")
    train_part = pd.concat(g.iloc[: int(0.7 * len(g))] for _, g in frame.groupby("series_id"))
    for record in (run["normalisation"], meta["normalisation"], export["normalisation"]):
        assert record == best["normalisation"]
        assert record["components"] == ["c0", "c1", "c2"]
        np.testing.assert_allclose(
            record["mean"], train_part[["c0", "c1", "c2"]].astype(float).mean(), rtol=1e-12
        )


# 3. large values keep their digits; tiny units are not "constant"; zero references give n/a
def _scaled(trained: Path, name: str, column: str, make) -> Path:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(trained / "syn.parquet")
    frame[column] = make(frame[column].astype(np.float64))
    path = trained / name
    frame.to_parquet(path, index=False)
    return path


def test_large_offsets_keep_their_spread(trained: Path, tmp_path: Path, capsys):
    path = _scaled(trained, "big.parquet", "c0", lambda c: 1e12 + c * 1e3)
    code, out, _ = _run(["data", "inspect", path], capsys)
    assert code == 0
    frame = pd.read_parquet(path)
    for series_id, group in frame.groupby("series_id"):
        row = next(line for line in out.splitlines() if line.split()[:1] == [series_id])
        shown_std = float(row.split()[3])
        assert shown_std == pytest.approx(group.c0.std(ddof=0), rel=0.01)
    assert "constant" not in out
    code, _, err = _run(["train", "--data", path, *TRAIN_FLAGS, "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    report = json.loads(_run(["evaluate", tmp_path / "t", "--json"], capsys)[1])
    assert report["scores"]["persistence"]["c0"]["mse"] > 0


def _float32_fingerprint(path: Path) -> str:
    """A data fingerprint as tune_app took it before fingerprints were float64: sha256 of the
    names, then per series (sorted) its id and its values cast to float32."""
    import hashlib

    frame = pd.read_parquet(path).sort_values(["series_id", "step"])
    names = [c for c in frame.columns if c not in ("series_id", "step")]
    digest = hashlib.sha256("|".join(names).encode())
    for series_id, group in frame.groupby("series_id", sort=True):
        digest.update(str(series_id).encode())
        digest.update(np.ascontiguousarray(group[names].to_numpy(np.float32)).tobytes())
    return digest.hexdigest()


def test_files_that_differ_only_in_a_large_components_digits_are_other_data(
    trained: Path, tmp_path: Path, capsys
):
    """fresh-20 item 3: the fingerprint was taken over float32 values, so a file whose 1e12
    component is constant (or shifted by 20,000) was "the same data" and a resume trained on
    it without a word."""
    from tune_app.training.data import read_series

    big = _scaled(trained, "big.parquet", "c0", lambda c: 1e12 + c * 1e3)
    flat = _scaled(trained, "bigconst.parquet", "c0", lambda c: c * 0 + 1e12)
    shifted = _scaled(trained, "bigshift.parquet", "c0", lambda c: 1e12 + c * 1e3 + 2e4)
    assert len({read_series(p).fingerprint for p in (big, flat, shifted)}) == 3
    assert _run(["train", "--data", big, *TRAIN_FLAGS, "--out", tmp_path / "t"], capsys)[0] == 0
    checkpoint = tmp_path / "t" / "checkpoints" / "epoch_00003"
    for other in (flat, shifted):
        argv = ["train", "--resume", checkpoint, "--data", other, "--out", tmp_path / "r"]
        code, _, err = _run(argv, capsys)
        assert code == 2 and "--allow-other-data" in err, err
        assert not (tmp_path / "r").exists()
    # a checkpoint from before (its fingerprint over float32 values) still resumes on its data
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    state["data_fingerprint"] = _float32_fingerprint(big)
    assert state["data_fingerprint"] == read_series(big).older_fingerprint
    torch.save(state, checkpoint / "state.pt")
    code, out, err = _run(["train", "--resume", checkpoint, "--out", tmp_path / "old"], capsys)
    assert code == 0 and "done:" in out, err


def test_a_float32_file_that_lost_the_spread_is_said(trained: Path, capsys):
    path = _scaled(trained, "big32.parquet", "c0", lambda c: (1e12 + c * 1e3).astype(np.float32))
    code, out, _ = _run(["data", "inspect", path], capsys)
    assert code == 0
    assert "'c0' is stored as float" in out and "store it as float64" in out


def test_tiny_units_are_not_constant_and_skill_stays_finite(trained, tmp_path, capsys):
    path = _scaled(trained, "tiny.parquet", "c1", lambda c: c * 1e-10)
    code, out, _ = _run(["data", "inspect", path], capsys)
    assert code == 0 and "constant" not in out
    assert _run(["train", "--data", path, *TRAIN_FLAGS, "--out", tmp_path / "t"], capsys)[0] == 0
    report = json.loads(_run(["evaluate", tmp_path / "t", "--json"], capsys)[1])
    skill = report["scores"]["model"]["c1"]["skill"]
    assert skill is not None and abs(skill) < 100  # not -3.8e20


def test_the_float32_note_is_for_lost_spread_not_for_a_constant_column(trained: Path, capsys):
    """fresh-20 item 3 sibling: a column equal to 5.0 everywhere got "too far for float32 to
    keep their spread (std 0 instead of 1.8e-15)": float64's rounding of a constant."""
    flat = _scaled(trained, "const5.parquet", "c2", lambda c: c * 0 + 5.0)
    flat_big = _scaled(trained, "const1e12.parquet", "c2", lambda c: c * 0 + 1e12)
    far = _scaled(trained, "far.parquet", "c2", lambda c: c + 1e9)  # far outside training's
    for path in (flat, flat_big):
        code, _, err = _run(["evaluate", trained / "run", "--data", path], capsys)
        assert code == 0 and "float32" not in err, err
    code, _, err = _run(["evaluate", trained / "run", "--data", far], capsys)
    assert code == 0 and "component 'c2'" in err and "too far for float32" in err, err


def test_a_constant_component_scores_n_a(trained: Path, tmp_path: Path, capsys):
    path = _scaled(trained, "flat.parquet", "c2", lambda c: c * 0 + 7.0)
    code, out, _ = _run(["data", "inspect", path], capsys)
    assert "constant component(s) s00:c2" in out
    assert _run(["train", "--data", path, *TRAIN_FLAGS, "--out", tmp_path / "t"], capsys)[0] == 0
    code, out, _ = _run(["evaluate", tmp_path / "t"], capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("c2") and "model" in line)
    assert row.split()[-1] == "n/a"
    report = json.loads(_run(["evaluate", tmp_path / "t", "--json"], capsys)[1])
    assert report["scores"]["model"]["c2"]["skill"] is None


# 4.-6. timestamps of any type and zone: read, checked, never a component
def _timed(trained: Path, name: str, make) -> Path:  # type: ignore[no-untyped-def]
    frame = pd.read_parquet(trained / "syn.parquet")
    start = pd.Timestamp("2024-03-30", tz="Europe/Berlin")  # crosses the March DST change
    frame.insert(2, "timestamp", make(start + pd.to_timedelta(frame.step, unit="h")))
    path = trained / name
    frame.to_csv(path, index=False) if name.endswith(".csv") else frame.to_parquet(path)
    return path


TIMESTAMPS = {
    "tz-aware.parquet": lambda t: t,
    "utc.parquet": lambda t: t.dt.tz_convert("UTC"),
    "offsets-across-dst.csv": lambda t: t,  # +01:00 then +02:00
    "naive-utc.csv": lambda t: t.dt.tz_convert("UTC").dt.tz_localize(None),
    "unix-seconds.parquet": lambda t: (t - pd.Timestamp(0, tz="UTC")).dt.total_seconds(),
    "iso-strings.parquet": lambda t: t.astype(str),
    "dates-daily.parquet": lambda t: pd.Series(
        pd.date_range("2020-01-01", periods=len(t) // 4).date.tolist() * 4
    ),
}


@pytest.mark.parametrize("name", list(TIMESTAMPS))
def test_timestamps_are_read_and_never_a_component(name, trained: Path, tmp_path, capsys):
    path = _timed(trained, name, TIMESTAMPS[name])
    code, out, err = _run(["data", "inspect", path], capsys)
    assert code == 0, err
    assert "components: 'c0', 'c1', 'c2'" in out and "problems: none" in out
    every = "every 1 d" if "daily" in name else "every 1 h"
    assert every in out
    code, _, err = _run(["train", "--data", path, *TRAIN_FLAGS, "--out", tmp_path / "t"], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / "t/config.json").read_text())
    assert config["components"] == ["c0", "c1", "c2"]


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (  # local times without an offset repeat 02:00 when clocks go back
            lambda t: (
                (pd.Timestamp("2024-10-26 12:00") + pd.to_timedelta(range(len(t)), "h"))
                .to_series(index=t.index)
                .where(
                    lambda s: s < pd.Timestamp("2024-10-27 03:00"), lambda s: s - pd.Timedelta("1h")
                )
            ),
            ["does not increase", "UTC offset"],
        ),
        (lambda t: t.astype(str).str.replace("2024", "20x4"), ["not readable as times"]),
    ],
    ids=["naive-dst-repeat", "unparsable"],
)
def test_bad_timestamps_are_refused(make, said, trained: Path, capsys):
    path = _timed(trained, "bad_times.csv", make)
    for argv in (["data", "inspect", path], ["train", "--data", path, *TRAIN_FLAGS]):
        code, _, err = _run(argv, capsys)
        assert code == 2 and all(s in err for s in said), err


def test_local_times_across_clocks_going_forward_get_the_dst_hint(trained: Path, capsys):
    """fresh-20 item 6 sibling: naive local hourly times 01:00, 03:00 on 2024-03-31 were an
    "irregular interval" with the advice to add the missing rows; no row is missing."""
    naive = lambda t: t.dt.tz_localize(None)  # noqa: E731  (Berlin wall-clock times)
    path = _timed(trained, "spring_naive.csv", naive)
    code, out, _ = _run(["data", "inspect", path], capsys)
    assert code == 0 and "an hour more: clocks going forward?" in out, out
    assert "skip an hour when clocks go forward" in out and "add the missing rows" not in out
    code, _, err = _run(["train", "--data", path, *TRAIN_FLAGS], capsys)
    assert code == 2 and "skip an hour when clocks go forward" in err and "UTC" in err, err
    assert "add the missing rows" not in err
    # a real jump besides: both advices
    jump = lambda t: naive(t).where(t.index % 200 <= 150, naive(t) + pd.Timedelta(hours=10))  # noqa: E731
    code, _, err = _run(
        ["train", "--data", _timed(trained, "both.csv", jump), *TRAIN_FLAGS], capsys
    )
    assert code == 2 and "clocks go forward" in err and "add the missing rows" in err, err


def test_an_ordinary_swap_of_two_times_gets_no_dst_hint(trained: Path, capsys):
    """fresh-20 item 10: two swapped rows in January were told about clocks going back."""
    frame = pd.read_parquet(trained / "syn.parquet")
    frame.insert(2, "timestamp", pd.Timestamp("2024-01-01") + pd.to_timedelta(frame.step, "h"))
    rows = frame.index[(frame.series_id == "s02") & frame.step.isin([10, 11])]
    frame.loc[rows, "timestamp"] = frame.loc[rows[::-1], "timestamp"].to_numpy()
    frame.to_parquet(trained / "swap.parquet")
    code, _, err = _run(["data", "inspect", trained / "swap.parquet"], capsys)
    assert code == 2 and "does not increase" in err and "step 10 at 2024-01-01 11:00" in err
    assert "UTC offset" not in err and "clocks" not in err, err


def test_the_scored_files_timestamps_give_the_season(tmp_path: Path, capsys):
    """A 22.5-step cycle in hourly data: the ACF alone peaks near 22, the timestamps make it a
    day (24), with or without --data."""
    t = np.arange(400)
    rng = np.random.default_rng(0)
    frames = [
        pd.DataFrame(
            {
                "series_id": f"s{i}",
                "step": t,
                "timestamp": pd.date_range("2024-01-01", periods=t.size, freq="h", tz="UTC"),
                "load": np.sin(2 * np.pi * t / 22.5 + i) + 0.3 * rng.normal(size=t.size),
            }
        )
        for i in range(3)
    ]
    pd.concat(frames).to_csv(tmp_path / "ts.csv", index=False)
    argv = ["train", "--data", tmp_path / "ts.csv", *TRAIN_FLAGS, "--out", tmp_path / "t"]
    assert _run(argv, capsys)[0] == 0
    seasons = []
    for data in ([], ["--data", tmp_path / "ts.csv"]):
        code, out, err = _run(["evaluate", tmp_path / "t", "--json", *data], capsys)
        assert code == 0, err
        report = json.loads(out)
        seasons.append((report["season"], report["season_source"]))
    assert seasons[0] == seasons[1]
    assert seasons[0][0] == 24 and "a day" in seasons[0][1]


def test_irregular_intervals_are_listed_and_refused_like_gaps(trained: Path, capsys):
    jump = lambda t: t.where(t.index % 200 <= 99, t + pd.Timedelta(hours=10))  # noqa: E731
    path = _timed(trained, "jump.csv", jump)
    code, out, _ = _run(["data", "inspect", path], capsys)
    assert code == 0
    assert "irregular interval in series 's00': 11 h after step 99 (usually 1 h per step)" in out
    for argv in (
        ["train", "--data", path, *TRAIN_FLAGS],
        ["evaluate", trained / "export", "--data", path],
    ):
        code, _, err = _run(argv, capsys)
        assert code == 2 and "the timestamp jumps" in err and "11 h after step 99" in err


def test_duplicate_names_in_a_parquet_file_are_named(tmp_path: Path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [
        pa.array(["s"] * 3),
        pa.array([0, 1, 2]),
        pa.array([1.0, 2, 3]),
        pa.array([1.0, 2, 3]),
    ]
    pq.write_table(
        pa.table(columns, names=["series_id", "step", "c0", "c0"]), tmp_path / "d.parquet"
    )
    code, _, err = _run(["data", "inspect", tmp_path / "d.parquet"], capsys)
    assert code == 2 and "'c0' at positions 3, 4" in err, err


def test_a_row_without_its_time_is_named(tmp_path: Path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("series_id,step,timestamp,c0\ns,0,2024-01-01 00:00,1\ns,1,,2\n")
    code, _, err = _run(["data", "inspect", path], capsys)
    assert code == 2 and "1 row(s) without a timestamp, first at data row 2" in err, err


def test_business_days_are_regular(trained: Path, capsys):
    days = pd.bdate_range("2020-01-01", periods=200)
    path = _timed(trained, "bdays.parquet", lambda t: pd.Series(list(days) * 4, index=t.index))
    code, out, _ = _run(["data", "inspect", path], capsys)
    assert code == 0 and "problems: none" in out


# 7. and 12.: files whose shape is wrong are named, not a traceback
CSV_CASES = [
    (
        "series_id,step,c0,c0,c2\ns,0,1,2,3\n",
        ["'c0' at positions 3, 4", "given more than once"],
    ),
    (
        "series_id;step;c0\ns;0;1,5\ns;1;2,5\n",
        ["semicolon-separated CSV with decimal commas", "sep=';'"],
    ),
    ("series_id;step;c0\ns;0;1.5\n", ["semicolon-separated CSV (header", "decimal='.'"]),
    ("series_id\tstep\tc0\ns\t0\t1.5\n", ["tab-separated CSV"]),
    ("series_id,step,c0\ns,0,1,5\ns,1,2,5\n", ["decimal commas (1,5)", "decimal=','"]),
    (
        'series_id,step,c0,c1,c2\ns,0,"1,5",1,2\ns,1,"2,5",1,2\n',
        ["'c0'", "not numeric", "decimal commas"],
    ),
]


@pytest.mark.parametrize(
    ("text", "said"),
    CSV_CASES,
    ids=[
        "duplicate",
        "semicolon-decimal-comma",
        "semicolon",
        "tab",
        "decimal-comma",
        "quoted-decimal-comma",
    ],
)
@pytest.mark.parametrize("command", ["inspect", "train", "evaluate"])
def test_a_file_of_the_wrong_shape_is_named(text, said, command, trained, tmp_path, capsys):
    path = tmp_path / "odd.csv"
    path.write_text(text)
    argv = {
        "inspect": ["data", "inspect", path],
        "train": ["train", "--data", path, "--out", tmp_path / "t"],
        "evaluate": ["evaluate", trained / "export", "--data", path],
    }[command]
    code, _, err = _run(argv, capsys)
    assert code == 2 and all(s in err for s in said), err
    assert not (tmp_path / "t").exists()

"""Joining a cluster by address, the parts that need no cluster: which address a run uses,
where Ray's token comes from, and an address where something else listens."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tune_app.cli import main
from tune_app.errors import InputError
from tune_app.tune.cluster import target, token_source
from tune_app.tune.ray_env import auth_mode, token_here


@pytest.mark.parametrize(
    ("flag", "environ", "expected"),
    [
        (None, {}, None),  # a Ray of the run's own
        ("auto", {}, "auto"),
        (None, {"RAY_ADDRESS": "10.0.0.5:6379"}, "10.0.0.5:6379"),  # as `ray job submit` sets
        ("10.0.0.7:6379", {"RAY_ADDRESS": "10.0.0.5:6379"}, "10.0.0.7:6379"),  # the flag wins
        (None, {"RAY_ADDRESS": ""}, None),
    ],
)
def test_the_cluster_a_run_joins(flag, environ, expected, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert target(flag) == expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"RAY_AUTH_TOKEN": "abc", "RAY_AUTH_TOKEN_PATH": "/t"}, "RAY_AUTH_TOKEN"),  # Ray's order
        ({"RAY_AUTH_TOKEN": "  ", "RAY_AUTH_TOKEN_PATH": "/t"}, "RAY_AUTH_TOKEN_PATH=/t"),
        ({}, str(Path.home() / ".ray" / "auth_token")),
    ],
)
def test_where_the_token_comes_from_in_rays_order(environ, expected):
    assert token_source(environ) == expected


@pytest.fixture
def not_a_gcs() -> Iterator[int]:
    """A port where a plain TCP server listens (as the dashboard's HTTP port would), saying
    nothing to what connects."""
    server = socket.socket()
    server.bind(("", 0))
    server.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for connection in accepted:
        connection.close()


def test_an_address_where_no_gcs_listens_is_one_line_in_seconds(
    not_a_gcs: int, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    """Ray's client would wait ~40 s there; the HTTP/2 preface gets no answer in 3 s."""
    began = time.monotonic()
    argv = ["baseline", "--address", f"127.0.0.1:{not_a_gcs}", "--storage", str(tmp_path / "s")]
    assert main([*argv, "--phase-epochs", "1"]) == 2
    assert time.monotonic() - began < 15
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "does not answer as a Ray cluster" in err and "--address 127.0.0.1:6379" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(("failures", "starts"), [(1, True), (2, False)])
def test_a_ray_that_does_not_start_is_tried_again_then_one_line(
    failures: int, starts: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """Under heavy load Ray's raylet can abort at start-up (a C++ check on its dashboard agent's
    port file, 15 s), and ray.init raises: one more try, then one line (exit 1)."""
    import ray

    from tune_app.errors import RunFailed
    from tune_app.tune import cluster

    calls = []

    def init(**_: object) -> None:
        calls.append(1)
        if len(calls) > failures:
            return
        try:
            raise TimeoutError("Timed out waiting for file metrics_agent_port_5c6")
        except TimeoutError as exc:
            raise RuntimeError("The raylet exited") from exc

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(cluster.time, "sleep", lambda _: None)
    if starts:
        cluster.start_local(num_cpus=1)
        assert "trying once more" in capsys.readouterr().out
    else:
        with pytest.raises(RunFailed, match="did not start on this machine, twice: Timed out"):
            cluster.start_local(num_cpus=1)
    assert len(calls) == min(failures + 1, 2)


@pytest.fixture
def no_ray_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No Ray address or authentication setting, and a HOME without ~/.ray/auth_token."""
    for name in list(os.environ):
        if name.startswith(("RAY_ADDRESS", "RAY_AUTH")):
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_token_mode_without_a_token_is_one_line_naming_where_ray_looks(
    not_a_gcs: int,
    no_ray_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
):
    """Against a cluster, Ray's client aborts the process there (exit 1, not a word on the
    screen); it is checked before Ray is imported or the data read."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    argv = ["baseline", "--address", f"127.0.0.1:{not_a_gcs}", "--storage", str(tmp_path / "s")]
    assert main([*argv, "--phase-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "RAY_AUTH_MODE=token here, but no Ray token was found" in err
    for place in ("RAY_AUTH_TOKEN,", "RAY_AUTH_TOKEN_PATH names", str(no_ray_settings / ".ray")):
        assert place in err, place
    assert "ray get-auth-token" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("value", "mode"), [("token", "token"), ("TOKEN", "token"), ("disabled", "disabled")]
)
def test_the_authentication_mode_chosen(value: str, mode: str):
    assert auth_mode({"RAY_AUTH_MODE": value}) == mode
    assert auth_mode({}) is None


def test_an_authentication_mode_ray_does_not_know_is_refused():
    """Ray takes it for disabled without a word."""
    with pytest.raises(InputError, match="RAY_AUTH_MODE='tokn': Ray knows token and disabled"):
        auth_mode({"RAY_AUTH_MODE": "tokn"})


_RAY_FINDS = """
import json, os, sys
from ray._raylet import AuthenticationTokenLoader
found = []
for environ in json.loads(sys.argv[1]):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        os.environ.pop(name, None)
    os.environ.update(environ)
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    try:
        found.append(bool(loader.has_token(ignore_auth_mode=True)))
    except Exception:
        found.append(None)
print(json.dumps(found))
"""


def test_a_token_is_found_where_and_as_ray_finds_it(tmp_path: Path):
    """The pure-Python look (before Ray is imported) against Ray's own C++ loader, case by
    case: True (a token), False (none), None (Ray's error: RAY_AUTH_TOKEN_PATH names no token)."""
    files = {"good": "abc\n", "empty": "", "blank": "  \n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    homes = {}
    for name in ("none", "good", "blank"):
        homes[name] = tmp_path / f"home-{name}"
        (homes[name] / ".ray").mkdir(parents=True)
        if name != "none":
            (homes[name] / ".ray" / "auth_token").write_text(files[name])
    cases = [
        {"HOME": str(homes["none"])},
        {"HOME": str(homes["good"])},
        {"HOME": str(homes["blank"])},
        {"HOME": str(homes["none"]), "RAY_AUTH_TOKEN": "abc"},
        {"HOME": str(homes["good"]), "RAY_AUTH_TOKEN": ""},  # empty: the next place
        {"HOME": str(homes["good"]), "RAY_AUTH_TOKEN": "  "},  # spaces: no token at all
        {"HOME": str(homes["none"]), "RAY_AUTH_TOKEN": " abc "},
        {"HOME": str(homes["none"]), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "good")},
        {"HOME": str(homes["good"]), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")},
        {"HOME": str(homes["none"]), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "empty")},
        {"HOME": str(homes["none"]), "RAY_AUTH_TOKEN_PATH": str(tmp_path / "blank")},
        {"HOME": str(homes["none"]), "RAY_AUTH_TOKEN_PATH": str(tmp_path)},  # a folder
        {"HOME": str(homes["good"]), "RAY_AUTH_TOKEN_PATH": ""},
        {"HOME": str(homes["none"]), "RAY_AUTH_TOKEN": "  ", "RAY_AUTH_TOKEN_PATH": "/missing"},
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run(
        [sys.executable, "-c", _RAY_FINDS, json.dumps(cases)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rays = json.loads(done.stdout.strip().splitlines()[-1])

    def ours(environ: dict[str, str]) -> bool | None:
        try:
            return token_here(environ)
        except InputError:
            return None

    assert [ours(case) for case in cases] == rays


_LOADED = """
import sys
from tune_app.cli.main import main
code = main(sys.argv[1:])
print(" ".join(name for name in ("torch", "ray.tune") if name in sys.modules))
sys.exit(code)
"""


@pytest.mark.parametrize("where", ["closed", "not-a-gcs"])
def test_a_join_that_cannot_work_fails_before_tune_torch_and_the_data_load(
    where: str, not_a_gcs: int, tmp_path: Path
):
    """The address is checked first: a data file that is not there is never reached, and
    neither Tune nor torch was imported (seconds on a busy machine)."""
    with socket.socket() as closed:  # a port nobody listens on once this one is closed
        closed.bind(("127.0.0.1", 0))
        free = closed.getsockname()[1]
    port = free if where == "closed" else not_a_gcs
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    argv = ["baseline", "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path / "s")]
    argv += ["--data", str(tmp_path / "not-there.parquet"), "--phase-epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, *argv], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"tune-app: error: --address 127.0.0.1:{port}: "), done.stderr
    assert "not-there" not in done.stderr
    assert done.stdout.strip() == "", f"imported before the address was checked: {done.stdout}"


def _addresses(line: str) -> set[str]:
    """Every HOST:PORT (or dotted address) a message names."""
    return set(re.findall(r"(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?|localhost(?::\d+)?", line))


@pytest.mark.parametrize("answer", ["not-a-gcs", "silence", "rpc-error", "no-node-here"])
def test_every_message_names_the_address_the_user_gave(
    answer: str,
    not_a_gcs: int,
    no_ray_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
):
    """Ray resolves an address before it connects: on Linux it swaps 127.0.0.1 for this
    machine's own (192.0.2.2 where this was found; here Ray's resolution is stood in for by
    192.0.2.2, or by localhost where the port must answer). The user typed 127.0.0.1:PORT."""
    from ray.exceptions import RpcError

    from tune_app.tune import _ray_gcs, cluster

    given = f"127.0.0.1:{not_a_gcs}"
    swapped = f"{'localhost' if answer == 'not-a-gcs' else '192.0.2.2'}:{not_a_gcs}"
    monkeypatch.setattr(_ray_gcs, "resolve_auto", lambda address: swapped)
    if answer != "not-a-gcs":
        monkeypatch.setattr(cluster, "_speaks_grpc", lambda address: True)

    def probe(gcs_address: str, timeout_s: float) -> _ray_gcs.ClusterProbe | None:
        assert gcs_address == swapped
        if answer == "rpc-error":
            raise RpcError(f"failed to connect to all addresses; last error: {gcs_address}")
        if answer == "silence":
            return None
        return _ray_gcs.ClusterProbe(("2.60.0", "3.11.7"), None, nodes_here=False)

    monkeypatch.setattr(_ray_gcs, "probe_cluster", probe)
    monkeypatch.setattr(cluster, "auth_mode", lambda environ: "disabled")
    argv = ["baseline", "--address", given, "--storage", str(tmp_path / "s"), "--phase-epochs", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert {named.split(":")[0] for named in _addresses(err)} == {"127.0.0.1"}, err
    assert "127.0.0.1" in err.split(f"--address {given}: ", 1)[1], err  # in the cause too


def test_only_the_newest_join_logs_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Every failed join leaves Ray's messages in /tmp/tune_app/ray-join-*.log: the newest
    KEEP_LOGS stay, older ones go, other files are left alone."""
    from tune_app.tune import cluster

    monkeypatch.setattr(cluster.tempfile, "tempdir", str(tmp_path))
    folder = tmp_path / "tune_app"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for age in range(15):  # ray-join-00 the newest
        old = folder / f"ray-join-{age:02d}.log"
        old.write_text("Ray said something")
        os.utime(old, (1e9 - age, 1e9 - age))
    made = cluster._join_log()
    kept = sorted(p.name for p in folder.glob("ray-join-*.log"))
    newest = [f"ray-join-{age:02d}.log" for age in range(cluster.KEEP_LOGS - 1)]
    assert kept == sorted([made.name, *newest])
    assert (folder / "notes.txt").exists()


@pytest.mark.parametrize("ray_says", [True, False])
def test_a_failed_join_names_its_log_or_leaves_none(
    ray_says: bool,
    not_a_gcs: int,
    no_ray_settings: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
):
    """A join log that Ray wrote to is named in the line (and holds Ray's words); one it did
    not write to is removed, not left behind empty."""
    from ray.exceptions import RpcError

    from tune_app.tune import _ray_gcs, cluster

    monkeypatch.setattr(cluster.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    address = f"127.0.0.1:{not_a_gcs}"
    monkeypatch.setattr(_ray_gcs, "resolve_auto", lambda given: given)
    if ray_says:  # as Ray's C++ client logs each failed try to file descriptor 2

        def probe(gcs_address: str, timeout_s: float) -> None:
            os.write(2, b"gcs_client.cc:210: Failed to get cluster ID from GCS server\n")
            raise RpcError("failed to connect to all addresses")

        monkeypatch.setattr(cluster, "_speaks_grpc", lambda given: True)
        monkeypatch.setattr(_ray_gcs, "probe_cluster", probe)
    argv = ["baseline", "--address", address, "--storage", str(tmp_path / "s")]
    assert main([*argv, "--phase-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    logs = list((tmp_path / "tmp" / "tune_app").glob("ray-join-*.log"))
    if ray_says:
        assert len(logs) == 1 and f"(Ray's messages: {logs[0]})" in err, err
        assert "Failed to get cluster ID" in logs[0].read_text()
    else:
        assert logs == [] and "Ray's messages" not in err, err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


@pytest.mark.parametrize(
    ("address", "said"),
    [
        ("127.0.0.1:99999", "a port from 1 to 65535"),
        ("127.0.0.1:0", "a port from 1 to 65535"),
        ("http://127.0.0.1:8265", "Ray joins no http:// address"),
        ("ray://http://127.0.0.1:8265", "Ray joins no http:// address"),
    ],
)
def test_an_address_of_the_wrong_form_is_named_before_anything_is_tried(
    address: str, said: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    argv = ["baseline", "--address", address, "--storage", str(tmp_path / "s")]
    assert main([*argv, "--phase-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and said in err, err
    assert not (tmp_path / "s").exists()


def test_ray_client_advice_starts_ray_clients_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    port = _closed_port()
    argv = ["baseline", "--address", f"ray://127.0.0.1:{port}", "--storage", str(tmp_path / "s")]
    assert main([*argv, "--phase-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--ray-client-server-port {port}" in err and "ray[client]" in err, err
    assert f"--head --port {port}" not in err


def test_an_address_from_ray_address_is_named_as_the_variable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    port = _closed_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    assert main(["baseline", "--storage", str(tmp_path / "s"), "--phase-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"RAY_ADDRESS=127.0.0.1:{port} (no --address given)" in err, err
    assert "unset RAY_ADDRESS" in err and "--address 127.0.0.1" not in err, err

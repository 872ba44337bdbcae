"""Real Ray clusters started with `ray start --node-ip-address 127.0.0.1` on this machine, joined
with --address the way a user joins one: under Ray 2.60's default token authentication, with the
token given each way Ray reads it; refused tokens; a cluster without authentication; a cluster of
another Ray version; a run without --address beside a cluster; a multi-node cluster that trials
spread over."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clusters import Cluster

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "tune_app.cli"]
TINY = ["--phase-epochs", "2", "--stride", "4", "--hidden", "16"]


def _run(
    argv: list[str], env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=timeout, env=env)


def _with_token(env: dict[str, str], token: str, source: str, tmp_path: Path) -> dict[str, str]:
    """The driver's environment with a token given one of the ways Ray reads it."""
    if source == "RAY_AUTH_TOKEN":
        return {**env, "RAY_AUTH_TOKEN": token}
    if source == "RAY_AUTH_TOKEN_PATH":
        file = tmp_path / "cluster-token"
        file.write_text(token)
        return {**env, "RAY_AUTH_TOKEN_PATH": str(file)}
    home = tmp_path / "home"  # ~/.ray/auth_token, where `ray get-auth-token --generate` puts it
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(token)
    return {**env, "HOME": str(home)}


JOINS = [
    # (command, how the cluster is named, where the driver's token comes from)
    ("baseline", "auto", "RAY_AUTH_TOKEN"),
    ("baseline", "HOST:PORT", "RAY_AUTH_TOKEN_PATH"),
    ("search", "auto", "~/.ray/auth_token"),
    ("search", "HOST:PORT", "RAY_AUTH_TOKEN"),
]


@pytest.mark.parametrize(("command", "named", "source"), JOINS)
def test_a_run_joins_a_token_cluster(
    token_cluster: Cluster, tmp_path: Path, command: str, named: str, source: str
):
    """Ray turns token mode on by itself for `auto` only; tune_app does for HOST:PORT too."""
    assert token_cluster.token
    address = "auto" if named == "auto" else token_cluster.address
    env = _with_token(token_cluster.env, token_cluster.token, source, tmp_path)
    extra = ["--population", "2"] if command == "search" else []
    storage = tmp_path / "storage"
    before = token_cluster.drivers()
    run = _run(
        [command, "--address", address, "--storage", str(storage), "--name", "r", *TINY, *extra],
        env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "gcs_client" not in run.stderr
    assert token_cluster.drivers() - before, "the run's driver joined the cluster"
    best = _run(["best", str(storage / "r")], env, timeout=120)
    assert best.returncode == 0, best.stderr


REFUSED = [
    # (the driver's token settings, what its one line says)
    (
        {"RAY_AUTH_TOKEN": "0123456789abcdef" * 4},
        "the cluster refused this machine's Ray token (from RAY_AUTH_TOKEN)",
    ),
    ({}, "the cluster requires Ray's authentication token and none was found here"),
    ({"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "x" * 32}, "but RAY_AUTH_MODE=disabled here"),
    ({"RAY_AUTH_TOKEN_PATH": "/nonexistent/token"}, "RAY_AUTH_TOKEN_PATH=/nonexistent/token"),
    # Ray's client aborted the process here (exit 1, nothing on the screen)
    ({"RAY_AUTH_MODE": "token"}, "RAY_AUTH_MODE=token here, but no Ray token was found"),
]


@pytest.mark.parametrize(
    ("setting", "says"), REFUSED, ids=["wrong", "none", "disabled", "no-file", "token-none"]
)
def test_a_refused_token_is_one_line_within_seconds(
    token_cluster: Cluster, tmp_path: Path, setting: dict[str, str], says: str
):
    storage = tmp_path / "storage"
    began = time.monotonic()
    run = _run(
        ["baseline", "--address", token_cluster.address, "--storage", str(storage), *TINY],
        {**token_cluster.env, **setting},
        timeout=120,
    )
    took = time.monotonic() - began
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], run.stderr
    assert "ray get-auth-token" in lines[0] or "unset RAY_AUTH_MODE" in lines[0]
    assert "Traceback" not in run.stderr
    assert took < 15, f"took {took:.1f} s"
    assert not storage.exists()
    named = re.search(r"Ray's messages: (\S+)\)", lines[0])
    if named:  # Ray's repeated GCS warnings went to the log the line names, not the screen
        assert "InvalidAuthToken" in Path(named.group(1)).read_text()


@pytest.mark.parametrize("named", ["HOST:PORT", "auto"])
@pytest.mark.parametrize("here", ["token", "disabled"])
def test_an_authentication_mode_the_cluster_does_not_run_is_one_line(
    open_cluster: Cluster, token_cluster: Cluster, tmp_path: Path, here: str, named: str
):
    """RAY_AUTH_MODE=token against a cluster without authentication (its trials died before
    they started: tracebacks, exit 1, and advice on learning rates), and the reverse: one
    line naming the mismatch and the fix, before the run's folder exists."""
    cluster = open_cluster if here == "token" else token_cluster
    env = {**cluster.env, "RAY_AUTH_MODE": here, "RAY_AUTH_TOKEN": cluster.token or "f" * 64}
    storage = tmp_path / "storage"
    address = "auto" if named == "auto" else cluster.address
    began = time.monotonic()
    run = _run(["baseline", "--address", address, "--storage", str(storage), *TINY], env, 120)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    says = (
        "RAY_AUTH_MODE=token here, but the cluster has authentication disabled"
        if here == "token"
        else "the cluster requires Ray's authentication token, but RAY_AUTH_MODE=disabled here"
    )
    assert says in lines[0] and "unset RAY_AUTH_MODE" in lines[0], lines[0]
    assert time.monotonic() - began < 15
    assert not storage.exists()


def test_a_cluster_without_authentication_is_joined_by_a_driver_with_a_token(
    open_cluster: Cluster, tmp_path: Path
):
    """A token on the driver's machine turns token mode on; a cluster started with
    RAY_AUTH_MODE=disabled takes such a driver all the same."""
    env = _with_token(open_cluster.env, "f" * 64, "~/.ray/auth_token", tmp_path)
    storage = tmp_path / "storage"
    before = open_cluster.drivers()
    run = _run(
        ["baseline", "--address", open_cluster.address, "--storage", str(storage), *TINY], env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert open_cluster.drivers() - before


def test_a_cluster_of_another_ray_version_is_named(open_cluster: Cluster, tmp_path: Path):
    """The versions the cluster recorded (what `ray.init` compares) say Ray 2.59.0."""
    from ray._common.usage.usage_constants import CLUSTER_METADATA_KEY
    from ray._private.ray_constants import KV_NAMESPACE_CLUSTER
    from ray._raylet import GcsClient

    client = GcsClient(address=open_cluster.address)
    recorded = client.internal_kv_get(CLUSTER_METADATA_KEY, namespace=KV_NAMESPACE_CLUSTER)
    older = json.dumps({**json.loads(recorded), "ray_version": "2.59.0"}).encode()
    client.internal_kv_put(CLUSTER_METADATA_KEY, older, True, namespace=KV_NAMESPACE_CLUSTER)
    try:
        run = _run(
            [
                "baseline",
                "--address",
                open_cluster.address,
                "--storage",
                str(tmp_path / "s"),
                *TINY,
            ],
            open_cluster.env,
            timeout=120,
        )
    finally:
        client.internal_kv_put(CLUSTER_METADATA_KEY, recorded, True, namespace=KV_NAMESPACE_CLUSTER)
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "the cluster runs Ray 2.59.0 on Python" in lines[0], run.stderr
    assert "install ray[tune]==2.59.0" in lines[0]


def test_a_run_without_address_starts_its_own_ray_beside_a_cluster(
    token_cluster: Cluster, tmp_path: Path
):
    """A bare `ray.init()` joins the newest `ray start` cluster of this machine (here: the
    driver shares the cluster's RAY_TMPDIR and has its token); a run without --address starts
    a Ray of its own instead."""
    assert token_cluster.token
    env = _with_token(token_cluster.env, token_cluster.token, "~/.ray/auth_token", tmp_path)
    before = token_cluster.drivers()
    run = _run(["baseline", "--storage", str(tmp_path / "s"), "--name", "own", *TINY], env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert not token_cluster.drivers() - before, "the run joined the cluster"


def test_baseline_through_address_on_a_two_node_cluster(local_cluster: Cluster, tmp_path: Path):
    storage = tmp_path / "storage"
    argv = ["baseline", "--address", local_cluster.address, "--storage", str(storage)]
    run = _run([*argv, "--name", "c", *TINY], local_cluster.env)
    assert run.returncode == 0, run.stderr[-2000:]
    status = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "status", "--address", local_cluster.address],
        capture_output=True,
        text=True,
        timeout=60,
        env={**local_cluster.env, "RAY_AUTH_MODE": "token"},
    )
    assert status.stdout.count("node_") >= 3, status.stdout + status.stderr  # the nodes joined
    best = _run(["best", str(storage / "c")], local_cluster.env, timeout=120)
    assert best.returncode == 0, best.stderr
    config = json.loads((storage / "c" / "best" / "config.json").read_text())
    assert config["epoch"] == 10


def test_search_spreads_a_population_of_three_over_the_nodes(
    local_cluster: Cluster, tmp_path: Path
):
    """Three nodes of one CPU each and three trials of one CPU: trials that run at the same
    time run on different nodes. Then `best` reads the run back."""
    storage = tmp_path / "storage"
    argv = ["search", "--address", local_cluster.address, "--storage", str(storage), "--name", "p"]
    argv += ["--population", "3", "--cpus-per-trial", "1", "--phase-epochs", "4"]
    run = _run([*argv, "--stride", "4", "--hidden", "16"], local_cluster.env, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    spans = []
    for trial in (storage / "p").iterdir():
        if (trial / "result.json").exists():
            rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
            spans.append(
                (rows[0]["timestamp"] - rows[0]["time_this_iter_s"], rows[-1]["timestamp"])
            )
    assert len(spans) == 3
    start, end = max(s for s, _ in spans), min(e for _, e in spans)
    assert start < end, "all three trials ran at once, so on three different one-CPU nodes"
    best = _run(["best", str(storage / "p")], local_cluster.env, timeout=120)
    assert best.returncode == 0, best.stderr
    assert "control" in best.stdout


def test_resources_no_node_has_are_refused_after_a_bounded_wait(
    local_cluster: Cluster, tmp_path: Path
):
    """Three nodes of one CPU: three CPUs in all, but a 2-CPU trial fits on none of them."""
    storage = tmp_path / "storage"
    argv = ["baseline", "--address", local_cluster.address, "--storage", str(storage)]
    argv += ["--cpus-per-trial", "2", "--wait-for-resources", "3", "--phase-epochs", "1"]
    run = _run(argv, local_cluster.env, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "--cpus-per-trial 2 but the largest node of the cluster at" in run.stderr
    assert "has 1 CPU (waited 3 s)" in run.stderr and "Traceback" not in run.stderr
    assert not storage.exists()

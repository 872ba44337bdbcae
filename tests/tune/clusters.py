"""Ray clusters for tests/tune/test_cluster.py, started with `ray start` on this machine, each in
a temp dir of its own and stopped by its own pids: `ray stop` would stop every Ray on the
machine, other runs' too."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cluster", "driver_env", "started_cluster"]


@dataclass(frozen=True)
class Cluster:
    """A cluster the tests started with `ray start`: its address (the head's GCS), the
    environment a driver on this machine runs in (its RAY_TMPDIR, so `--address auto` finds
    this cluster and no other; a HOME without a token), and the cluster's token, if any."""

    address: str
    env: dict[str, str]
    token: str | None
    logs: Path  # the head's session logs: a driver that joins leaves python-core-driver-*.log

    def drivers(self) -> set[Path]:
        """The log files of the drivers that have joined the cluster so far."""
        return set(self.logs.glob("python-core-driver-*.log"))


def _ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray")


def _own_processes(tmpdir: Path) -> list[int]:
    """The processes a cluster started: every Ray process inherits the RAY_TMPDIR of the
    `ray start` that began it, and nothing else on this machine has that one."""
    mark = f"RAY_TMPDIR={tmpdir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def _stop(tmpdir: Path) -> None:
    """Stop this cluster's processes only (`ray stop` would stop every Ray on the machine)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        pids = _own_processes(tmpdir)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        if not pids:
            return


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def driver_env(tmpdir: Path, home: Path, **extra: str) -> dict[str, str]:
    """A driver's environment: ours without any Ray address or authentication setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    return {
        **env,
        "RAY_TMPDIR": str(tmpdir),
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        **extra,
    }


@contextlib.contextmanager
def started_cluster(auth: bool, workers: int = 0, cpus: int = 1) -> Iterator[Cluster]:
    """A head (and `workers` worker nodes) started with `ray start --node-ip-address 127.0.0.1`
    in a temp dir of their own, stopped by their own pids afterwards.

    With `auth`, the head runs as Ray 2.60 starts any cluster where a token is there: a token
    in the head's ~/.ray/auth_token (`ray get-auth-token --generate`), RAY_AUTH_MODE unset, so
    token authentication is on; a worker node needs RAY_AUTH_MODE=token and the token (Ray turns
    the mode on by itself for a head only). Without it, RAY_AUTH_MODE=disabled.

    A single node listens on the loopback address only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps
    Ray from swapping 127.0.0.1 for the machine's address, and allows no worker nodes); with
    worker nodes, Ray advertises the machine's own address (every node is on this machine).
    """
    tmpdir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # socket paths must stay short
    home = tmpdir / "home"
    home.mkdir()
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # one node: Ray keeps 127.0.0.1 (and binds to it) only as a single-machine Ray, and the
    # drivers must see it so too, or they swap 127.0.0.1 for the machine's address
    loopback = {} if workers else {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env = driver_env(tmpdir, home, **loopback)
    head_env = {**env, "RAY_AUTH_MODE": "disabled"} if not auth else dict(env)
    # the cluster's own choice of worker niceness (a run that joins leaves it alone): 0 here,
    # so that the trials are not starved by whatever else runs on this shared machine
    head_env["RAY_worker_niceness"] = "0"
    common = ["--num-cpus", str(cpus), "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    token = None
    try:
        if auth:
            token = subprocess.run(
                [_ray_cli(), "get-auth-token", "--generate"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
            ).stdout.strip()
        subprocess.run(
            [
                _ray_cli(),
                "start",
                "--head",
                "--port",
                str(port),
                "--include-dashboard=false",
                *common,
            ],
            env=head_env,
            check=True,
            capture_output=True,
            timeout=180,
        )
        worker_env = {**head_env, "RAY_AUTH_MODE": "token"} if auth else head_env
        for _ in range(workers):
            subprocess.run(
                [_ray_cli(), "start", "--address", address, *common],
                env=worker_env,
                check=True,
                capture_output=True,
                timeout=180,
            )
        driver_home = tmpdir / "driver-home"  # a driver's own HOME: no token unless a test puts one
        driver_home.mkdir()
        logs = (tmpdir / "ray" / "session_latest").resolve() / "logs"  # before any driver's
        yield Cluster(address, driver_env(tmpdir, driver_home, **loopback), token, logs)
    finally:
        _stop(tmpdir)
        shutil.rmtree(tmpdir, ignore_errors=True)

"""A local Ray per test module (starting Ray costs seconds; module scope lets the cluster tests
stop every Ray process without pulling one from under another module)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real multi-node Ray cluster on this machine: a head and two worker nodes (own port),
    one CPU each, stopped afterwards. Token auth is off: every node and the driver run here."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import ray

    if ray.is_initialized():
        ray.shutdown()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = str(Path(sys.executable).parent / "ray")
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run(
        [ray_cli, "start", "--head", "--port", str(port), "--include-dashboard=false", *common],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        for _ in range(2):  # two worker nodes
            subprocess.run(
                [ray_cli, "start", "--address", address, *common],
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        os.environ["RAY_AUTH_MODE"] = "disabled"
        yield address
    finally:
        os.environ.pop("RAY_AUTH_MODE", None)
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)

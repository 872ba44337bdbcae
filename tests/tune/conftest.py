"""A local Ray per test module (starting Ray costs seconds), and real clusters started with
`ray start` for tests/tune/test_cluster.py, each stopped by its own pids (never `ray stop`,
which would stop every Ray on the machine)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace

import pytest
from clusters import Cluster, started_cluster


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Cluster]:
    """A real multi-node Ray cluster on this machine: a head and two worker nodes, one CPU
    each, with Ray's default token authentication; drivers get the token in RAY_AUTH_TOKEN."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    with started_cluster(auth=True, workers=2) as cluster:
        assert cluster.token
        yield replace(cluster, env={**cluster.env, "RAY_AUTH_TOKEN": cluster.token})


@pytest.fixture(scope="module")
def token_cluster() -> Iterator[Cluster]:
    """One node (2 CPUs) on the loopback address, token authentication as Ray 2.60's default."""
    with started_cluster(auth=True, cpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def open_cluster() -> Iterator[Cluster]:
    """One node (2 CPUs) on the loopback address, started with RAY_AUTH_MODE=disabled."""
    with started_cluster(auth=False, cpus=2) as cluster:
        yield cluster

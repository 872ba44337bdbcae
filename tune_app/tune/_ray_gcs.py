"""Ray's private API for joining a cluster (tune/cluster.py), checked at import; the rest of
Ray's private API tune_app uses is in `_ray_internals`.

This module imports Ray's core only, not Tune (~1 s more) nor torch, so that a run that joins a
cluster asks it (address, token, versions) before those and its data are loaded:

- Ray's token loader (`AuthenticationTokenLoader`: is a token there?) and its switch to token
  mode (`authentication_token_setup._enable_token_auth`, what `ray.init` does itself only for
  `address="auto"`), and for a moment out of it (`without_token`, through `Config.initialize`,
  which that switch calls too);
- `services` to resolve `auto` and to find this machine's raylets;
- a `GcsClient` to ask the cluster, before `ray.init` does, whether it takes our token (or
  none) and which Ray it runs (`usage_lib.get_cluster_metadata`, `utils.check_version_info`,
  as `ray health-check` does).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ray

__all__ = [
    "TESTED_RAY",
    "ClusterProbe",
    "enable_token_auth",
    "probe_cluster",
    "resolve_auto",
    "token_available",
    "without_token",
]

TESTED_RAY = ">=2.60,<2.61"  # as pyproject.toml pins ray[tune]


def _missing(names: list[str]) -> ImportError:
    return ImportError(
        f"tune_app uses Ray's private {', '.join(names)}, which ray {ray.__version__} lacks; "
        f"tune_app is tested with ray[tune]{TESTED_RAY}: install that version"
    )


_JOIN_NAMES = (  # what tune/cluster.py reaches through the functions below
    ("ray._raylet", "AuthenticationTokenLoader"),
    ("ray._raylet", "GcsClient"),
    ("ray._raylet", "Config"),
    ("ray._private.authentication.authentication_token_setup", "_enable_token_auth"),
    ("ray._private.services", "canonicalize_bootstrap_address_or_die"),
    ("ray._private.services", "find_node_ids"),
    ("ray._private.utils", "check_version_info"),
    ("ray._common.usage.usage_lib", "get_cluster_metadata"),
)


def _check() -> None:
    missing = [
        f"{module}.{name}"
        for module, name in _JOIN_NAMES
        if not callable(getattr(importlib.import_module(module), name, None))
    ]
    if missing:
        raise _missing(missing)


_check()


def token_available() -> bool:
    """Whether Ray finds an authentication token here, the way it looks: `RAY_AUTH_TOKEN`, else
    the file `RAY_AUTH_TOKEN_PATH` names, else `~/.ray/auth_token`.

    Raises:
        ray.exceptions.AuthenticationError: `RAY_AUTH_TOKEN_PATH` names a file that is missing
            or empty.
    """
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]

    return bool(AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True))


def enable_token_auth() -> None:
    """Token mode for this process and those it starts (`RAY_AUTH_MODE=token`, and Ray's cached
    config refreshed so that this process uses it too), as `ray.init` does for `address="auto"`
    when a token is there."""
    from ray._private.authentication import authentication_token_setup

    authentication_token_setup._enable_token_auth()


@contextlib.contextmanager
def without_token() -> Iterator[None]:
    """For the block, this process's Ray clients send no token (`RAY_AUTH_MODE=disabled`, Ray's
    cached config refreshed, as `enable_token_auth` does); then the mode it had, refreshed too.
    A client is made in the mode of its moment, so one made in the block asks a cluster as a
    driver without a token would."""
    from ray._raylet import Config  # type: ignore[attr-defined]

    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    Config.initialize("")
    try:
        yield
    finally:
        if before is None:
            del os.environ["RAY_AUTH_MODE"]
        else:
            os.environ["RAY_AUTH_MODE"] = before
        Config.initialize("")


def resolve_auto(address: str) -> str:
    """The GCS address `ray.init(address)` would join: `auto` (or `RAY_ADDRESS`) resolved as Ray
    does (the latest `ray start` cluster of this machine, else any running GCS here).

    Raises:
        ConnectionError: no cluster runs on this machine.
    """
    from ray._private import services

    return str(services.canonicalize_bootstrap_address_or_die(address))


@dataclass(frozen=True)
class ClusterProbe:
    """What the cluster's GCS said to an authenticated client: `version_problem` is Ray's
    "Version mismatch" (None if the versions match), `cluster_versions` the (Ray, Python) the
    cluster runs, `nodes_here` whether one of its alive nodes runs on this machine."""

    cluster_versions: tuple[str, str]
    version_problem: str | None
    nodes_here: bool


def probe_cluster(gcs_address: str, timeout_s: float) -> ClusterProbe | None:
    """Ask the GCS at `gcs_address` what `ray.init` would, once and with a deadline: Ray's
    `GcsClient` connects (sending the token in token mode), reads the cluster's versions and
    its alive nodes. `ray.init` does the same in a loop of ~20 one-second tries, each refusal
    logged, before it gives up with "Failed to connect".

    Args:
        gcs_address: HOST:PORT of the head's GCS.
        timeout_s: seconds to wait for an answer (the client is left to Ray's own timeout in a
            daemon thread after that).

    Returns:
        The probe, or None when nothing answered within `timeout_s`.

    Raises:
        ray.exceptions.AuthenticationError: the cluster refused the token (or its absence).
        ray.exceptions.RpcError: the GCS could not be reached.
    """
    from ray._common.usage.usage_lib import get_cluster_metadata
    from ray._private import services
    from ray._private.utils import check_version_info
    from ray._raylet import GcsClient  # type: ignore[attr-defined]
    from ray.core.generated.gcs_pb2 import GcsNodeInfo  # type: ignore[attr-defined]

    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            client = GcsClient(address=gcs_address)
            metadata = get_cluster_metadata(client)
            alive = client.get_all_node_info(
                timeout=timeout_s, state_filter=GcsNodeInfo.GcsNodeState.ALIVE
            )
            answer["probe"] = (metadata, {info.node_id.hex() for info in alive.values()})
        except BaseException as exc:  # handed to the caller's thread
            answer["error"] = exc

    asking = threading.Thread(target=ask, name="probe-gcs", daemon=True)
    asking.start()
    asking.join(timeout_s)
    if "error" in answer:
        raise answer["error"]
    if "probe" not in answer:
        return None
    metadata, alive = answer["probe"]
    try:
        check_version_info(metadata, "this machine")
        problem = None
    except RuntimeError as exc:
        problem = str(exc)
    return ClusterProbe(
        cluster_versions=(str(metadata["ray_version"]), str(metadata["python_version"])),
        version_problem=problem,
        nodes_here=bool(alive & set(services.find_node_ids())),
    )

"""Where a run's Ray comes from: a Ray of its own on this machine, or a cluster joined by address.

**A Ray of its own** (no `--address`, no `RAY_ADDRESS`): `ray.init(address="local")`. A bare
`ray.init()` would join the newest cluster `ray start` left on this machine instead, so a run
could land on someone else's cluster without a word. Ray starts its trial workers at niceness
15 (`RAY_worker_niceness`, ray-project/ray#24928: on a shared cluster node, workers must never
starve Ray's own raylet and GCS); on a machine where anything else runs at the default
priority, the kernel then gives a worker a few percent of a core, and a trial crawls 100 times
slower than the same training in-process. A run's own Ray starts its workers at the driver's
priority, as `tune-app train` runs, unless the user sets `RAY_worker_niceness` themselves.

**A cluster** (`--address auto`, `HOST:PORT`, `ray://HOST:PORT`, or `RAY_ADDRESS`): its own
setting of worker niceness is left alone. Ray 2.60 starts a cluster with token authentication
whenever a token is there, but `ray.init` turns token mode on by itself only for `auto`; for an
explicit address a driver must set `RAY_AUTH_MODE=token`. So, unless the user has chosen a mode,
the head's GCS is asked first without a token: if it refuses and Ray finds a token here
(`RAY_AUTH_TOKEN`, the file `RAY_AUTH_TOKEN_PATH` names, or `~/.ray/auth_token`), token mode is
turned on; if it accepts, the cluster has authentication disabled and `RAY_AUTH_MODE=disabled`
is set (a driver in token mode there would refuse its own workers' calls). That one question,
asked before `ray.init` (which retries a refused token for ~20 s, logging every try from C++),
also finds a refused token, another Ray or Python version, no node of the cluster on this
machine, or no GCS at the port: each fails at once as one line (`InputError`, exit 2). Ray's own
messages while joining go to a log file, which the line names; after a successful join,
`ray.init`'s are shown as before.

Ray's private calls are in `_ray_gcs` (token loader, GCS probe, address resolution), which
imports Ray's core only: `check_cluster` runs before Tune, torch and the data are loaded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import AuthenticationError, RpcError

from tune_app.errors import InputError, RunFailed
from tune_app.tune import _ray_gcs
from tune_app.tune.ray_env import (
    AUTH_MODE_VARIABLE,
    NICENESS_VARIABLE,
    TOKEN_PATH_VARIABLE,
    TOKEN_VARIABLE,
    auth_mode,
    check_join,
    check_reachable,
    target,
)

__all__ = [
    "NICENESS_VARIABLE",
    "check_cluster",
    "check_reachable",
    "connect",
    "join",
    "leave_quietly",
    "local_system_config",
    "start_local",
    "target",
    "token_source",
]

START_ATTEMPTS = 2  # a local Ray's start, tried again once (see `start_local`)
KEEP_LOGS = 10  # join logs kept in /tmp/tune_app (Ray's messages while joining failed)
PROBE_TIMEOUT_S = 10.0  # a GCS answers in milliseconds; something else on the port never does


def local_system_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """Ray's system config for a Ray of the run's own: trial workers at the driver's niceness
    (Ray's default raises theirs by 15), unless `RAY_worker_niceness` is set, which Ray then
    applies itself.

    Args:
        environ: the environment the driver runs in (`os.environ`).

    Returns:
        `{"worker_niceness": 0}` (Ray adds this to the niceness its workers inherit, the
        driver's), or `{}` when the user chose one.
    """
    return {} if NICENESS_VARIABLE in environ else {"worker_niceness": 0}


def start_local(**init_kwargs: Any) -> None:
    """Start a Ray of this run's own on this machine (never an existing `ray start` cluster),
    its trial workers at the driver's niceness (`local_system_config`). Under heavy load Ray's
    raylet can abort at start-up (a C++ check: its agents' port files within 15 s): one more
    try, then one line.

    Args:
        **init_kwargs: passed to `ray.init` (num_cpus, include_dashboard, logging_config, ...).

    Raises:
        RunFailed: Ray did not start, twice (one line with Ray's cause, exit 1).
    """
    for attempt in range(START_ATTEMPTS):
        try:
            ray.init(address="local", _system_config=local_system_config(os.environ), **init_kwargs)
            return
        except (KeyboardInterrupt, InputError):
            raise
        except Exception as exc:
            cause = _deepest(exc)
            with contextlib.suppress(Exception):
                ray.shutdown()  # what did start of it
            if attempt + 1 < START_ATTEMPTS:
                print(f"tune-app: Ray did not start ({cause}); trying once more", flush=True)
                time.sleep(2.0)
    raise RunFailed(
        f"Ray did not start on this machine, twice: {cause}. On a machine too busy for Ray's "
        'own processes its raylet gives up waiting for its agents (its log then says "Timed '
        'out waiting for file": /tmp/ray/session_latest/logs/raylet.out); run the command '
        "again when the load is lower"
    )


def _speaks_grpc(gcs_address: str, timeout_s: float = 3.0) -> bool:
    """Whether the server at HOST:PORT answers HTTP/2's connection preface with a SETTINGS frame,
    as every gRPC server (a GCS among them) does at once (RFC 9113, section 3.4). Ray's client
    would wait ~40 s on anything else there (the dashboard's HTTP port, say)."""
    host, _, port = gcs_address.rpartition(":")
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as sock:
            sock.sendall(preface)
            frame = b""
            while len(frame) < 9:
                chunk = sock.recv(9 - len(frame))
                if not chunk:
                    return False
                frame += chunk
    except OSError:
        return False
    return frame[3] == 4  # the frame's type: SETTINGS


def _host(address: str) -> str | None:
    """The head's host as the user wrote it in `address` (None for `auto`)."""
    if address == "auto":
        return None
    return address.removeprefix("ray://").rpartition(":")[0] or None


def _shown(address: str, gcs_address: str) -> str:
    """The cluster's address as the user gave it. Ray resolves an address before it connects
    (on Linux it swaps 127.0.0.1 for this machine's own address, say 192.0.2.2), so a message
    that named Ray's would name an address the user never typed; for `auto`, Ray's is the
    only one there is."""
    return gcs_address if address == "auto" else address.removeprefix("ray://")


def _users(address: str, gcs_address: str | None, text: str) -> str:
    """Ray's `text` with the address Ray resolved written as the user gave it."""
    if gcs_address is None:
        return text
    return text.replace(gcs_address, _shown(address, gcs_address))


def _get_token(address: str) -> str:
    """Where the cluster's token comes from, and where to put it here."""
    host = _host(address)
    head = f"the head ({host})" if host else "the head node"
    return (
        f"run `ray get-auth-token` on {head} and set RAY_AUTH_TOKEN to what it prints here "
        "(or write it to ~/.ray/auth_token, or to a file named by RAY_AUTH_TOKEN_PATH)"
    )


def _gcs_port(address: str, gcs_address: str) -> str:
    """How to give the head's GCS port, for this head."""
    host = _host(address) or gcs_address.rpartition(":")[0]
    return (
        f"give the head's GCS port (`ray start --head --port`; without --port: --address "
        f"{host}:6379)"
    )


def token_source(environ: Mapping[str, str]) -> str:
    """Where Ray takes the token from, in Ray's order, in words (for messages): the variable,
    the file `RAY_AUTH_TOKEN_PATH` names, or the default file."""
    if environ.get(TOKEN_VARIABLE, "").strip():
        return TOKEN_VARIABLE
    if environ.get(TOKEN_PATH_VARIABLE):
        return f"{TOKEN_PATH_VARIABLE}={environ[TOKEN_PATH_VARIABLE]}"
    return str(Path.home() / ".ray" / "auth_token")


def _token_here(address: str) -> bool:
    """Whether Ray finds a token here; a RAY_AUTH_TOKEN_PATH naming no file is bad input."""
    try:
        return _ray_gcs.token_available()
    except AuthenticationError as exc:
        first = str(exc.message).split(". ")[0]
        raise InputError(f"--address {address}: {first}; {_get_token(address)}") from None


def _use_token(address: str) -> str:
    """Token mode when Ray finds a token here; returns the mode now in use, "token" or "none"."""
    if not _token_here(address):
        return "none"
    _ray_gcs.enable_token_auth()
    return "token"


class _Refused(InputError):
    """The cluster refused this driver's token (or its absence)."""


def _refused(address: str, mode: str) -> _Refused:
    """The one line for a cluster that refused this driver's token (or its absence)."""
    try:
        have = _ray_gcs.token_available()
    except AuthenticationError:
        have = False
    if mode == "token" and have:
        why = (
            f"the cluster refused this machine's Ray token (from {token_source(os.environ)}): "
            f"it is not the cluster's; {_get_token(address)}"
        )
    elif mode in ("token", "none"):
        why = (
            "the cluster requires Ray's authentication token and none was found here; "
            f"{_get_token(address)}"
        )
    elif have:
        why = (
            f"the cluster requires Ray's authentication token, but {AUTH_MODE_VARIABLE}={mode} "
            f"here keeps it from being sent; unset {AUTH_MODE_VARIABLE} (or set it to token)"
        )
    else:
        why = (
            f"the cluster requires Ray's authentication token, but {AUTH_MODE_VARIABLE}={mode} "
            f"here; unset {AUTH_MODE_VARIABLE} (or set it to token) and {_get_token(address)}"
        )
    return _Refused(f"--address {address}: {why}")


def _deepest(exc: BaseException) -> str:
    """The first line of the innermost cause Ray chained under `exc`."""
    while exc.__cause__ is not None or (
        exc.__context__ is not None and not exc.__suppress_context__
    ):
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _ask(address: str, gcs_address: str, mode: str) -> _ray_gcs.ClusterProbe:
    """Ask the head's GCS once with this process's authentication mode; the one line for a
    refusal or silence."""
    try:
        probe = _ray_gcs.probe_cluster(gcs_address, PROBE_TIMEOUT_S)
    except AuthenticationError:
        raise _refused(address, mode) from None
    except RpcError as exc:
        shown = _shown(address, gcs_address)
        if getattr(exc, "rpc_code", None) == GRPC_UNIMPLEMENTED:
            raise InputError(
                f"--address {address}: {shown} answers Ray's RPC but is not the head's GCS (a "
                f"raylet's or a worker's port?); {_gcs_port(address, gcs_address)}"
            ) from None
        raise InputError(
            f"--address {address}: the Ray cluster at {shown} did not answer "
            f"({_users(address, gcs_address, _deepest(exc))}); check that its head runs "
            f"(`ray status --address {shown}` there)"
        ) from None
    if probe is None:
        raise InputError(
            f"--address {address}: nothing at {_shown(address, gcs_address)} answered as a Ray "
            f"cluster within {PROBE_TIMEOUT_S:g} s (something listens there, but not a head's "
            f"GCS); {_gcs_port(address, gcs_address)}"
        )
    return probe


def _probe(address: str, gcs_address: str) -> None:
    """Ask the head's GCS (see the module doc), first without a token, whatever the mode here:
    a cluster that takes a driver without one has authentication disabled.

    - It does: a driver in token mode there would refuse its own workers' calls (its trials
      die before they start), so `RAY_AUTH_MODE=token` here is refused, and an unset mode is
      set to disabled (or `ray.init("auto")` would turn token mode on where a token is).
    - It does not: `RAY_AUTH_MODE=disabled` here is refused; otherwise the question is asked
      again in token mode, with Ray's token if there is one here.

    Raise the one line when the cluster says no, or when the modes here and there differ."""
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")  # no plain HTTP/2 then
    if not tls and not _speaks_grpc(gcs_address):
        port = "that port" if address != "auto" else f"{gcs_address}, which it found,"
        raise InputError(
            f"--address {address}: {port} does not answer as a Ray cluster (a head's GCS "
            f"speaks gRPC; this port does not); {_gcs_port(address, gcs_address)}"
        )
    chosen = auth_mode(os.environ)
    try:
        with _ray_gcs.without_token():
            probe = _ask(address, gcs_address, "disabled" if chosen else "none")
        if chosen == "token":
            raise InputError(
                f"--address {address}: {AUTH_MODE_VARIABLE}=token here, but the cluster has "
                "authentication disabled (its head started with RAY_AUTH_MODE=disabled), and "
                "a driver in token mode there would refuse its own trials' calls; unset "
                f"{AUTH_MODE_VARIABLE} here (or set it to disabled), or restart the cluster "
                "with token authentication"
            )
        os.environ[AUTH_MODE_VARIABLE] = "disabled"  # what the cluster runs with
    except _Refused as refused:  # the cluster wants a token
        if chosen == "disabled":
            raise refused from None  # says that RAY_AUTH_MODE=disabled keeps it from being sent
        probe = _ask(address, gcs_address, "token" if chosen else _use_token(address))
    if probe.version_problem is not None:
        ray_version, python_version = probe.cluster_versions
        raise InputError(
            f"--address {address}: the cluster runs Ray {ray_version} on Python "
            f"{python_version}, this machine Ray {ray.__version__} on Python "
            f"{sys.version.split()[0]}; a driver needs the cluster's versions of both: "
            f"install ray[tune]=={ray_version} under Python {python_version} here"
        )
    if not probe.nodes_here:
        raise InputError(
            f"--address {address}: no node of that cluster runs on this machine, and a driver "
            "joined by HOST:PORT must run on one; run tune-app on the head (--address auto), "
            f"join this machine first (`ray start --address {_shown(address, gcs_address)}`), "
            f"or use Ray Client (--address ray://{_host(address) or 'HEAD'}:10001)"
        )


@contextlib.contextmanager
def _stderr_to(log: Path) -> Iterator[None]:
    """Send this process's file descriptor 2 (Python's stderr and Ray's C++ logging alike) to
    `log` for the block, then back."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with log.open("ab") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _join_log() -> Path:
    """A new file for Ray's messages while joining, in /tmp/tune_app (or, where another user
    made that folder, /tmp/tune_app-UID); only the newest `KEEP_LOGS` there are kept."""
    for folder in (
        Path(tempfile.gettempdir()) / "tune_app",
        Path(tempfile.gettempdir()) / f"tune_app-{os.getuid()}",
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix="ray-join-", suffix=".log", dir=folder)
        except OSError:
            continue
        os.close(handle)
        _keep_newest(folder, KEEP_LOGS)
        return Path(name)
    handle, name = tempfile.mkstemp(prefix="tune_app-ray-join-", suffix=".log")
    os.close(handle)
    return Path(name)


def _keep_newest(folder: Path, keep: int) -> None:
    """Remove all but the newest `keep` join logs of `folder` (those this user may remove)."""

    def age(log: Path) -> float:
        try:
            return -log.stat().st_mtime
        except OSError:  # removed meanwhile
            return 0.0

    for old in sorted(folder.glob("ray-join-*.log"), key=age)[keep:]:
        with contextlib.suppress(OSError):
            old.unlink()


@contextlib.contextmanager
def _ray_messages_logged() -> Iterator[Path]:
    """Ray's messages (Python's and C++'s, file descriptor 2) go to a new join log for the
    block. A line that fails the join (`InputError`) then names the log if Ray wrote anything
    to it, and an empty log is removed; after a success the caller decides what to keep."""
    log = _join_log()
    try:
        with _stderr_to(log):
            yield log
    except InputError as exc:
        try:
            said = log.stat().st_size > 0
        except OSError:
            said = False
        if not said:
            log.unlink(missing_ok=True)
            raise
        raise type(exc)(f"{exc} (Ray's messages: {log})") from None


GRPC_UNIMPLEMENTED = 12  # gRPC's status code for a service the server does not offer

# the addresses `check_cluster` found joinable in this process -> the GCS address Ray resolved
# (None for Ray Client)
_CHECKED: dict[str, str | None] = {}


def check_cluster(address: str) -> None:
    """Everything `join` checks before `ray.init` (see the module doc), once per address: the
    address's form and that something listens there, the token (`ray_env.check_join`), then
    the cluster's own answer to one question (authentication, versions, a node here). Choosing
    the authentication mode on the way, it sets `RAY_AUTH_MODE` for the `ray.init` to come.
    Imports Ray's core only (`_ray_gcs`), so a run asks this before Tune, torch and its data load.

    Args:
        address: `auto`, `HOST:PORT` (the head's GCS) or `ray://HOST:PORT` (Ray Client).

    Raises:
        InputError: the cluster cannot be joined from here; one line with the cause Ray
            reported and what to do, Ray's own messages in a log file it names.
    """
    if address in _CHECKED:
        return
    check_reachable(address)
    check_join(address, os.environ)  # token mode without a token: Ray's client would abort
    gcs_address = None
    with _ray_messages_logged() as log:
        if address.startswith("ray://"):  # Ray Client's server: no GCS to ask first
            if os.environ.get(AUTH_MODE_VARIABLE) is None:
                _use_token(address)
        else:
            try:
                gcs_address = _ray_gcs.resolve_auto(address)
            except ConnectionError:
                raise InputError(
                    f"--address {address}: no Ray cluster runs on this machine; start one "
                    "with `ray start --head`, or give the head's HOST:PORT"
                ) from None
            _probe(address, gcs_address)
    log.unlink(missing_ok=True)  # the cluster answered: nothing to look at
    _CHECKED[address] = gcs_address


def join(address: str, **init_kwargs: Any) -> None:
    """Join the cluster at `address` (see the module doc for authentication and the checks,
    `check_cluster`, made here unless made before).

    Args:
        address: `auto`, `HOST:PORT` (the head's GCS) or `ray://HOST:PORT` (Ray Client).
        **init_kwargs: passed to `ray.init`.

    Raises:
        InputError: the cluster cannot be joined from here; one line with the cause Ray
            reported and what to do, Ray's own messages in a log file it names.
    """
    check_cluster(address)
    with _ray_messages_logged() as log:
        try:
            ray.init(address=address, **init_kwargs)
        except AuthenticationError:
            raise _refused(address, os.environ.get(AUTH_MODE_VARIABLE, "none").lower()) from None
        except (ConnectionError, RuntimeError, ValueError) as exc:
            # ValueError: ray:// without Ray Client's package (Ray says what to install)
            cause = _users(address, _CHECKED[address], _deepest(exc))
            raise InputError(f"--address {address}: joining the cluster failed: {cause}") from None
    # joined: ray.init's own messages, as they would have been shown
    sys.stderr.write(log.read_bytes().decode(errors="replace"))
    log.unlink(missing_ok=True)


def leave_quietly() -> None:
    """At the end of the `tune-app` process: ignore SIGTERM, then shut Ray down.

    When Ray goes, its process reaper may SIGTERM the process group the driver is in; Ray's own
    SIGTERM handler then raises SystemExit inside whatever the exiting interpreter runs, which
    Python prints as "Exception ignored ... SystemExit: 1" after tune-app's last line (seen
    after a run that stopped on a full disk). The process is ending with its own exit code, so
    the signal is ignored from here on.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if ray.is_initialized():
        ray.shutdown()


def connect(address: str | None, **init_kwargs: Any) -> None:
    """Start a Ray of the run's own, or join the cluster `target(address)` names.

    Args:
        address: `--address` (None: `RAY_ADDRESS`, else a Ray of the run's own).
        **init_kwargs: passed to `ray.init`.

    Raises:
        InputError: the cluster cannot be joined (see `join`).
    """
    where = target(address)
    if where:
        join(where, **init_kwargs)
    else:
        start_local(**init_kwargs)

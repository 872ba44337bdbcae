"""What a Ray command checks before Ray (or anything heavy) is imported: the environment Ray
reads at import, the address a run joins and the token it needs there.

This module imports nothing of Ray's: Ray's C++ core reads some settings when `ray` is
imported, and a bad one ends the process there without a word (a segmentation fault, exit 139).
`RAY_worker_niceness` is one: Ray parses it as a C integer (spaces, a sign, digits, nothing
after), so `abc`, `1.5`, `3 ` or an empty value crash `import ray`.

A driver in token mode (`RAY_AUTH_MODE=token`) that joins a cluster without a token is another:
Ray's C++ client checks for the token when it first calls the cluster and aborts the process
(exit 1, its message in Ray's log). `token_here` looks where Ray looks, in Ray's order
(observed on Ray 2.60, whose loader is C++): `RAY_AUTH_TOKEN` when set and not empty (spaces
only: no token, and no other place is read); else the file `RAY_AUTH_TOKEN_PATH` names (a
missing or empty file is Ray's error); else `~/.ray/auth_token`. A Ray of the run's own needs
none: Ray writes `~/.ray/auth_token` itself when it starts one in token mode.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path

from tune_app.errors import InputError

__all__ = [
    "AUTH_MODE_VARIABLE",
    "NICENESS_VARIABLE",
    "TOKEN_PATH_VARIABLE",
    "TOKEN_VARIABLE",
    "auth_mode",
    "check_environment",
    "check_join",
    "check_niceness",
    "check_reachable",
    "from_environment",
    "target",
    "token_here",
]

NICENESS_VARIABLE = "RAY_worker_niceness"
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
AUTH_MODES = ("token", "disabled")  # what Ray 2.60 knows (any other value: disabled, silently)
# what Ray's C++ config reader takes for an integer (strtol-like, the whole value): leading
# white space, an optional sign, ASCII digits
_RAY_INTEGER = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]+")


def check_niceness(environ: Mapping[str, str]) -> None:
    """Refuse a `RAY_worker_niceness` that Ray cannot read (it would crash `import ray`).

    Args:
        environ: the environment Ray will read (`os.environ`).

    Raises:
        InputError: the variable is set to something other than a whole number, as Ray
            parses one (`15`, `-1`, `+3`; not `abc`, `1.5`, `3 ` or empty).
    """
    value = environ.get(NICENESS_VARIABLE)
    if value is None or _RAY_INTEGER.fullmatch(value):
        return
    raise InputError(
        f"{NICENESS_VARIABLE}={value!r}: not a whole number, and Ray cannot start with it "
        f"(importing Ray crashes); set it to the niceness Ray adds to its trial workers "
        f"(0: the driver's priority, 15: Ray's default; docs/shared-machine.md) or unset it"
    )


def auth_mode(environ: Mapping[str, str]) -> str | None:
    """The authentication mode the user chose: "token", "disabled", or None (not set).

    Raises:
        InputError: `RAY_AUTH_MODE` set to a value Ray does not know (Ray would take it for
            disabled without a word).
    """
    value = environ.get(AUTH_MODE_VARIABLE)
    if value is None:
        return None
    if value.strip().lower() not in AUTH_MODES:
        raise InputError(
            f"{AUTH_MODE_VARIABLE}={value!r}: Ray knows token and disabled (and takes anything "
            f"else for disabled); set one of them, or unset it to let tune-app choose"
        )
    return value.strip().lower()


def check_environment(environ: Mapping[str, str]) -> None:
    """Every check of the environment a Ray command makes before Ray is imported.

    Args:
        environ: the environment Ray will read (`os.environ`).

    Raises:
        InputError: a setting Ray would fail on; one line naming it and the fix.
    """
    check_niceness(environ)
    auth_mode(environ)


def target(address: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The cluster a run joins: `--address`, else `RAY_ADDRESS` (which `ray job submit` sets for
    its entrypoint, and which Ray reads the same way), else None: a Ray of the run's own."""
    return address or (os.environ if environ is None else environ).get("RAY_ADDRESS") or None


def check_reachable(address: str) -> None:
    """Fail fast (InputError) on an address of the wrong form or one nobody listens on, instead
    of Ray's long retry loop. `auto` is checked when it is resolved (`cluster.check_cluster`)."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://")
    if "://" in hostport:  # http://...: a dashboard's or job server's URL, not a cluster's
        scheme = hostport.split("://", 1)[0]
        raise InputError(
            f"--address {address!r}: Ray joins no {scheme}:// address (that is a dashboard's or "
            "a job server's); give the head's GCS HOST:PORT (`ray start --head --port`, 6379 by "
            "default) or ray://HOST:PORT for Ray Client"
        )
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(
            f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT "
            "(a port from 1 to 65535)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        start = (
            f"`ray start --head --ray-client-server-port {port}` for Ray Client, which also "
            "needs ray[client] installed here"
            if address.startswith("ray://")
            else f"`ray start --head --port {port}`"
        )
        raise InputError(
            f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
            f"start one on {host} ({start}) or leave --address out to run locally"
        ) from None


def from_environment(error: InputError, address: str) -> InputError:
    """`error` about a cluster address that came from `RAY_ADDRESS`, not from --address: the
    line names the variable, and says to unset it to run locally.

    Args:
        error: the one line `check_reachable` or `cluster.check_cluster` raised.
        address: the value of `RAY_ADDRESS`.

    Returns:
        The same error, worded for the variable.
    """
    text = str(error).replace(
        f"--address {address!r}", f"RAY_ADDRESS={address!r} (no --address given)", 1
    )
    text = text.replace(f"--address {address}", f"RAY_ADDRESS={address} (no --address given)", 1)
    text = text.replace("leave --address out to run locally", "`unset RAY_ADDRESS` to run locally")
    if "unset RAY_ADDRESS" not in text:
        text += "; or `unset RAY_ADDRESS` to run locally"
    return InputError(text)


def _default_token_file(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".ray" / "auth_token"


def token_here(environ: Mapping[str, str]) -> bool:
    """Whether Ray finds an authentication token here, looking where and as Ray does (see the
    module doc).

    Args:
        environ: the environment Ray reads (`os.environ`).

    Returns:
        True when Ray would send a token.

    Raises:
        InputError: `RAY_AUTH_TOKEN_PATH` names a file that cannot be read or holds no token
            (Ray's own error then).
    """
    given = environ.get(TOKEN_VARIABLE, "")
    if given:
        return bool(given.strip())
    named = environ.get(TOKEN_PATH_VARIABLE, "")
    if named:
        try:
            held = Path(named).read_text(errors="replace")
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise InputError(
                f"{TOKEN_PATH_VARIABLE}={named}: Ray cannot read the token there ({why}); "
                f"write the cluster's token (`ray get-auth-token` on the head prints it) to "
                f"that file, or unset {TOKEN_PATH_VARIABLE}"
            ) from None
        if not held.strip():
            raise InputError(
                f"{TOKEN_PATH_VARIABLE}={named}: the file is empty; write the cluster's token "
                f"(`ray get-auth-token` on the head prints it) to it, or unset "
                f"{TOKEN_PATH_VARIABLE}"
            )
        return True
    try:
        return bool(_default_token_file(environ).read_text(errors="replace").strip())
    except OSError:
        return False


def check_join(address: str, environ: Mapping[str, str]) -> None:
    """What joining the cluster at `address` needs here, checked without Ray: in token mode,
    a token; unless authentication is disabled here, a `RAY_AUTH_TOKEN_PATH` that names one.

    Args:
        address: the cluster (`target`'s answer).
        environ: the environment Ray reads (`os.environ`).

    Raises:
        InputError: `RAY_AUTH_MODE=token` with no token where Ray looks (Ray's client would
            abort the process), or a `RAY_AUTH_TOKEN_PATH` naming no token.
    """
    mode = auth_mode(environ)
    if mode == "disabled":  # no token is read, none is sent
        return
    try:
        have = token_here(environ)
    except InputError as exc:
        raise InputError(f"--address {address}: {exc}") from None
    if mode == "token" and not have:
        raise InputError(
            f"--address {address}: {AUTH_MODE_VARIABLE}=token here, but no Ray token was "
            f"found: Ray reads it from {TOKEN_VARIABLE}, else from the file "
            f"{TOKEN_PATH_VARIABLE} names, else from {_default_token_file(environ)}; put the "
            "cluster's token (`ray get-auth-token` on the head prints it) in one of them, or "
            f"unset {AUTH_MODE_VARIABLE} to join a cluster without authentication"
        )

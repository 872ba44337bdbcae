"""A run's name, claimed before Ray starts: a lock file created with O_EXCL in the run folder.

Two launches with the same `--name` seconds apart would both pass the "a run already exists"
check (the run's manifest is written only once Ray is up), and `--resume` of a run that is still
going would run its trials twice. The lock file `tune_app_run.lock` holds the owner's pid, host
and start time; it is created atomically (`os.open(O_CREAT | O_EXCL)`), so exactly one launch
gets it, and removed when the run ends (or the process exits). A lock whose process is gone
(a dead pid on this host: a killed driver) is taken over, with a note. On remote storage
(s3://) there is no atomic create: the lock is checked, then written, which narrows the race
to the time between the two.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime

from tune_app.errors import InputError, RunClaimed
from tune_app.runs.storage import Location

__all__ = ["LOCK_FILE", "LockOwner", "hold_name", "release_name", "running_owner", "still_held"]

LOCK_FILE = "tune_app_run.lock"
_HELD: dict[str, tuple[Location, str]] = {}  # run uri -> (its folder, our claim's token)


@dataclass(frozen=True)
class LockOwner:
    """Who holds a run's name: a process on a host, since a time (Unix seconds)."""

    pid: int
    host: str
    started: float
    token: str = ""  # this claim's own id: a lock is only ever removed by its owner

    @classmethod
    def me(cls) -> LockOwner:
        return cls(os.getpid(), socket.gethostname(), time.time(), uuid.uuid4().hex)

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        try:
            raw = json.loads(text)
            return cls(
                int(raw["pid"]), str(raw["host"]), float(raw["started"]), raw.get("token", "")
            )
        except (ValueError, KeyError, TypeError):
            return None  # cut short while being written: treated as stale

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    def alive(self) -> bool | None:
        """Whether the process still runs; None when it is on another host (cannot tell)."""
        if self.host != socket.gethostname():
            return None
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process, alive
        return True

    def describe(self) -> str:
        since = datetime.fromtimestamp(self.started).strftime("%Y-%m-%d %H:%M:%S")
        return f"pid {self.pid} on {self.host}, since {since}"


def _create(location: Location, owner: LockOwner) -> bool:
    """Create the lock file holding `owner`; False when it exists already."""
    file = location.join(LOCK_FILE)
    if not location.is_local:
        if file.exists():
            return False
        file.write_bytes(owner.to_json())
        return True
    os.makedirs(location.path, exist_ok=True)
    # Written whole under a private name, then hard-linked into place: the link is atomic and
    # fails if the lock exists, so no other launch ever reads a lock still being written (an
    # empty one would pass for stale and be taken over: two launches would both hold the name).
    draft = f"{file.path}.{owner.token}.draft"
    with open(draft, "wb") as handle:
        handle.write(owner.to_json())
    try:
        os.link(draft, file.path)
    except FileExistsError:
        return False
    except OSError:  # a filesystem without hard links: create exclusively, then write
        try:
            fd = os.open(file.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(owner.to_json())
    finally:
        os.unlink(draft)
    return True


def _remove_stale(location: Location) -> bool:
    """Move a stale lock aside and delete it; False when another launch got there first."""
    file = location.join(LOCK_FILE)
    if not location.is_local:
        location.fs.delete_file(file.path)
        return True
    aside = f"{file.path}.stale-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(file.path, aside)  # atomic: of two launches taking it over, one wins
    except FileNotFoundError:
        return False
    os.unlink(aside)
    return True


def hold_name(location: Location, *, resume: bool) -> str | None:
    """Claim the run at `location` for this process until `release_name` (or its exit).

    Args:
        location: the run's folder (made if missing).
        resume: whether the command resumes the run (for the message).

    Returns:
        A note to show when a stale lock (its process gone) was taken over, else None.

    Raises:
        RunClaimed: another live process (or one on another host) holds the name.
    """
    me = LockOwner.me()
    note = None
    for _ in range(3):
        if _create(location, me):
            _HELD[location.uri] = (location, me.token)
            _at_exit()
            return note
        file = location.join(LOCK_FILE)
        try:
            owner = LockOwner.parse(file.read_text())
        except OSError:
            continue  # removed in between: try again
        alive = owner.alive() if owner else False
        if owner is not None and owner.pid == os.getpid() and owner.host == me.host:
            alive = False  # this process's own, from an earlier command that stopped early
        if alive is False:
            gone = owner.describe() if owner else "a process"
            if _remove_stale(location) and (owner is None or owner.pid != os.getpid()):
                note = (
                    f"run {location.name}: its lock was held by {gone}, which is no longer "
                    "running; taken over"
                )
            continue
        assert owner is not None
        if resume:
            raise RunClaimed(
                f"--resume: run {location.name} is still going ({owner.describe()}); resuming "
                "it now would run its trials twice: wait for it to end, or stop it (Ctrl-C in "
                "its terminal), then --resume",
                owner.describe(),
            )
        where = "" if alive else f"; if that process is gone, delete {file.uri} and run again"
        raise RunClaimed(
            f"--name {location.name}: a run of that name is starting or going at "
            f"{location.uri} ({owner.describe()}); choose another --name{where}",
            owner.describe(),
        )
    raise InputError(f"--name {location.name}: could not claim {location.uri}; run again")


def running_owner(location: Location) -> LockOwner | None:
    """Who holds the run's name now, if a process that may still run does.

    Args:
        location: the run's folder.

    Returns:
        The lock's owner when its process runs (or is on another host, where that cannot be
        told); None without a lock, with an unreadable one, or with one whose process is gone.
    """
    file = location.join(LOCK_FILE)
    try:
        owner = LockOwner.parse(file.read_text()) if file.exists() else None
    except OSError:
        return None
    return owner if owner is not None and owner.alive() is not False else None


def still_held(location: Location) -> bool:
    """Whether this process's claim on the run at `location` is still there: False when the
    lock file went (the run's folder deleted while Ray started), or another claim replaced it.
    A storage that does not answer counts as held (it is not a deleted run)."""
    held = _HELD.get(location.uri)
    if held is None:
        return False
    file = location.join(LOCK_FILE)
    try:
        if not file.exists():
            return False
        owner = LockOwner.parse(file.read_text())
    except OSError:
        return True
    return owner is not None and owner.token == held[1]


def release_name(location: Location) -> None:
    """Remove this process's lock on the run at `location` (nothing if it holds none), and the
    run folder if the lock was all it held (a launch that stopped before Ray wrote anything)."""
    held = _HELD.pop(location.uri, None)
    if held is None:
        return
    file = location.join(LOCK_FILE)
    with contextlib.suppress(OSError):  # the folder went away with the lock in it
        owner = LockOwner.parse(file.read_text()) if file.exists() else None
        if owner is not None and owner.token == held[1]:
            location.fs.delete_file(file.path)
        if location.is_local and not os.listdir(location.path):
            os.rmdir(location.path)


def _release_all() -> None:
    for location, _ in list(_HELD.values()):
        release_name(location)


def _at_exit() -> None:
    if not getattr(_at_exit, "registered", False):
        atexit.register(_release_all)
        _at_exit.registered = True  # type: ignore[attr-defined]

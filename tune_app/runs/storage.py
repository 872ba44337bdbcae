"""Run storage through pyarrow.fs: a local path or any URI it understands (s3://, gs://, ...)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from tune_app.errors import InputError

__all__ = ["Location", "locate"]

PROBE_TIMEOUT_S = 30.0  # the longest a first look at remote storage may take


class Location:
    """A directory on some filesystem; joins, reads and writes without caring which."""

    def __init__(self, fs: pafs.FileSystem, path: str, uri: str) -> None:
        self.fs, self.path, self.uri = fs, path.rstrip("/"), uri.rstrip("/")

    def __str__(self) -> str:
        """The URI (or local path) a user gave: what a message names."""
        return self.uri

    def __repr__(self) -> str:
        return f"Location({self.uri!r})"

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def join(self, *parts: str) -> Location:
        tail = "/".join(parts)
        return Location(self.fs, f"{self.path}/{tail}", f"{self.uri}/{tail}")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        """The folder holding this one (a run's storage, a search run for its certify/)."""
        return Location(self.fs, self.path.rsplit("/", 1)[0], self.uri.rsplit("/", 1)[0])

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def children(self) -> list[Location]:
        if not self.is_dir():
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=False))
        return sorted(
            (Location(self.fs, i.path, f"{self.uri}/{i.base_name}") for i in infos),
            key=lambda x: x.path,
        )

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.path) as stream:
            return bytes(stream.read())

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Whole-object write: atomic on object stores; temp + rename on a local disk."""
        if self.is_local:
            from tune_app.training.checkpoint import atomic_write_bytes

            atomic_write_bytes(Path(self.path), data)
            return
        parent = self.path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(data)

    def download(self, local: Path) -> Path:
        """Copy this directory to `local` (no-op path for a local directory)."""
        if self.is_local:
            return Path(self.path)
        local.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(
            self.path,
            str(local),
            source_filesystem=self.fs,
            destination_filesystem=pafs.LocalFileSystem(),
        )
        return local


def locate(uri: str | os.PathLike[str]) -> Location:
    """A Location for a local path or a URI. Raises InputError for a scheme pyarrow cannot open."""
    text = str(uri)
    if "://" not in text:
        path = str(Path(text).expanduser().resolve())
        return Location(pafs.LocalFileSystem(), path, path)
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise InputError(
            f"storage {text!r}: not a storage URI this installation can open ({exc}); "
            "use a local path or s3://bucket/prefix"
        ) from None
    _check_reachable(fs, path, text)
    return Location(fs, path, text)


def _endpoint(uri: str) -> str:
    """The endpoint a URI's filesystem talks to, as the user set it (or the provider's)."""
    query = parse_qs(urlparse(uri).query)
    given = query.get("endpoint_override") or [
        os.environ.get(name, "")
        for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        if os.environ.get(name)
    ]
    scheme = urlparse(uri).scheme
    return given[0] if given else f"the default {scheme}:// endpoint"


def _check_reachable(fs: pafs.FileSystem, path: str, uri: str) -> None:
    """One metadata request to a remote store, bounded by PROBE_TIMEOUT_S, so an unreachable
    endpoint is one line (exit 2) before any work, not a traceback minutes later. pyarrow's S3
    client retries a refused connection for seconds; the thread is left to finish on its own."""
    pool = ThreadPoolExecutor(max_workers=1)
    probe = pool.submit(fs.get_file_info, path)
    pool.shutdown(wait=False)
    what = f"cannot reach {_endpoint(uri)}"
    try:
        probe.result(timeout=PROBE_TIMEOUT_S)
    except FutureTimeout:
        reason = f"no answer in {PROBE_TIMEOUT_S:g} s"
    except (OSError, pa.ArrowException) as exc:
        text = " ".join(str(exc).split())
        reason = (text.split("Details: ", 1)[-1] if "Details: " in text else text)[:200]
        if "NETWORK_CONNECTION" not in text and "connect" not in text.lower():
            what = f"{_endpoint(uri)} refused the request"
    else:
        return
    raise InputError(
        f"storage {uri}: {what} ({reason}); check the endpoint (AWS_ENDPOINT_URL), the "
        "network and the credentials, or use a local --storage path"
    )

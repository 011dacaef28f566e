"""Upload state kept on disk so that an interrupted upload resumes where it stopped.

One JSON file per upload in progress, in the user's cache directory (``BIGUPLOAD_CACHE_DIR``
overrides it), named ``<path key>-<version key>.json``: the path key hashes the server URL and
the file's absolute path, the version key adds its size and modification time, so a file that
changed never resumes an upload of its old bytes. A state file is always whole: it is written to
a temporary file, flushed to disk and renamed over the old one, so a process killed at any
moment leaves the previous state or the new one. The store stays the judge of which parts it
holds; the state only says which upload to ask about.

Before the state exists, while the server is asked to begin the upload, a ``.key`` file beside
it holds the create's ``Idempotency-Key``: a process killed before it saved the server's answer
sends the same key again, and the server answers the upload it had begun instead of another.

A lock file per path key (``fcntl.flock``, released by the kernel when the process dies) keeps
two processes from uploading the same file to the same server at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bigupload.client.errors import UploadInProgressError

CACHE_ENV = "BIGUPLOAD_CACHE_DIR"
_VERSION = 1
_KEY = re.compile(r"[0-9a-f-]{36}")


def default_cache_dir() -> Path:
    """``$BIGUPLOAD_CACHE_DIR``, else the user's cache directory for bigupload."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override)
    import platformdirs  # only when there is no override: it is the slow part of the choice

    return Path(platformdirs.user_cache_dir("bigupload", appauthor=False)) / "uploads"


@dataclass
class UploadState:
    """Which upload of which file on which server; ``parts`` are those known sent (number to
    ETag)."""

    server: str
    path: str
    size: int
    mtime_ns: int
    file_id: str
    method: str  # "PUT" or "multipart"
    upload_id: str | None = None
    part_size: int = 0
    part_count: int = 0
    part_checksums: bool = False
    parts: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": _VERSION,
            "server": self.server,
            "path": self.path,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "file_id": self.file_id,
            "method": self.method,
            "upload_id": self.upload_id,
            "part_size": self.part_size,
            "part_count": self.part_count,
            "part_checksums": self.part_checksums,
            "parts": {str(number): etag for number, etag in sorted(self.parts.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadState:
        if data.get("version") != _VERSION or data.get("method") not in ("PUT", "multipart"):
            raise ValueError("not an upload state this version knows")
        return cls(
            server=str(data["server"]),
            path=str(data["path"]),
            size=int(data["size"]),
            mtime_ns=int(data["mtime_ns"]),
            file_id=str(data["file_id"]),
            method=str(data["method"]),
            upload_id=str(data["upload_id"]) if data.get("upload_id") else None,
            part_size=int(data.get("part_size", 0)),
            part_count=int(data.get("part_count", 0)),
            part_checksums=bool(data.get("part_checksums", False)),
            parts={int(number): str(etag) for number, etag in dict(data["parts"]).items()},
        )


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """One version of one local file, as seen by one server."""

    server: str
    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, server: str, path: Path) -> FileIdentity:
        resolved = path.resolve()
        stat = resolved.stat()
        return cls(server, str(resolved), stat.st_size, stat.st_mtime_ns)

    @property
    def path_key(self) -> str:
        return _digest(self.server, self.path)[:32]

    @property
    def version_key(self) -> str:
        return _digest(self.server, self.path, str(self.size), str(self.mtime_ns))[:32]

    def matches(self, state: UploadState) -> bool:
        return (state.server, state.path, state.size, state.mtime_ns) == (
            self.server,
            self.path,
            self.size,
            self.mtime_ns,
        )


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


class StateStore:
    """Upload states and locks under one directory."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def _path(self, identity: FileIdentity) -> Path:
        return self.root / f"{identity.path_key}-{identity.version_key}.json"

    def _key_path(self, identity: FileIdentity) -> Path:
        return self.root / f"{identity.path_key}-{identity.version_key}.key"

    def creation_key(self, identity: FileIdentity) -> str:
        """The ``Idempotency-Key`` for beginning this file version's upload: the one an earlier
        run saved if it never learnt the server's answer, else a new one, saved durably before
        it is used."""
        path = self._key_path(identity)
        try:
            key = path.read_text("ascii").strip()
        except (OSError, ValueError):
            key = ""
        if _KEY.fullmatch(key):
            return key
        key = str(uuid.uuid4())
        self._write(path, key.encode("ascii"))
        return key

    def forget_creation_key(self, identity: FileIdentity) -> None:
        """Once the upload's state is saved (or its key is of no more use)."""
        with contextlib.suppress(FileNotFoundError):
            self._key_path(identity).unlink()

    def forget_stale_keys(self, identity: FileIdentity) -> None:
        """Keys of other versions of the same file: their bytes are gone."""
        if not self.root.is_dir():
            return
        current = self._key_path(identity)
        for path in self.root.glob(f"{identity.path_key}-*.key"):
            if path != current:
                with contextlib.suppress(OSError):
                    path.unlink()

    def load(self, identity: FileIdentity) -> UploadState | None:
        """The state of this very file version, if an upload of it is in progress.

        Call it holding the file's lock: it also sweeps temporary files that a process killed
        while saving left behind."""
        path = self._path(identity)
        for leftover in self.root.glob(f".{identity.path_key}-*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()
        try:
            state = UploadState.from_json(json.loads(path.read_bytes()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # Never written by this version (states are whole): forget it.
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return state if identity.matches(state) else None

    def stale(self, identity: FileIdentity) -> list[tuple[Path, UploadState | None]]:
        """States of other versions of the same file: uploads of bytes that are gone."""
        found: list[tuple[Path, UploadState | None]] = []
        if not self.root.is_dir():
            return found
        current = self._path(identity)
        for path in self.root.glob(f"{identity.path_key}-*.json"):
            if path == current:
                continue
            try:
                found.append((path, UploadState.from_json(json.loads(path.read_bytes()))))
            except (OSError, ValueError, KeyError, TypeError):
                found.append((path, None))
        return found

    def save(self, identity: FileIdentity, state: UploadState) -> None:
        """Replace the state, atomically and durably."""
        self._write(
            self._path(identity), json.dumps(state.to_json(), separators=(",", ":")).encode()
        )

    def _write(self, target: Path, data: bytes) -> None:
        """Replace ``target`` with ``data``, atomically and durably."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(self.root)

    def discard(self, identity: FileIdentity) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(identity).unlink()
        self.forget_creation_key(identity)

    @contextlib.contextmanager
    def lock(self, identity: FileIdentity) -> Iterator[None]:
        """Hold the file's lock for the block; :class:`UploadInProgressError` if another process
        holds it. Lock files stay: removing one another process may have open would let two
        processes hold "the" lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f"{identity.path_key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise UploadInProgressError(
                    f"{identity.path} is being uploaded to {identity.server} by another "
                    "process; wait for it to finish or stop it"
                ) from None
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

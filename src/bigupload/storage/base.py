"""The storage port: what every adapter promises, and the errors it may raise.

Signing is local CPU work and is synchronous; every method that talks to the store is a
coroutine that must never block the event loop. Adapters raise :class:`StorageUnreachable` when
the store cannot be reached (network, DNS, timeouts, credentials the store refuses to see) and
:class:`StorageError` for any other failure; a missing object is ``None`` from :meth:`stat`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """The store answered, but not as it should have."""


class StorageUnreachable(StorageError):
    """The store could not be reached or refused our credentials."""


class ObjectNotFound(StorageError):
    """No object is stored under that key."""


@dataclass(frozen=True, slots=True)
class PresignedRequest:
    """A request the holder may make without credentials, until ``expires_at``.

    ``headers`` must be sent exactly as given: they are signed into the URL.
    """

    method: str
    url: str
    expires_at: datetime
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What the store says it holds under a key."""

    key: str
    size: int
    etag: str | None = None
    content_type: str | None = None
    checksum_sha256: str | None = None  # hex digest, when the store recorded one
    last_modified: datetime | None = None


@runtime_checkable
class Storage(Protocol):
    """Single-object operations every adapter supports."""

    #: ``"local"`` or ``"s3"``.
    kind: str
    #: The bucket (S3) or the store's name (local) recorded on each file.
    bucket: str

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        size: int,
        checksum_sha256: bytes | None,
        expires_in: int,
    ) -> PresignedRequest:
        """A PUT that stores exactly ``size`` bytes of ``content_type`` (and of that digest)."""
        ...

    def presign_get(
        self, key: str, *, filename: str, content_type: str, expires_in: int
    ) -> PresignedRequest:
        """A GET whose answer names ``filename`` in its ``Content-Disposition``."""
        ...

    async def stat(self, key: str, *, with_checksum: bool = False) -> StoredObject | None:
        """What is stored under ``key``, or ``None``."""
        ...

    async def sha256(self, key: str) -> bytes:
        """The SHA-256 digest of the stored bytes (may read the whole object)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    async def check(self) -> None:
        """Raise :class:`StorageUnreachable` unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...

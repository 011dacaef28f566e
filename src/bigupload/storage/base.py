"""The storage port: what every adapter promises, and the errors it may raise.

Signing is local CPU work and is synchronous; every method that talks to the store is a
coroutine that must never block the event loop. Adapters raise :class:`StorageUnreachable` when
the store cannot be reached (network, DNS, timeouts, credentials the store refuses to see) and
:class:`StorageError` for any other failure; a missing object is ``None`` from :meth:`stat`.

Multipart uploads follow S3's rules on every adapter: parts numbered 1 to 10,000, each part but
the last at least 5 MiB, a part uploaded again under the same number replaces the earlier one,
and completion names the parts (number and ETag, ascending) that make the object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


class StorageError(Exception):
    """The store answered, but not as it should have."""


class StorageUnreachable(StorageError):
    """The store could not be reached or refused our credentials."""


class StorageFull(StorageError):
    """The store has no room left (a full disk, an exhausted quota, or free space below the
    store's floor); what was being written was not stored, and nothing of it is left behind."""


class ObjectNotFound(StorageError):
    """No object is stored under that key."""


class UploadNotFound(StorageError):
    """No multipart upload with that id is in progress: never begun, completed or aborted."""


class PartsRejected(StorageError):
    """The store refused to complete a multipart upload from the parts it was given.

    ``code`` is S3's: ``EntityTooSmall`` (a part other than the last is below 5 MiB),
    ``InvalidPart`` (a part is missing or its ETag differs) or ``InvalidPartOrder``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: S3's limits for multipart uploads, and so every adapter's.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 5 * 1024 * 1024 * 1024
MAX_PARTS = 10_000


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
class PresignedPost:
    """A browser form POST (an S3 POST policy) the holder may send until ``expires_at``.

    ``fields`` go into the ``multipart/form-data`` body in this order, before the ``file``
    field, which must come last (S3 ignores any field after it).
    """

    url: str
    fields: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What the store says it holds under a key."""

    key: str
    size: int
    etag: str | None = None
    content_type: str | None = None
    checksum_sha256: str | None = None  # hex digest, when the store recorded one
    last_modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class PartToSign:
    """A part to sign an upload URL for: exactly ``size`` bytes (and of that digest, if given).

    ``size=None`` binds no length: the URL then stores a part of any size up to
    :data:`MAX_PART_SIZE` (for clients that do not say how long their parts are).
    """

    part_number: int
    size: int | None
    checksum_sha256: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoredPart:
    """A part the store holds for a multipart upload in progress."""

    part_number: int
    size: int
    etag: str  # quoted, as S3 answers it
    checksum_sha256: str | None = None  # base64, when the part was uploaded with one
    last_modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class CompletedPart:
    """A part named to complete an upload."""

    part_number: int
    etag: str
    checksum_sha256: str | None = None  # base64, required when the upload takes checksums


@dataclass(frozen=True, slots=True)
class MultipartUpload:
    """A multipart upload the store has begun and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime | None = None


@runtime_checkable
class Storage(Protocol):
    """What every adapter supports: single objects, and multipart uploads."""

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

    def presign_post(
        self, key: str, *, content_type: str, max_size: int, expires_in: int
    ) -> PresignedPost:
        """A browser form POST (S3 POST policy) storing 0..max_size bytes of content_type at key."""
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

    async def read_range(self, key: str, start: int, length: int) -> bytes:
        """At most ``length`` bytes of the object from offset ``start``.

        Fewer at the end of the object, and ``b""`` from its end on. Raises
        :class:`ObjectNotFound` when nothing is stored under ``key``.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing object is not an error."""
        ...

    async def create_multipart(
        self, key: str, *, content_type: str, checksum_sha256: bool = False
    ) -> str:
        """Begin a multipart upload and answer its id.

        With ``checksum_sha256`` every part must be signed with its SHA-256, and the store
        refuses a part whose bytes differ.
        """
        ...

    def presign_parts(
        self, key: str, upload_id: str, parts: Sequence[PartToSign], *, expires_in: int
    ) -> list[PresignedRequest]:
        """One PUT per part, in the order given, each storing exactly the part's bytes."""
        ...

    async def list_parts(self, key: str, upload_id: str) -> list[StoredPart]:
        """Every part the store holds for the upload, by ascending number.

        Raises :class:`UploadNotFound` when the upload is not in progress.
        """
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[CompletedPart]
    ) -> StoredObject:
        """Join ``parts`` (ascending) into the object under ``key``.

        Raises :class:`PartsRejected` when the store refuses the parts, and
        :class:`UploadNotFound` when the upload is not in progress (including when an earlier
        call completed it: the caller then finds the object with :meth:`stat`).
        """
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort the upload and free its parts. Raises :class:`UploadNotFound` if not in
        progress."""
        ...

    async def list_multipart_uploads(self, prefix: str = "") -> list[MultipartUpload]:
        """Multipart uploads in progress whose keys start with ``prefix`` (oldest first)."""
        ...

    async def check(self) -> None:
        """Raise :class:`StorageUnreachable` unless the store answers."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


@dataclass(frozen=True, slots=True)
class Leftovers:
    """What a store's clean-up of its own leftovers removed."""

    files: int
    bytes: int


@runtime_checkable
class HasLeftovers(Protocol):
    """A store whose writes cut off by a crash leave files behind (the local store's ``tmp/``).

    The sweeper, and the service when it starts, remove them."""

    async def remove_leftovers(self) -> Leftovers:
        """Remove what no live request of any process owns; answer what was freed."""
        ...

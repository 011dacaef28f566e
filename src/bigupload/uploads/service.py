"""Rules for starting an upload and for confirming it against what the store really holds."""

from __future__ import annotations

import contextlib
import logging
import uuid

import tenacity
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.config import Settings
from bigupload.errors import (
    AppError,
    Conflict,
    PayloadTooLarge,
    StorageUnavailable,
    UnsupportedMediaType,
    store_errors,
)
from bigupload.files import repository
from bigupload.files.inserter import FileInserter
from bigupload.files.models import FileRecord
from bigupload.files.status import READABLE, FileStatus
from bigupload.metrics.catalog import UPLOAD_TICKETS
from bigupload.processing.job import enqueue_processing
from bigupload.storage.base import (
    PartsRejected,
    Storage,
    StorageError,
    StorageUnreachable,
    StoredObject,
    UploadNotFound,
)
from bigupload.uploads import multipart
from bigupload.uploads.schemas import (
    ClaimedPart,
    CreateUpload,
    MultipartUploadTicket,
    SingleUploadTicket,
)
from bigupload.uploads.sizing import PartSizer

log = logging.getLogger("bigupload.uploads")

Ticket = SingleUploadTicket | MultipartUploadTicket

RACING_COMPLETE_GRACE = 2.0
"""Seconds to wait for the object a racing complete is making before calling the upload gone."""


def object_key(owner: str, file_id: uuid.UUID) -> str:
    """Keys come from the server, never from the filename."""
    now = clock.now()
    return f"uploads/{owner}/{now:%Y}/{now:%m}/{file_id}"


def wants_multipart(request: CreateUpload, settings: Settings) -> bool:
    """Parts when asked for, or above the threshold unless a single PUT was asked for."""
    if request.multipart is not None:
        return request.multipart
    return request.size > min(settings.multipart_threshold, settings.max_single_put_size)


def check_content_type(content_type: str, settings: Settings) -> None:
    if not settings.content_type_allowed(content_type):
        raise UnsupportedMediaType(
            f"files of type {content_type!r} are not accepted",
            details={"allowed": list(settings.allowed_content_types)},
        )


def check_limits(request: CreateUpload, settings: Settings, *, multipart: bool) -> None:
    check_content_type(request.content_type, settings)
    if request.size > settings.max_file_size:
        raise PayloadTooLarge(
            f"the file is larger than the {settings.max_file_size}-byte limit",
            details={"max_size": settings.max_file_size},
        )
    if not multipart and request.size > settings.max_single_put_size:
        raise PayloadTooLarge(
            f"a single upload can hold at most {settings.max_single_put_size} bytes: "
            "upload it in parts",
            details={"max_single_put_size": settings.max_single_put_size},
        )


async def create_upload(
    session: AsyncSession | None,
    inserter: FileInserter,
    owner: str,
    request: CreateUpload,
    storage: Storage,
    settings: Settings,
    *,
    idempotency_key: str | None = None,
) -> Ticket:
    """Record the file and sign its ticket: the ticket is answered only once the record is
    committed, and a ticket that cannot be signed leaves no record.

    With an ``idempotency_key``, a repeat of the same request by the same owner (a client that
    lost the answer, or was killed before it saved it) answers the upload the first one began,
    freshly signed, instead of beginning another (see :func:`_replay`). ``session`` is needed
    only with an ``idempotency_key``: the record itself is written by ``inserter``."""
    multipart = wants_multipart(request, settings)
    check_limits(request, settings, multipart=multipart)
    if idempotency_key is not None:
        if session is None:
            raise ValueError("an Idempotency-Key is looked up in a session")
        existing = await repository.by_idempotency_key(session, owner, idempotency_key)
        if existing is not None:
            return await _replay(session, existing, request, storage, settings)
    record = new_record(
        owner,
        storage,
        filename=request.filename,
        content_type=request.content_type,
        size=request.size,
        metadata=request.metadata,
        checksum_sha256=request.checksum_sha256,
        part_checksums=multipart and request.part_checksums,
        idempotency_key=idempotency_key,
    )
    try:
        if multipart:
            record.part_size = PartSizer(settings.part_size).part_size(
                request.size, request.part_size
            )
            await begin_multipart(session, inserter, record, storage)
            return _multipart_ticket(record)
        ticket = _single_ticket(record, storage, settings)
        if session is not None:
            await session.commit()  # hold no registry connection while the shared insert runs
        await inserter.insert(record)
        UPLOAD_TICKETS.labels("put").inc()
    except IntegrityError:
        # A racing repeat of this create won: answer its upload (ours left nothing behind).
        if idempotency_key is None or session is None:
            raise
        existing = await repository.by_idempotency_key(session, owner, idempotency_key)
        if existing is None:
            raise
        return await _replay(session, existing, request, storage, settings)
    return ticket


def _single_ticket(record: FileRecord, storage: Storage, settings: Settings) -> SingleUploadTicket:
    assert record.size is not None  # creates always declare it
    try:
        signed = storage.presign_put(
            record.key,
            content_type=record.content_type,
            size=record.size,
            checksum_sha256=bytes.fromhex(record.checksum_sha256)
            if record.checksum_sha256
            else None,
            expires_in=settings.url_expiry_seconds,
        )
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from exc
    return SingleUploadTicket(
        id=record.id,
        key=record.key,
        bucket=record.bucket,
        status=FileStatus.PENDING,
        method="PUT",
        url=signed.url,
        headers=signed.headers,
        expires_at=signed.expires_at,
    )


def _multipart_ticket(record: FileRecord) -> MultipartUploadTicket:
    assert record.multipart_upload_id is not None
    assert record.part_size is not None and record.size is not None
    return MultipartUploadTicket(
        id=record.id,
        key=record.key,
        bucket=record.bucket,
        status=FileStatus.PENDING,
        method="multipart",
        upload_id=record.multipart_upload_id,
        part_size=record.part_size,
        part_count=PartSizer.part_count(record.size, record.part_size),
        part_checksums=record.part_checksums,
    )


def _same_request(record: FileRecord, request: CreateUpload, settings: Settings) -> bool:
    """Whether ``request`` asks for exactly the upload ``record`` was begun as."""
    multipart = wants_multipart(request, settings)
    if (record.multipart_upload_id is not None) != multipart:
        return False
    if multipart and request.part_size is not None:
        wanted = PartSizer(settings.part_size).part_size(request.size, request.part_size)
        if wanted != record.part_size:
            return False
    return (
        record.filename,
        record.content_type,
        record.size,
        record.checksum_sha256,
        dict(record.user_metadata),
        record.part_checksums,
    ) == (
        request.filename,
        request.content_type,
        request.size,
        request.checksum_sha256,
        request.metadata,
        multipart and request.part_checksums,
    )


async def _replay(
    session: AsyncSession,
    record: FileRecord,
    request: CreateUpload,
    storage: Storage,
    settings: Settings,
) -> Ticket:
    """The ticket of the upload an earlier create with the same key began: the same file,
    upload id and parts, URLs signed anew. A different request under the key is refused (422
    ``idempotency_key_mismatch``); an upload past ``pending`` has no ticket to give (409
    ``idempotency_key_spent``, naming the file)."""
    await session.commit()  # hold no registry connection while signing
    if not _same_request(record, request, settings):
        raise AppError(
            f"this Idempotency-Key began upload {record.id} with other parameters: "
            "use a new key for a different upload",
            code="idempotency_key_mismatch",
            status=422,
            details={"file_id": str(record.id)},
        )
    if FileStatus(record.status) != FileStatus.PENDING:
        raise Conflict(
            f"this Idempotency-Key began upload {record.id}, which is {record.status}: "
            "use a new key to upload again",
            code="idempotency_key_spent",
            details={"file_id": str(record.id), "status": record.status},
        )
    log.info("create repeated with its Idempotency-Key: answering upload %s", record.id)
    if record.multipart_upload_id is not None:
        UPLOAD_TICKETS.labels("multipart").inc()
        return _multipart_ticket(record)
    ticket = _single_ticket(record, storage, settings)
    UPLOAD_TICKETS.labels("put").inc()
    return ticket


def new_record(
    owner: str,
    storage: Storage,
    *,
    filename: str,
    content_type: str,
    size: int | None,
    metadata: dict[str, str],
    checksum_sha256: str | None = None,
    part_checksums: bool = False,
    idempotency_key: str | None = None,
) -> FileRecord:
    """A new ``pending`` file (not yet inserted); ``size`` ``None``: not declared."""
    file_id = uuid.uuid4()
    now = clock.now()
    return FileRecord(
        id=file_id,
        owner=owner,
        bucket=storage.bucket,
        key=object_key(owner, file_id),
        filename=filename,
        content_type=content_type,
        size=size,
        checksum_sha256=checksum_sha256,
        status=FileStatus.PENDING.value,
        user_metadata=metadata,
        part_checksums=part_checksums,
        idempotency_key=idempotency_key,
        created_at=now,
        updated_at=now,
    )


async def begin_multipart(
    session: AsyncSession | None, inserter: FileInserter, record: FileRecord, storage: Storage
) -> str:
    """Begin the store's multipart upload for ``record``, then insert the record (committed
    when this returns); answer the upload id. A record that cannot be inserted leaves no
    upload in the store. The caller's ``session``, if any, is committed first."""
    if session is not None:
        await session.commit()  # hold no registry connection while the store is asked
    with store_errors("begin the upload"):
        record.multipart_upload_id = await storage.create_multipart(
            record.key, content_type=record.content_type, checksum_sha256=record.part_checksums
        )
    try:
        await inserter.insert(record)
    except BaseException:
        with contextlib.suppress(StorageError):  # leave no parts nobody can find
            await storage.abort_multipart(record.key, record.multipart_upload_id)
        raise
    UPLOAD_TICKETS.labels("multipart").inc()
    return record.multipart_upload_id


async def _stored(storage: Storage, record: FileRecord) -> StoredObject | None:
    with store_errors("describe the object"):
        return await storage.stat(record.key, with_checksum=record.checksum_sha256 is not None)


async def _stored_checksum(storage: Storage, stored: StoredObject) -> str:
    if stored.checksum_sha256:
        return stored.checksum_sha256
    with store_errors("read the object"):
        return (await storage.sha256(stored.key)).hex()


async def _made_by_a_racer(storage: Storage, record: FileRecord) -> StoredObject | None:
    """The object a racing complete made of this upload, or ``None`` if none appears in time.

    A store that no longer knows the multipart upload may not show its object yet: S3 can take
    a while to finish a complete, and moto forgets the upload before it writes the object.
    """
    waiting = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_delay(RACING_COMPLETE_GRACE),
        wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
        retry=tenacity.retry_if_result(lambda stored: stored is None),
        retry_error_callback=lambda _: None,
    )
    made: StoredObject | None = await waiting(_stored, storage, record)
    return made


def _settled(record: FileRecord) -> FileRecord:
    """Answer a file that is past ``pending``: itself if whole, else the reason it is not."""
    if FileStatus(record.status) in READABLE:
        return record
    raise multipart.not_in_progress(record)


class Refused(AppError):
    """This call failed the upload (it is now ``failed`` with the reason)."""


async def _fail(
    session: AsyncSession,
    record: FileRecord,
    code: str,
    reason: str,
    details: object,
    *,
    status: int = 422,
) -> AppError:
    if await repository.transition(
        session,
        record,
        FileStatus.PENDING,
        FileStatus.FAILED,
        reason=reason,
        failure=code,
        error=reason,
    ):
        await session.commit()
        log.warning("upload %s failed verification: %s", record.id, reason)
        return Refused(reason, code=code, status=status, details=details)
    await repository.refresh(session, record)
    _settled(record)
    return AppError(reason, code=code, status=status, details=details)


def size_limit(record: FileRecord, settings: Settings) -> int:
    """The most bytes a file begun without a size may hold."""
    if record.multipart_upload_id is not None:
        return settings.max_file_size
    return min(settings.max_file_size, settings.max_single_put_size)


async def _join_parts(
    session: AsyncSession,
    record: FileRecord,
    storage: Storage,
    claimed: list[ClaimedPart] | None,
    settings: Settings,
) -> StoredObject | None:
    """Complete the store's multipart upload from the parts it holds; ``None`` if there is
    nothing to complete because a racing call already did.

    Parts of an open-size upload that add up to more than the limit fail the upload (413
    ``file_too_large``, the file ``failed`` with the reason) and are freed in the store.
    """
    assert record.multipart_upload_id is not None
    try:
        held = await multipart.stored_parts(record, storage)
    except Conflict as exc:
        if exc.code != "upload_not_in_store" or await _made_by_a_racer(storage, record) is None:
            raise
        return None  # completed by a racing call: verify what it made
    try:
        parts = multipart.parts_to_complete(
            record, held, claimed, max_size=size_limit(record, settings)
        )
    except PayloadTooLarge as exc:
        error = await _fail(session, record, exc.code, exc.message, exc.details, status=413)
        with store_errors("free the parts"), contextlib.suppress(UploadNotFound):
            await storage.abort_multipart(record.key, record.multipart_upload_id)
        raise error from None
    with store_errors("complete the upload"):
        try:
            return await storage.complete_multipart(record.key, record.multipart_upload_id, parts)
        except UploadNotFound:
            if await _made_by_a_racer(storage, record) is None:
                await repository.refresh(session, record)
                if FileStatus(record.status) != FileStatus.PENDING:
                    _settled(record)
                raise multipart.gone(record) from None
            return None
        except PartsRejected as exc:
            raise AppError(
                f"the store refused the parts: {exc.message}",
                code="parts_rejected",
                status=422,
                details={"store_code": exc.code},
            ) from None


async def complete_upload(
    session: AsyncSession,
    record: FileRecord,
    storage: Storage,
    claimed: list[ClaimedPart] | None = None,
    *,
    settings: Settings,
) -> FileRecord:
    """Confirm the upload against the store: present, of the declared size and checksum.

    A multipart upload is first completed in the store from the parts the store holds. The file
    that becomes ``uploaded`` has its processing queued in ``session``: the caller commits both.
    Idempotent: a confirmed file answers as it is. Of two racing calls one records the change
    and the other answers the same file. The registry is not held while the store is asked.

    A file begun without a size (``record.size`` ``None``) is confirmed at whatever size the
    store holds, up to the limit (:func:`size_limit`); a larger object fails the file with 413
    ``file_too_large`` and is removed.
    """
    if FileStatus(record.status) != FileStatus.PENDING:
        return _settled(record)
    if claimed is not None and record.multipart_upload_id is None:
        raise AppError(
            "parts were named, but this file is uploaded with one PUT",
            code="not_multipart",
            status=422,
        )
    await session.commit()

    try:
        if record.multipart_upload_id is not None:
            await _join_parts(session, record, storage, claimed, settings)
        stored = await _stored(storage, record)
        if stored is None:
            raise Conflict(
                "nothing has been uploaded for this file yet: PUT the bytes to the upload URL "
                "first",
                code="upload_incomplete",
            )
    except AppError as exc:
        if isinstance(exc, Refused):
            raise
        # A racing abort (or complete) explains what the store said better than the store.
        await repository.refresh(session, record)
        if FileStatus(record.status) != FileStatus.PENDING:
            return _settled(record)
        raise
    if record.size is None and stored.size > (limit := size_limit(record, settings)):
        error = await _fail(
            session,
            record,
            "file_too_large",
            f"the store holds {stored.size} bytes, more than the {limit}-byte limit",
            {"max_size": limit, "size": stored.size},
            status=413,
        )
        with store_errors("remove the refused object"):
            await storage.delete(record.key)
        raise error
    if record.size is not None and stored.size != record.size:
        raise await _fail(
            session,
            record,
            "size_mismatch",
            f"the store holds {stored.size} bytes, {record.size} were declared",
            {"declared": record.size, "stored": stored.size},
        )
    if record.checksum_sha256:
        actual = await _stored_checksum(storage, stored)
        if actual != record.checksum_sha256:
            raise await _fail(
                session,
                record,
                "checksum_mismatch",
                "the stored bytes' SHA-256 differs from the declared checksum",
                {"declared": record.checksum_sha256, "stored": actual},
            )
    moved = await repository.transition(
        session,
        record,
        FileStatus.PENDING,
        FileStatus.UPLOADED,
        stored_size=stored.size,
        etag=stored.etag,
        uploaded_at=clock.now(),
    )
    if not moved:
        await repository.refresh(session, record)
        if FileStatus(record.status) in (FileStatus.ABORTED, FileStatus.EXPIRED):
            # Aborted or expired while its parts were being joined (its purge may have run
            # before the object existed): the object must not outlive the upload.
            with store_errors("remove the abandoned upload's object"):
                await storage.delete(record.key)
        return _settled(record)
    await enqueue_processing(session, record, settings)
    log.info("upload %s confirmed: %d bytes key=%s", record.id, stored.size, record.key)
    return record

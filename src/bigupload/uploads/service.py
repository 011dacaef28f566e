"""Rules for starting an upload and for confirming it against what the store really holds."""

from __future__ import annotations

import contextlib
import logging
import uuid

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
    session: AsyncSession,
    inserter: FileInserter,
    owner: str,
    request: CreateUpload,
    storage: Storage,
    settings: Settings,
) -> SingleUploadTicket | MultipartUploadTicket:
    """Record the file and sign its ticket: the ticket is answered only once the record is
    committed, and a ticket that cannot be signed leaves no record."""
    multipart = wants_multipart(request, settings)
    check_limits(request, settings, multipart=multipart)
    record = new_record(
        owner,
        storage,
        filename=request.filename,
        content_type=request.content_type,
        size=request.size,
        metadata=request.metadata,
        checksum_sha256=request.checksum_sha256,
        part_checksums=multipart and request.part_checksums,
    )
    if multipart:
        return await _create_multipart(session, inserter, record, request, storage, settings)
    try:
        ticket = storage.presign_put(
            record.key,
            content_type=record.content_type,
            size=request.size,
            checksum_sha256=bytes.fromhex(request.checksum_sha256)
            if request.checksum_sha256
            else None,
            expires_in=settings.url_expiry_seconds,
        )
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from exc
    await session.commit()  # hold no registry connection while the shared insert runs
    await inserter.insert(record)
    return SingleUploadTicket(
        id=record.id,
        key=record.key,
        bucket=record.bucket,
        status=FileStatus.PENDING,
        method="PUT",
        url=ticket.url,
        headers=ticket.headers,
        expires_at=ticket.expires_at,
    )


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
        created_at=now,
        updated_at=now,
    )


async def begin_multipart(
    session: AsyncSession, inserter: FileInserter, record: FileRecord, storage: Storage
) -> str:
    """Begin the store's multipart upload for ``record``, then insert the record (committed
    when this returns); answer the upload id. A record that cannot be inserted leaves no
    upload in the store."""
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
    return record.multipart_upload_id


async def _create_multipart(
    session: AsyncSession,
    inserter: FileInserter,
    record: FileRecord,
    request: CreateUpload,
    storage: Storage,
    settings: Settings,
) -> MultipartUploadTicket:
    sizer = PartSizer(default_part_size=settings.part_size)
    record.part_size = sizer.part_size(request.size, request.part_size)
    upload_id = await begin_multipart(session, inserter, record, storage)
    return MultipartUploadTicket(
        id=record.id,
        key=record.key,
        bucket=record.bucket,
        status=FileStatus.PENDING,
        method="multipart",
        upload_id=upload_id,
        part_size=record.part_size,
        part_count=sizer.part_count(request.size, record.part_size),
        part_checksums=record.part_checksums,
    )


async def _stored(storage: Storage, record: FileRecord) -> StoredObject | None:
    with store_errors("describe the object"):
        return await storage.stat(record.key, with_checksum=record.checksum_sha256 is not None)


async def _stored_checksum(storage: Storage, stored: StoredObject) -> str:
    if stored.checksum_sha256:
        return stored.checksum_sha256
    with store_errors("read the object"):
        return (await storage.sha256(stored.key)).hex()


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
        session, record, FileStatus.PENDING, FileStatus.FAILED, reason=reason, error=reason
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
        if exc.code != "upload_not_in_store" or await _stored(storage, record) is None:
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
            if await _stored(storage, record) is None:
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

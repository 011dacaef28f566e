"""Rules of the Uppy routes: the same records, limits and checks as ``/api/v1/uploads``.

Uppy sends no file size to any route, so its files are recorded with ``size`` unknown
(``None``): a single file is sent as a form POST whose policy bounds its length, and its
``landing`` job (:mod:`.landing`) confirms it once it is in the store; a multipart upload is an
*open-size* upload (:mod:`bigupload.uploads.multipart`), checked when it is completed.

An upload is found by its key (unique), and must be the caller's and carry the upload id the
client names: anything else is 404 ``upload_not_found``, so nobody learns of another's uploads.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.config import Settings
from bigupload.errors import AppError, Conflict, NotFound, StorageUnavailable, store_errors
from bigupload.files.inserter import FileInserter
from bigupload.files.models import FileRecord
from bigupload.metrics.catalog import UPLOAD_TICKETS
from bigupload.storage.base import PresignedRequest, Storage, StorageUnreachable
from bigupload.storage.locations import object_url
from bigupload.uploads import multipart, service
from bigupload.uploads.schemas import ClaimedPart
from bigupload.uppy import repository
from bigupload.uppy.landing import enqueue_landing
from bigupload.uppy.schemas import (
    MAX_BATCH,
    Completed,
    MultipartStarted,
    SignedBatch,
    SignedPart,
    UploadParams,
    UppyFile,
    UppyPart,
)


def _new_record(owner: str, file: UppyFile, storage: Storage, settings: Settings) -> FileRecord:
    service.check_content_type(file.content_type, settings)
    return service.new_record(
        owner,
        storage,
        filename=file.name,
        content_type=file.content_type,
        size=None,
        metadata=file.metadata,
    )


async def create_post(
    session: AsyncSession,
    inserter: FileInserter,
    owner: str,
    file: UppyFile,
    storage: Storage,
    settings: Settings,
) -> UploadParams:
    """Record the file and sign a form POST of at most the single-upload limit; its landing
    job is queued with it. Answered once both are committed."""
    record = _new_record(owner, file, storage, settings)
    try:
        post = storage.presign_post(
            record.key,
            content_type=record.content_type,
            max_size=min(settings.max_file_size, settings.max_single_put_size),
            expires_in=settings.url_expiry_seconds,
        )
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from exc
    await session.commit()  # hold no registry connection while the shared insert runs
    await inserter.insert(record)
    await enqueue_landing(session, record, post.expires_at, settings)
    await session.commit()
    UPLOAD_TICKETS.labels("post").inc()
    return UploadParams(
        url=post.url,
        fields=post.fields,
        expires=settings.url_expiry_seconds,
        key=record.key,
    )


async def create_multipart(
    session: AsyncSession,
    inserter: FileInserter,
    owner: str,
    file: UppyFile,
    storage: Storage,
    settings: Settings,
) -> MultipartStarted:
    """Record the file (size and part size unknown) and begin its multipart upload."""
    record = _new_record(owner, file, storage, settings)
    upload_id = await service.begin_multipart(session, inserter, record, storage)
    return MultipartStarted(key=record.key, upload_id=upload_id, bucket=record.bucket)


async def find_upload(session: AsyncSession, owner: str, upload_id: str, key: str) -> FileRecord:
    """The caller's multipart upload ``upload_id`` stored under ``key``."""
    record = await repository.by_key(session, key)
    if record is None or record.owner != owner or record.multipart_upload_id != upload_id:
        raise NotFound("no such upload", code="upload_not_found")
    return record


async def list_parts(record: FileRecord, storage: Storage) -> list[UppyPart]:
    """Every part the store holds, as Companion lists them (number, size, ETag, and when it
    was stored if the store says). Uppy skips each part listed and completes from the list, so
    it is exactly the store's: leaving a part out would make the completed object lack it."""
    return [
        UppyPart(
            part_number=p.part_number,
            etag=p.etag,
            size=p.size,
            last_modified=p.last_modified,
        )
        for p in await multipart.stored_parts(record, storage)
    ]


def _invalid_part_number(text: str) -> AppError:
    return AppError(
        "part numbers are whole numbers from 1 to 10000",
        code="invalid_part_number",
        status=400,
        details={"invalid": [text[:20]]},
    )


def part_number(text: str) -> int:
    """A part number from a URL: 1 to 10,000, else 400 ``invalid_part_number``."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 1 <= int(text) <= 10_000:
        raise _invalid_part_number(text)
    return int(text)


def part_numbers(text: str) -> list[int]:
    """``1,2,3``: distinct part numbers, in the order given, at most :data:`MAX_BATCH`."""
    items = text.split(",")
    if len(items) > MAX_BATCH:
        raise AppError(
            f"at most {MAX_BATCH} parts are signed at once",
            code="too_many_parts",
            status=400,
            details={"max": MAX_BATCH},
        )
    return list(dict.fromkeys(part_number(item) for item in items))


def _sign(
    record: FileRecord, numbers: list[int], storage: Storage, settings: Settings
) -> list[PresignedRequest]:
    upload_id = multipart.upload_id_of(record)
    if record.part_checksums:
        raise Conflict(
            "this upload's parts are signed with their checksums: use /api/v1/uploads/{id}/parts",
            code="checksum_required",
        )
    parts = [multipart.part_to_sign(record, n, settings) for n in numbers]
    with store_errors("sign the part URLs"):
        return storage.presign_parts(
            record.key, upload_id, parts, expires_in=settings.url_expiry_seconds
        )


def sign_part(record: FileRecord, number: int, storage: Storage, settings: Settings) -> SignedPart:
    [signed] = _sign(record, [number], storage, settings)
    return SignedPart(
        url=signed.url, expires=settings.url_expiry_seconds, headers=signed.headers or None
    )


def sign_batch(
    record: FileRecord, numbers: list[int], storage: Storage, settings: Settings
) -> SignedBatch:
    signed = _sign(record, numbers, storage, settings)
    return SignedBatch(
        presigned_urls={str(n): request.url for n, request in zip(numbers, signed, strict=True)}
    )


async def complete(
    session: AsyncSession,
    record: FileRecord,
    storage: Storage,
    parts: list[ClaimedPart],
    settings: Settings,
) -> Completed:
    """Complete the upload as ``POST /api/v1/uploads/{id}/complete`` does (idempotent), and
    answer the object's URL in the store, as S3's CompleteMultipartUpload (and Companion)
    answers it: the same kind of URL a single upload's form POST answers as its Location."""
    with store_errors("name the stored object"):  # signing only; before anything changes
        location = object_url(storage, record.key)
    done = await service.complete_upload(session, record, storage, parts, settings=settings)
    return Completed(location=location, key=done.key, bucket=done.bucket)

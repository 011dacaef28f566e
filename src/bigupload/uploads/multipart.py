"""Uploads in parts: sign part URLs, tell what the store holds, check the parts, abort.

The store is the only authority on what has been uploaded: completion is decided from its list
of parts, never from what the client claims, and the client's ETags are only compared with it.
"""

from __future__ import annotations

import base64
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.config import Settings
from bigupload.errors import AppError, Conflict, InvalidRequest, store_errors
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.status import READABLE, FileStatus
from bigupload.storage.base import (
    CompletedPart,
    PartToSign,
    Storage,
    StoredPart,
    UploadNotFound,
)
from bigupload.uploads.schemas import (
    ClaimedPart,
    PartUrl,
    PartUrls,
    SignParts,
    UploadedPart,
    UploadParts,
)
from bigupload.uploads.sizing import PartSizer

log = logging.getLogger("bigupload.uploads")

#: Part numbers listed in an error's details, at most.
_LISTED = 100


def not_in_progress(record: FileRecord) -> Conflict:
    """Why parts can no longer be sent for a file that is past ``pending``."""
    status = FileStatus(record.status)
    code = {
        FileStatus.FAILED: "upload_failed",
        FileStatus.EXPIRED: "upload_expired",
        FileStatus.ABORTED: "upload_aborted",
    }.get(status, "upload_completed")
    return Conflict(
        f"the upload is {status.value}" + (f": {record.error}" if record.error else ""),
        code=code,
        details={"status": status.value, "error": record.error},
    )


def _multipart(record: FileRecord) -> tuple[str, int, int]:
    """The upload id, part size and part count of a multipart file still being uploaded."""
    if record.multipart_upload_id is None or record.part_size is None or record.size is None:
        raise Conflict("this file is uploaded with one PUT, not in parts", code="not_multipart")
    if FileStatus(record.status) != FileStatus.PENDING:
        raise not_in_progress(record)
    return (
        record.multipart_upload_id,
        record.part_size,
        PartSizer.part_count(record.size, record.part_size),
    )


def sign_parts(
    record: FileRecord, request: SignParts, storage: Storage, settings: Settings
) -> PartUrls:
    upload_id, part_size, count = _multipart(record)
    assert record.size is not None
    outside = [n for n in request.part_numbers if n > count]
    if outside:
        raise InvalidRequest(
            f"this upload has parts 1 to {count}",
            code="invalid_part_number",
            details={"part_count": count, "invalid": outside[:_LISTED]},
        )
    unknown = sorted(int(n) for n in request.checksums_sha256 if int(n) not in request.part_numbers)
    if unknown:
        raise InvalidRequest(
            "checksums were given for parts not being signed",
            code="invalid_part_number",
            details={"invalid": unknown[:_LISTED]},
        )
    if record.part_checksums:
        missing = [n for n in request.part_numbers if request.checksum_of(n) is None]
        if missing:
            raise InvalidRequest(
                "this upload takes each part's SHA-256: give one for every part",
                code="checksum_required",
                details={"missing": missing[:_LISTED]},
            )
    parts = [
        PartToSign(n, PartSizer.part_length(record.size, part_size, n), request.checksum_of(n))
        for n in request.part_numbers
    ]
    with store_errors("sign the part URLs"):
        signed = storage.presign_parts(
            record.key, upload_id, parts, expires_in=settings.url_expiry_seconds
        )
    return PartUrls(
        upload_id=upload_id,
        parts=[
            PartUrl(
                part_number=part.part_number,
                size=part.size,
                url=url.url,
                headers=url.headers,
                expires_at=url.expires_at,
            )
            for part, url in zip(parts, signed, strict=True)
        ],
    )


def gone(record: FileRecord) -> Conflict:
    return Conflict(
        "the store no longer holds this upload's parts (aborted outside bigupload, or expired "
        "by a lifecycle rule): start a new upload",
        code="upload_not_in_store",
        details={"upload_id": record.multipart_upload_id},
    )


async def stored_parts(record: FileRecord, storage: Storage) -> list[StoredPart]:
    upload_id, _, _ = _multipart(record)
    with store_errors("list the parts"):
        try:
            return await storage.list_parts(record.key, upload_id)
        except UploadNotFound:
            raise gone(record) from None


def _hex(checksum: str | None) -> str | None:
    return base64.b64decode(checksum).hex() if checksum else None


async def list_parts(record: FileRecord, storage: Storage) -> UploadParts:
    upload_id, part_size, count = _multipart(record)
    parts = await stored_parts(record, storage)
    return UploadParts(
        id=record.id,
        upload_id=upload_id,
        part_size=part_size,
        part_count=count,
        parts=[
            UploadedPart(
                part_number=p.part_number,
                size=p.size,
                etag=p.etag,
                checksum_sha256=_hex(p.checksum_sha256),
            )
            for p in parts
        ],
    )


def parts_to_complete(
    record: FileRecord, stored: list[StoredPart], claimed: list[ClaimedPart] | None
) -> list[CompletedPart]:
    """The parts that make the file, checked against the declaration and the client's claims.

    Every part 1..N must be in the store, each exactly as long as the sizing says (so the sizes
    add up to the declared size), and each ETag the client names must be the store's.
    """
    _, part_size, count = _multipart(record)
    assert record.size is not None
    held = {p.part_number: p for p in stored}
    missing = [n for n in range(1, count + 1) if n not in held]
    if missing:
        raise Conflict(
            f"{len(missing)} of {count} parts are not in the store yet",
            code="upload_incomplete",
            details={"missing": missing[:_LISTED], "missing_count": len(missing)},
        )
    wrong = [
        {
            "part_number": n,
            "expected": PartSizer.part_length(record.size, part_size, n),
            "stored": held[n].size,
        }
        for n in range(1, count + 1)
        if held[n].size != PartSizer.part_length(record.size, part_size, n)
    ]
    if wrong:
        raise AppError(
            "stored parts differ in size from the declared file: upload them again",
            code="part_size_mismatch",
            status=422,
            details={"parts": wrong[:_LISTED]},
        )
    mismatched = [
        {"part_number": c.part_number, "claimed": c.etag, "stored": held[c.part_number].etag}
        for c in claimed or ()
        if c.part_number in held and held[c.part_number].etag != c.etag
    ]
    unknown = [c.part_number for c in claimed or () if c.part_number not in held]
    if unknown:
        raise AppError(
            "parts were named that this upload does not have",
            code="invalid_part_number",
            status=422,
            details={"part_count": count, "invalid": unknown[:_LISTED]},
        )
    if mismatched:
        raise AppError(
            "the store holds other parts than the client sent",
            code="etag_mismatch",
            status=422,
            details={"parts": mismatched[:_LISTED]},
        )
    return [CompletedPart(n, held[n].etag, held[n].checksum_sha256) for n in range(1, count + 1)]


async def abort_upload(session: AsyncSession, record: FileRecord, storage: Storage) -> FileRecord:
    """Abort an upload in progress and free what the store holds for it. Idempotent.

    The record is marked first, so of an abort and a complete racing exactly one wins, and a
    completed file is never touched. Then the store's parts are freed and any object a racing
    complete made is removed; if the store fails there, calling again finishes the job.
    """
    status = FileStatus(record.status)
    if status in READABLE:
        raise Conflict(
            "the upload is complete; delete the file instead",
            code="upload_completed",
            details={"status": status.value},
        )
    if status not in (FileStatus.PENDING, FileStatus.ABORTED):
        raise not_in_progress(record)
    if status == FileStatus.PENDING:
        moved = await repository.transition(
            session,
            record,
            FileStatus.PENDING,
            FileStatus.ABORTED,
            reason="aborted by the uploader",
        )
        await session.commit()  # hold no registry lock while the store is asked
        if not moved:
            await repository.refresh(session, record)
            return await abort_upload(session, record, storage)
        log.info("upload %s aborted key=%s", record.id, record.key)
    else:
        await session.commit()
    if record.multipart_upload_id:
        # Not found: aborted before, completed by a racing call, or expired in the store.
        with store_errors("abort the upload"), contextlib.suppress(UploadNotFound):
            await storage.abort_multipart(record.key, record.multipart_upload_id)
    with store_errors("remove the upload's bytes"):
        await storage.delete(record.key)
    return record

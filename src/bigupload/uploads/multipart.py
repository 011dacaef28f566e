"""Uploads in parts: sign part URLs, tell what the store holds, check the parts, abort.

The store is the only authority on what has been uploaded: completion is decided from its list
of parts, never from what the client claims, and the client's ETags are only compared with it.

An upload of declared size is cut by :class:`PartSizer`: every part has an exact length. An
upload begun without a size (the Uppy routes, :mod:`bigupload.uppy`) is an *open-size* upload:
its parts are signed without a length bound, and at completion they must be numbered 1 to N
without gaps, every part but the last of one size of at least 5 MiB, and add up to at most the
file size limit.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.config import Settings
from bigupload.errors import AppError, Conflict, InvalidRequest, PayloadTooLarge, store_errors
from bigupload.expiry.purge import enqueue_purge, rerun_purge
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.status import READABLE, FileStatus
from bigupload.storage.base import (
    MAX_PARTS,
    MIN_PART_SIZE,
    CompletedPart,
    PartToSign,
    Storage,
    StorageError,
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


def upload_id_of(record: FileRecord) -> str:
    """The store's upload id of a multipart file still being uploaded (of any size)."""
    if record.multipart_upload_id is None:
        raise Conflict("this file is uploaded with one PUT, not in parts", code="not_multipart")
    if FileStatus(record.status) != FileStatus.PENDING:
        raise not_in_progress(record)
    return record.multipart_upload_id


def _multipart(record: FileRecord) -> tuple[str, int, int]:
    """The upload id, part size and part count of a multipart file of declared size still
    being uploaded."""
    upload_id = upload_id_of(record)
    if record.part_size is None or record.size is None:
        raise Conflict(
            "this upload was begun without a size: its parts are signed and listed through "
            "the /s3/multipart routes",
            code="size_not_declared",
        )
    return upload_id, record.part_size, PartSizer.part_count(record.size, record.part_size)


def first_beyond(max_file_size: int) -> int:
    """The first part number an open-size upload cannot need: parts before it, at 5 MiB
    each, already reach ``max_file_size``."""
    return -(-max_file_size // MIN_PART_SIZE) + 1


def part_to_sign(record: FileRecord, part_number: int, settings: Settings) -> PartToSign:
    """Part ``part_number`` of a multipart upload in progress, to sign a URL for: of its exact
    length when the file's size was declared, else with no length bound.

    Raises 400 ``invalid_part_number`` outside the upload's parts (1 to 10,000 for an open-size
    upload) and, for an open-size upload, 413 ``file_too_large`` for a part the file cannot
    reach: one whose predecessors, at 5 MiB each, already make the largest file allowed.
    """
    upload_id_of(record)
    if record.size is not None and record.part_size is not None:
        count = PartSizer.part_count(record.size, record.part_size)
        if not 1 <= part_number <= count:
            raise _bad_part_number(part_number, count)
        return PartToSign(
            part_number, PartSizer.part_length(record.size, record.part_size, part_number)
        )
    if not 1 <= part_number <= MAX_PARTS:
        raise _bad_part_number(part_number, MAX_PARTS)
    if part_number >= first_beyond(settings.max_file_size):
        raise PayloadTooLarge(
            f"part {part_number} cannot be part of a file of at most "
            f"{settings.max_file_size} bytes (every part but the last has at least "
            f"{MIN_PART_SIZE} bytes)",
            details={"max_size": settings.max_file_size, "part_number": part_number},
        )
    return PartToSign(part_number, None)


def _bad_part_number(part_number: int, count: int) -> AppError:
    return AppError(
        f"part numbers run from 1 to {count}",
        code="invalid_part_number",
        status=400,
        details={"part_count": count, "invalid": [part_number]},
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
    upload_id = upload_id_of(record)
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
    record: FileRecord,
    stored: list[StoredPart],
    claimed: list[ClaimedPart] | None,
    *,
    max_size: int,
) -> list[CompletedPart]:
    """The parts that make the file, checked against the declaration and the client's claims.

    Every part 1..N must be in the store, each exactly as long as the sizing says (so the sizes
    add up to the declared size), and each ETag the client names must be the store's. For an
    open-size upload see :func:`_open_parts`; ``max_size`` is the largest file allowed.
    """
    if record.size is None:
        return _open_parts(record, stored, claimed, max_size)
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
    unknown = [c.part_number for c in claimed or () if c.part_number not in held]
    if unknown:
        raise AppError(
            "parts were named that this upload does not have",
            code="invalid_part_number",
            status=422,
            details={"part_count": count, "invalid": unknown[:_LISTED]},
        )
    _check_etags(held, claimed)
    return [CompletedPart(n, held[n].etag, held[n].checksum_sha256) for n in range(1, count + 1)]


def _check_etags(held: dict[int, StoredPart], claimed: list[ClaimedPart] | None) -> None:
    mismatched = [
        {"part_number": c.part_number, "claimed": c.etag, "stored": held[c.part_number].etag}
        for c in claimed or ()
        if c.part_number in held and held[c.part_number].etag != c.etag
    ]
    if mismatched:
        raise AppError(
            "the store holds other parts than the client sent",
            code="etag_mismatch",
            status=422,
            details={"parts": mismatched[:_LISTED]},
        )


def _open_parts(
    record: FileRecord, stored: list[StoredPart], claimed: list[ClaimedPart] | None, max_size: int
) -> list[CompletedPart]:
    """The parts that make an open-size file: those the client names (all the store holds when
    it names none), numbered 1 to N without gaps, each held with the ETag named, every part but
    the last of one size of at least 5 MiB, at most ``max_size`` bytes in all.

    Raises 413 ``file_too_large`` when the parts held add up to more than ``max_size`` (the
    caller fails the upload and frees its parts); 409 ``upload_incomplete`` while parts are
    missing; 422 ``invalid_part_number`` for numbers with gaps, ``part_size_mismatch`` for parts
    of uneven or too small sizes, ``etag_mismatch`` for ETags the store does not hold.
    """
    upload_id_of(record)
    held = {p.part_number: p for p in stored}
    if claimed is not None:
        numbers = sorted(c.part_number for c in claimed)
        if numbers != list(range(1, len(numbers) + 1)):
            expected = set(range(1, len(numbers) + 1))
            raise AppError(
                "the parts named must be numbered 1 to N without gaps",
                code="invalid_part_number",
                status=422,
                details={"invalid": sorted(set(numbers) - expected)[:_LISTED]},
            )
        count = len(numbers)
    else:
        count = max(held, default=0)
    total = sum(held[n].size for n in range(1, count + 1) if n in held)
    if total > max_size:
        raise PayloadTooLarge(
            f"the parts hold {total} bytes, more than the {max_size}-byte limit",
            details={"max_size": max_size, "size": total},
        )
    missing = [n for n in range(1, count + 1) if n not in held]
    if missing or count == 0:
        raise Conflict(
            f"{len(missing)} of {count} parts are not in the store yet"
            if count
            else "no part is in the store yet",
            code="upload_incomplete",
            details={"missing": missing[:_LISTED], "missing_count": len(missing)},
        )
    part_size = held[1].size
    wrong = [
        {"part_number": n, "expected": part_size, "stored": held[n].size}
        for n in range(2, count)
        if held[n].size != part_size
    ]
    if wrong or (count > 1 and part_size < MIN_PART_SIZE):
        raise AppError(
            f"every part but the last must have one size of at least {MIN_PART_SIZE} bytes",
            code="part_size_mismatch",
            status=422,
            details={
                "part_size": part_size,
                "min_part_size": MIN_PART_SIZE,
                "parts": wrong[:_LISTED],
            },
        )
    _check_etags(held, claimed)
    return [CompletedPart(n, held[n].etag, held[n].checksum_sha256) for n in range(1, count + 1)]


@dataclass(frozen=True, slots=True)
class Abort:
    """An aborted upload, and whether its bytes are still to be freed in the store."""

    record: FileRecord
    #: The store could not be reached: its ``purge`` job frees the parts once it can.
    cleanup_pending: bool


#: Seconds the purge job queued with an abort waits, so that the abort's own attempt comes first.
PURGE_DELAY_SECONDS = 5.0


async def abort_upload(
    session: AsyncSession, record: FileRecord, storage: Storage, settings: Settings
) -> Abort:
    """Abort an upload in progress and free what the store holds for it. Idempotent.

    The record is marked first, with a ``purge`` job in the same transaction, so of an abort
    and a complete racing exactly one wins, a completed file is never touched, and the store
    is freed even if the store cannot be reached now (the job retries until it can) or this
    process dies. Then the store's parts are freed at once, and any object a racing complete
    made is removed; if the store fails there, the answer says the clean-up is pending.
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
        if not moved:
            await session.commit()
            await repository.refresh(session, record)
            return await abort_upload(session, record, storage, settings)
        log.info("upload %s aborted key=%s", record.id, record.key)
    # Once per file (a no-op when queued before); later, so the attempt below comes first.
    await enqueue_purge(
        session, record, settings, run_at=clock.now() + timedelta(seconds=PURGE_DELAY_SECONDS)
    )
    await session.commit()  # hold no registry lock while the store is asked
    try:
        if record.multipart_upload_id:
            # Not found: aborted before, completed by a racing call, or expired in the store.
            with contextlib.suppress(UploadNotFound):
                await storage.abort_multipart(record.key, record.multipart_upload_id)
        await storage.delete(record.key)
    except StorageError as exc:
        log.warning(
            "upload %s aborted; the store could not free it yet (%s): its purge job will",
            record.id,
            exc,
        )
        await rerun_purge(session, record.id)  # e.g. it ran, and a racing complete stored more
        return Abort(record, cleanup_pending=True)
    return Abort(record, cleanup_pending=False)

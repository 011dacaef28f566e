"""Rules for reading, re-labelling, downloading and deleting files."""

from __future__ import annotations

import contextlib
import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.config import Settings
from bigupload.errors import (
    Conflict,
    NotFound,
    StorageUnavailable,
    object_not_found,
    store_errors,
)
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.schemas import DownloadLink
from bigupload.files.status import READABLE, FileStatus, client_can_transition
from bigupload.storage.base import ObjectNotFound, Storage, StorageUnreachable, UploadNotFound

log = logging.getLogger("bigupload.files")


async def get_file(session: AsyncSession, owner: str, file_id: uuid.UUID) -> FileRecord:
    """The owner's file; another owner's file is as missing as a file that never was."""
    record = await repository.get_owned(session, file_id, owner)
    if record is None:
        raise NotFound("no such file", code="file_not_found")
    return record


async def change_status(
    session: AsyncSession,
    record: FileRecord,
    target: FileStatus,
    reason: str | None,
) -> FileRecord:
    current = FileStatus(record.status)
    if current == target:
        return record
    if not client_can_transition(current, target):
        hint = (
            "; confirm an upload with POST /api/v1/uploads/{id}/complete"
            if target == FileStatus.UPLOADED
            else ""
        )
        raise Conflict(
            f"a {current.value} file cannot become {target.value}{hint}",
            code="invalid_transition",
            details={"from": current.value, "to": target.value},
        )
    values: dict[str, object] = {}
    if target == FileStatus.FAILED:
        values["error"] = reason or "marked failed by the client"
    if target == FileStatus.COMPLETED:
        values["completed_at"] = clock.now()
    moved = await repository.transition(
        session, record, current, target, reason=reason, failure="client", **values
    )
    if not moved:
        await repository.refresh(session, record)
        if FileStatus(record.status) == target:
            return record
        raise Conflict(f"the file changed to {record.status} meanwhile", code="invalid_transition")
    return record


def download_link(record: FileRecord, storage: Storage, settings: Settings) -> DownloadLink:
    if FileStatus(record.status) not in READABLE:
        raise Conflict(
            f"the file is {record.status}; only uploaded files can be downloaded",
            code="file_not_ready",
            details={"status": record.status},
        )
    try:
        request = storage.presign_get(
            record.key,
            filename=record.filename,
            content_type=record.content_type,
            expires_in=settings.download_expiry_seconds,
        )
    except StorageUnreachable as exc:
        raise StorageUnavailable(str(exc)) from exc
    except ObjectNotFound as exc:  # the local store refuses the object's path (a planted link)
        raise object_not_found() from exc
    return DownloadLink(url=request.url, filename=record.filename, expires_at=request.expires_at)


async def delete_file(session: AsyncSession, record: FileRecord, storage: Storage) -> None:
    """Remove the stored object (and parts of an upload in progress), then the record; if the
    store fails, both stay."""
    await session.commit()  # hold no registry lock while the store is asked
    with store_errors("delete the object"):
        if record.multipart_upload_id and FileStatus(record.status) == FileStatus.PENDING:
            with contextlib.suppress(UploadNotFound):
                await storage.abort_multipart(record.key, record.multipart_upload_id)
        await storage.delete(record.key)
    await repository.delete_record(session, record)
    log.info("deleted file %s key=%s", record.id, record.key)

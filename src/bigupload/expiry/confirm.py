"""The application's confirmation that it keeps a file (the seed's *store on load* off).

With ``confirm_within_seconds`` set, a whole file the application does not confirm within that
time of its upload expires (see :mod:`bigupload.expiry.sweeper`). Confirming is idempotent: the
first confirmation's time is kept.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.errors import Conflict
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.status import READABLE, FileStatus

log = logging.getLogger("bigupload.expiry")

#: Why a file that is not whole cannot be confirmed, by status: (code, message).
_REFUSED = {
    FileStatus.PENDING: (
        "file_not_uploaded",
        "the file is still pending: finish its upload (POST /api/v1/uploads/{id}/complete) "
        "before confirming it",
    ),
    FileStatus.FAILED: ("file_failed", "the file failed and cannot be confirmed"),
    FileStatus.EXPIRED: ("file_expired", "the file expired and cannot be confirmed"),
    FileStatus.ABORTED: ("file_aborted", "the upload was aborted; there is nothing to confirm"),
}


async def confirm_file(session: AsyncSession, record: FileRecord) -> FileRecord:
    """Record that the application keeps ``record``; a file that is not whole is a 409.

    The change is conditional on the file being whole and unconfirmed, so a confirmation and an
    expiry racing each other cannot both win.
    """
    now = clock.now()
    result = await session.execute(
        update(FileRecord)
        .where(
            FileRecord.id == record.id,
            FileRecord.status.in_([s.value for s in READABLE]),
            FileRecord.confirmed_at.is_(None),
        )
        .values(confirmed_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await repository.refresh(session, record)
    status = FileStatus(record.status)
    if status in READABLE and record.confirmed_at is not None:
        if getattr(result, "rowcount", 0):
            log.info("file %s confirmed key=%s", record.id, record.key)
        return record
    code, message = _REFUSED.get(status, ("file_not_confirmable", f"the file is {status.value}"))
    raise Conflict(
        message + (f" ({record.error})" if record.error else ""),
        code=code,
        details={"status": status.value},
    )

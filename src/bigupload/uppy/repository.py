"""SQL the Uppy routes need beyond the file registry's own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.files.models import FileRecord


async def by_key(session: AsyncSession, key: str) -> FileRecord | None:
    """The file stored under ``key`` (keys are unique and indexed)."""
    result = await session.execute(select(FileRecord).where(FileRecord.key == key))
    return result.scalar_one_or_none()

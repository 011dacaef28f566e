"""Dependencies every feature shares: the settings, a registry session and the store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload.config import Settings
from bigupload.db import session_scope
from bigupload.files.inserter import FileInserter
from bigupload.storage.base import Storage


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


async def get_file_inserter(request: Request) -> FileInserter:
    inserter: FileInserter = request.app.state.file_inserter
    return inserter


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed when the handler succeeds, rolled back otherwise.

    Function-scoped: the commit happens when the endpoint returns, before the answer is sent,
    so a client never holds an answer for work that was not committed.
    """
    async for session in session_scope(request.app.state.sessionmaker):
        yield session


#: :func:`get_session`'s unit of work as a context manager, for a route that opens it itself.
registry_session = contextlib.asynccontextmanager(session_scope)

SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
FileInserterDep = Annotated[FileInserter, Depends(get_file_inserter)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

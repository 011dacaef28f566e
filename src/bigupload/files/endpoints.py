"""``/api/v1/files``: find, inspect, download, re-label and delete files."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import RedirectResponse

from bigupload.auth.dependencies import PrincipalDep
from bigupload.dependencies import SessionDep, SettingsDep, StorageDep
from bigupload.errors import FILE_NOT_FOUND, ErrorBody, InvalidRequest
from bigupload.expiry.confirm import confirm_file
from bigupload.files import repository, service
from bigupload.files.schemas import DownloadLink, FileOut, FilePage, StatusChange
from bigupload.files.status import FileStatus
from bigupload.json_body import ApiRoute

router = APIRouter(prefix="/files", tags=["files"], route_class=ApiRoute)


@router.get("", response_model=FilePage, summary="List your files, newest first")
async def list_files(
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status_: Annotated[
        list[FileStatus] | None, Query(alias="status", description="Repeat to allow several.")
    ] = None,
    content_type: Annotated[
        str | None, Query(max_length=255, description="Exact type, or a range such as `video/*`.")
    ] = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    id_prefix: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=36,
            pattern=r"^[0-9a-fA-F-]+$",
            description="Only files whose id begins with these hex digits (dashes ignored), "
            "e.g. `2e327b7c`: how a short id is found.",
        ),
    ] = None,
) -> FilePage:
    prefix = id_prefix.replace("-", "").lower() if id_prefix is not None else None
    if prefix is not None and not 1 <= len(prefix) <= 32:
        raise InvalidRequest("id_prefix must hold 1 to 32 hex digits", code="invalid_id_prefix")
    for moment in (created_after, created_before):
        if moment is not None and moment.tzinfo is None:
            raise InvalidRequest("dates must carry a timezone, e.g. 2026-01-31T00:00:00Z")
    try:
        rows, next_cursor = await repository.list_owned(
            session,
            principal.owner,
            limit=limit,
            cursor=cursor,
            statuses=status_ or (),
            content_type=content_type.lower() if content_type else None,
            created_after=created_after,
            created_before=created_before,
            id_prefix=prefix,
        )
    except repository.InvalidCursor:
        raise InvalidRequest("the cursor is not one this API made", code="invalid_cursor") from None
    return FilePage(items=[FileOut.of(row) for row in rows], next_cursor=next_cursor)


@router.get("/{file_id}", response_model=FileOut, summary="One file", responses=FILE_NOT_FOUND)
async def get_file(file_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> FileOut:
    return FileOut.of(await service.get_file(session, principal.owner, file_id))


@router.get(
    "/{file_id}/download",
    response_model=DownloadLink,
    summary="A short-lived download link",
    responses={
        307: {"description": "With `redirect=true`: a redirect to the link."},
        404: {
            "model": ErrorBody,
            "description": "`file_not_found`, or `object_not_found`: the store holds no object "
            "it will serve for the file (the local store refuses a path that a symbolic link "
            "planted in it leads out of the store).",
        },
        409: {"model": ErrorBody, "description": "`file_not_ready`: not uploaded yet."},
    },
)
async def download_file(
    file_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    redirect: bool = False,
) -> DownloadLink | RedirectResponse:
    record = await service.get_file(session, principal.owner, file_id)
    link = service.download_link(record, storage, settings)
    if redirect:
        return RedirectResponse(link.url, status_code=status.HTTP_307_TEMPORARY_REDIRECT)
    return link


@router.put(
    "/{file_id}/status",
    response_model=FileOut,
    summary="Change a file's status (legal transitions only)",
    responses={
        **FILE_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "`invalid_transition`: not allowed from the file's status.",
        },
    },
)
async def put_status(
    file_id: uuid.UUID, change: StatusChange, principal: PrincipalDep, session: SessionDep
) -> FileOut:
    record = await service.get_file(session, principal.owner, file_id)
    record = await service.change_status(session, record, FileStatus(change.status), change.reason)
    return FileOut.of(record)


@router.post(
    "/{file_id}/confirm",
    response_model=FileOut,
    summary="Confirm that the application keeps a file",
    description=(
        "Marks a whole file (uploaded, processing or completed) as kept by the application. "
        "With `confirm_within_seconds` configured, files not confirmed within that time of "
        "their upload expire and their bytes are removed. Idempotent: the first confirmation's "
        "time is kept in `confirmed_at`."
    ),
    responses={
        **FILE_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "The file is not whole: `file_not_uploaded` (still pending), "
            "`file_failed`, `file_expired` or `file_aborted`.",
        },
    },
)
async def confirm(file_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> FileOut:
    record = await service.get_file(session, principal.owner, file_id)
    return FileOut.of(await confirm_file(session, record))


@router.delete(
    "/{file_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a file: its stored object and its record",
    responses=FILE_NOT_FOUND,
)
async def delete_file(
    file_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, storage: StorageDep
) -> Response:
    record = await service.get_file(session, principal.owner, file_id)
    await service.delete_file(session, record, storage)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

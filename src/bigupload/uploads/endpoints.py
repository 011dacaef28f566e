"""``/api/v1/uploads``: start an upload, then confirm it once the bytes are in the store."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from bigupload.auth.dependencies import PrincipalDep
from bigupload.dependencies import FileInserterDep, SessionDep, SettingsDep, StorageDep
from bigupload.errors import ErrorBody
from bigupload.files import service as files
from bigupload.files.schemas import FileOut
from bigupload.uploads import service
from bigupload.uploads.schemas import CreateUpload, UploadTicket

router = APIRouter(prefix="/uploads", tags=["uploads"])


@router.post(
    "",
    response_model=UploadTicket,
    status_code=status.HTTP_201_CREATED,
    summary="Start an upload: record the file and sign where to send it",
    responses={
        413: {"model": ErrorBody, "description": "Larger than the configured limits."},
        415: {"model": ErrorBody, "description": "Content type not in the allow-list."},
        422: {
            "model": ErrorBody,
            "description": "Invalid filename, content type, size, checksum or metadata.",
        },
    },
)
async def create_upload(
    body: CreateUpload,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    inserter: FileInserterDep,
    response: Response,
) -> UploadTicket:
    ticket = await service.create_upload(
        session, inserter, principal.owner, body, storage, settings
    )
    response.headers["Location"] = f"/api/v1/files/{ticket.id}"
    return ticket


@router.post(
    "/{file_id}/complete",
    response_model=FileOut,
    summary="Confirm an upload against the store (idempotent)",
    responses={
        409: {
            "model": ErrorBody,
            "description": "Nothing uploaded yet, or the upload failed or expired.",
        },
        422: {
            "model": ErrorBody,
            "description": "The stored object's size or checksum differs from the declared.",
        },
        503: {
            "model": ErrorBody,
            "description": "The store is unreachable; the file is unchanged.",
        },
    },
)
async def complete_upload(
    file_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, storage: StorageDep
) -> FileOut:
    record = await files.get_file(session, principal.owner, file_id)
    return FileOut.of(await service.complete_upload(session, record, storage))

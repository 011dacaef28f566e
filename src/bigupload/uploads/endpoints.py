"""``/api/v1/uploads``: start an upload, then confirm it once the bytes are in the store."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import TypeAdapter

from bigupload.auth.dependencies import PrincipalDep
from bigupload.dependencies import SessionDep, SettingsDep, StorageDep, registry_session
from bigupload.errors import FILE_NOT_FOUND, STORE_FULL_RESPONSE, ErrorBody
from bigupload.files import service as files
from bigupload.files.schemas import FileOut
from bigupload.json_body import ApiRoute
from bigupload.uploads import multipart, service
from bigupload.uploads.schemas import (
    AbortedUpload,
    CompleteUpload,
    CreateUpload,
    MultipartUploadTicket,
    PartUrls,
    SignParts,
    SingleUploadTicket,
    UploadParts,
    UploadTicket,
)

router = APIRouter(prefix="/uploads", tags=["uploads"], route_class=ApiRoute)

#: How ``POST /uploads`` answers a ticket: as FastAPI would through its ``response_model``.
_TICKET: TypeAdapter[SingleUploadTicket | MultipartUploadTicket] = TypeAdapter(UploadTicket)


@router.post(
    "",
    response_model=UploadTicket,
    description="Answers a single-PUT ticket, or a multipart ticket (above the multipart "
    "threshold, or when asked with `multipart: true`): then sign part URLs with "
    "`POST /uploads/{id}/parts`, PUT each part, and complete.",
    status_code=status.HTTP_201_CREATED,
    summary="Start an upload: record the file and sign where to send it",
    responses={
        409: {
            "model": ErrorBody,
            "description": "`idempotency_key_spent`: the upload this `Idempotency-Key` began "
            "is no longer pending (`details` names the file and its status).",
        },
        413: {"model": ErrorBody, "description": "Larger than the configured limits."},
        415: {"model": ErrorBody, "description": "Content type not in the allow-list."},
        422: {
            "model": ErrorBody,
            "description": "Invalid filename, content type, size, checksum, metadata or "
            "`Idempotency-Key`; or `idempotency_key_mismatch`: the key began an upload with "
            "other parameters.",
        },
        **STORE_FULL_RESPONSE,  # beginning a multipart upload writes to the local store
    },
)
async def create_upload(
    request: Request,
    body: CreateUpload,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Makes the create safe to repeat: the same request under the same key "
            "(by the same owner) answers the upload the first one began, URLs signed anew, "
            "instead of beginning another. Printable ASCII, at most 255 characters; a random "
            "UUID per upload is a good key.",
        ),
    ] = None,
) -> Response:
    # The hot path of the service: the app's objects read straight from its state, a session
    # opened here only to look up an Idempotency-Key (committed before the answer, as the
    # session dependency's), and the ticket serialized once (FastAPI would validate the
    # ticket it was just built from).
    state = request.app.state
    create = functools.partial(
        service.create_upload,
        inserter=state.file_inserter,
        owner=principal.owner,
        request=body,
        storage=state.storage,
        settings=state.settings,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is None:
        ticket = await create(None)
    else:
        async with registry_session(state.sessionmaker) as session:
            ticket = await create(session)
    response = Response(
        _TICKET.dump_json(ticket),
        status_code=status.HTTP_201_CREATED,
        media_type="application/json",
    )
    response.headers["Location"] = f"/api/v1/files/{ticket.id}"
    return response


@router.post(
    "/{file_id}/complete",
    response_model=FileOut,
    summary="Confirm an upload against the store (idempotent)",
    responses={
        **FILE_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "Nothing (or not every part) uploaded yet, or the upload failed, "
            "expired or was aborted.",
        },
        422: {
            "model": ErrorBody,
            "description": "The stored object's size or checksum differs from the declared; "
            "or stored parts differ in size or ETag from what they should be.",
        },
        503: {
            "model": ErrorBody,
            "description": "The store is unreachable; the file is unchanged.",
        },
        404: {
            "model": ErrorBody,
            "description": "`file_not_found`, or `object_not_found`: the local store refuses "
            "the object's path (a symbolic link planted in it); the file stays pending.",
        },
        **STORE_FULL_RESPONSE,  # joining the parts writes the object
    },
)
async def complete_upload(
    file_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    body: CompleteUpload | None = None,
) -> FileOut:
    record = await files.get_file(session, principal.owner, file_id)
    claimed = body.parts if body else None
    completed = await service.complete_upload(session, record, storage, claimed, settings=settings)
    return FileOut.of(completed)


@router.post(
    "/{file_id}/parts",
    response_model=PartUrls,
    summary="Sign upload URLs for parts of a multipart upload",
    description="Sign late and in batches (at most 1,000 parts per call): URLs expire. "
    "Each URL stores exactly the part's `size` bytes; send its `headers` exactly.",
    responses={
        **FILE_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "Not a multipart upload, or no longer in progress.",
        },
        422: {
            "model": ErrorBody,
            "description": "Part numbers outside the upload, or a checksum missing.",
        },
    },
)
async def sign_parts(
    file_id: uuid.UUID,
    body: SignParts,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> PartUrls:
    record = await files.get_file(session, principal.owner, file_id)
    return multipart.sign_parts(record, body, storage, settings)


@router.get(
    "/{file_id}/parts",
    response_model=UploadParts,
    summary="The parts the store holds for an upload in progress (to resume it)",
    responses={
        **FILE_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "Not a multipart upload, no longer in progress, or its parts are "
            "no longer in the store.",
        },
        503: {"model": ErrorBody, "description": "The store is unreachable."},
    },
)
async def list_parts(
    file_id: uuid.UUID, principal: PrincipalDep, session: SessionDep, storage: StorageDep
) -> UploadParts:
    record = await files.get_file(session, principal.owner, file_id)
    await session.commit()  # hold no registry lock while the store is asked
    return await multipart.list_parts(record, storage)


@router.delete(
    "/{file_id}",
    response_model=AbortedUpload,
    summary="Abort an upload in progress and free what the store holds for it (idempotent)",
    description="The file becomes `aborted` at once (a racing complete then answers 409 "
    "`upload_aborted`). 200 with `cleanup_pending: false`: the store's parts are freed. 202 "
    "with `cleanup_pending: true`: the store could not be reached; a background job frees "
    "them once it can.",
    responses={
        **FILE_NOT_FOUND,
        202: {
            "model": AbortedUpload,
            "description": "Aborted; the store is unreachable and its clean-up is pending.",
        },
        409: {"model": ErrorBody, "description": "The upload is complete, failed or expired."},
    },
)
async def abort_upload(
    file_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    response: Response,
) -> AbortedUpload:
    record = await files.get_file(session, principal.owner, file_id)
    aborted = await multipart.abort_upload(session, record, storage, settings)
    if aborted.cleanup_pending:
        response.status_code = status.HTTP_202_ACCEPTED
    return AbortedUpload(
        **FileOut.of(aborted.record).model_dump(), cleanup_pending=aborted.cleanup_pending
    )

"""``/s3``: the routes Uppy's ``@uppy/aws-s3`` plugin calls (Uppy Companion's S3 contract).

Both client generations: 5.x (``endpoint`` + ``headers``: the API key as a bearer) and 6.x
(``companionEndpoint``: the web page's session cookie). Errors keep the API's shape and also
carry ``message`` at the top, which is what Uppy shows.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from bigupload.auth.dependencies import PrincipalDep
from bigupload.dependencies import FileInserterDep, SessionDep, SettingsDep, StorageDep
from bigupload.json_body import ApiRoute
from bigupload.uploads import multipart
from bigupload.uppy import service
from bigupload.uppy.schemas import (
    Aborted,
    Completed,
    CompleteParts,
    MultipartStarted,
    SignedBatch,
    SignedPart,
    UploadParams,
    UppyErrorBody,
    UppyFile,
    UppyPart,
)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": UppyErrorBody, "description": "Not signed in: no API key or session."},
    422: {"model": UppyErrorBody, "description": "Invalid input; `details` lists the fields."},
    429: {"model": UppyErrorBody, "description": "Rate limited; see `Retry-After`."},
    500: {"model": UppyErrorBody, "description": "Unexpected; the message names the request id."},
    503: {"model": UppyErrorBody, "description": "The store is unreachable; nothing changed."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {
        "model": UppyErrorBody,
        "description": "`upload_not_found`: no upload of yours with this id under this key.",
    },
    409: {
        "model": UppyErrorBody,
        "description": "The upload is no longer in progress (`upload_completed`, "
        "`upload_failed`, `upload_aborted`, `upload_expired`) or no longer in the store.",
    },
}
_FULL: dict[int | str, dict[str, Any]] = {
    507: {
        "model": UppyErrorBody,
        "description": "`insufficient_storage`: the store is full; nothing changed. "
        "See `Retry-After`.",
    },
}
_PART_NUMBERS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": UppyErrorBody,
        "description": "`invalid_part_number` (not 1 to 10,000), `too_many_parts`.",
    },
    413: {
        "model": UppyErrorBody,
        "description": "`file_too_large`: a file with this part would be over the size limit.",
    },
}
_NEW_FILE: dict[int | str, dict[str, Any]] = {
    415: {"model": UppyErrorBody, "description": "Content type not in the allow-list."},
}

router = APIRouter(prefix="/s3", tags=["uppy"], responses=_ERRORS, route_class=ApiRoute)

UploadId = Annotated[str, Path(alias="uploadId", max_length=1024)]
UploadKey = Annotated[str, Query(min_length=1, max_length=1024, description="The upload's key.")]


def _query_file(request: Request) -> UppyFile:
    """``filename``, ``type`` and ``metadata[<name>]`` from the query string."""
    fields: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in ("filename", "type"):
            fields[name] = value
        elif name.startswith("metadata[") and name.endswith("]"):
            metadata[name[len("metadata[") : -1]] = value
    try:
        return UppyFile.model_validate({**fields, "metadata": metadata})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


@router.get(
    "/params",
    response_model=UploadParams,
    summary="Record a file and sign a form POST that sends it to the store",
    description="Query: `filename`, `type` and the file's metadata as `metadata[<name>]=value` "
    "(at most 32 entries, 8 KiB). POST `fields` and then the file (field `file`) to `url` as "
    "`multipart/form-data` within `expires` seconds. The file is confirmed once it is in the "
    "store; there is nothing to complete.",
    responses=_NEW_FILE,
)
async def upload_params(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    inserter: FileInserterDep,
    filename: Annotated[str | None, Query(max_length=1024)] = None,
    type_: Annotated[str | None, Query(alias="type", max_length=1024)] = None,
) -> UploadParams:
    file = _query_file(request)
    return await service.create_post(session, inserter, principal.owner, file, storage, settings)


@router.post(
    "/multipart",
    response_model=MultipartStarted,
    summary="Record a file and begin its multipart upload",
    responses={**_NEW_FILE, **_FULL},
)
async def create_multipart(
    body: UppyFile,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    inserter: FileInserterDep,
) -> MultipartStarted:
    return await service.create_multipart(
        session, inserter, principal.owner, body, storage, settings
    )


@router.get(
    "/multipart/{uploadId}",
    response_model=list[UppyPart],
    response_model_exclude_none=True,
    summary="The parts the store holds for an upload (to resume it)",
    description="Every part the store lists, in part number order, each with its size and "
    "ETag (and `LastModified`, when the store gives it), as Companion answers. A client "
    "resuming skips these parts and names them when it completes.",
    responses=_NOT_FOUND,
)
async def list_parts(
    upload_id: UploadId,
    key: UploadKey,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
) -> list[UppyPart]:
    record = await service.find_upload(session, principal.owner, upload_id, key)
    await session.commit()  # hold no registry lock while the store is asked
    return await service.list_parts(record, storage)


@router.get(
    "/multipart/{uploadId}/batch",
    response_model=SignedBatch,
    summary="Sign upload URLs for several parts",
    responses={**_NOT_FOUND, **_PART_NUMBERS},
)
async def sign_batch(
    upload_id: UploadId,
    key: UploadKey,
    part_numbers: Annotated[
        str, Query(alias="partNumbers", max_length=10_000, description="e.g. `1,2,3`")
    ],
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> SignedBatch:
    numbers = service.part_numbers(part_numbers)
    record = await service.find_upload(session, principal.owner, upload_id, key)
    return service.sign_batch(record, numbers, storage, settings)


@router.get(
    "/multipart/{uploadId}/{partNumber}",
    response_model=SignedPart,
    response_model_exclude_none=True,
    summary="Sign the upload URL of one part",
    responses={**_NOT_FOUND, **_PART_NUMBERS},
)
async def sign_part(
    upload_id: UploadId,
    part_number: Annotated[str, Path(alias="partNumber")],
    key: UploadKey,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> SignedPart:
    number = service.part_number(part_number)
    record = await service.find_upload(session, principal.owner, upload_id, key)
    return service.sign_part(record, number, storage, settings)


@router.post(
    "/multipart/{uploadId}/complete",
    response_model=Completed,
    summary="Complete a multipart upload (idempotent)",
    description="ETags quoted or not. The parts must be numbered 1 to N, every part but the "
    "last of one size of at least 5 MiB. Parts over the file size limit in all fail the "
    "upload (413 `file_too_large`): the file becomes `failed` and its parts are freed.",
    responses={
        **_NOT_FOUND,
        413: {
            "model": UppyErrorBody,
            "description": "`file_too_large`: the upload is failed and its parts freed.",
        },
        **_FULL,
    },
)
async def complete(
    upload_id: UploadId,
    key: UploadKey,
    body: CompleteParts,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> Completed:
    record = await service.find_upload(session, principal.owner, upload_id, key)
    return await service.complete(session, record, storage, body.parts, settings)


@router.delete(
    "/multipart/{uploadId}",
    response_model=Aborted,
    response_model_exclude_none=True,
    summary="Abort a multipart upload and free its parts (idempotent)",
    responses={
        **_NOT_FOUND,
        202: {
            "model": Aborted,
            "description": '`{"cleanupPending": true}`: aborted; the store is unreachable '
            "and a background job frees the parts once it can.",
        },
    },
)
async def abort(
    upload_id: UploadId,
    key: UploadKey,
    principal: PrincipalDep,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    response: Response,
) -> Aborted:
    record = await service.find_upload(session, principal.owner, upload_id, key)
    aborted = await multipart.abort_upload(session, record, storage, settings)
    if aborted.cleanup_pending:
        response.status_code = 202
        return Aborted(cleanup_pending=True)
    return Aborted()

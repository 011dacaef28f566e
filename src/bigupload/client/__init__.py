"""A Python client for bigupload: parallel, resumable, retried uploads through presigned URLs.

It speaks only the REST API (over httpx) and imports nothing of the server.
"""

from bigupload.client.client import Client
from bigupload.client.errors import (
    AmbiguousIdError,
    AuthError,
    BigUploadError,
    ConflictError,
    FileChangedError,
    IntegrityError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransferError,
    UploadInProgressError,
)
from bigupload.client.models import DownloadLink, FilePage, RemoteFile
from bigupload.client.progress import Progress, ProgressCallback
from bigupload.client.retry import RetryPolicy

__all__ = [
    "AmbiguousIdError",
    "AuthError",
    "BigUploadError",
    "Client",
    "ConflictError",
    "DownloadLink",
    "FileChangedError",
    "FilePage",
    "IntegrityError",
    "InvalidRequestError",
    "NotFoundError",
    "Progress",
    "ProgressCallback",
    "RateLimitedError",
    "RemoteFile",
    "RetryPolicy",
    "ServerError",
    "TransferError",
    "UploadInProgressError",
]

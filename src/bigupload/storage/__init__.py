"""The storage port (``base``) and its adapters: ``local`` (a directory) and ``s3``."""

from bigupload.storage.base import (
    ObjectNotFound,
    PresignedPost,
    PresignedRequest,
    Storage,
    StorageError,
    StorageUnreachable,
    StoredObject,
)

__all__ = [
    "ObjectNotFound",
    "PresignedPost",
    "PresignedRequest",
    "Storage",
    "StorageError",
    "StorageUnreachable",
    "StoredObject",
]

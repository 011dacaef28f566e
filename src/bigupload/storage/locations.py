"""Where an object lives in the store, as the store itself names it.

S3 answers a completed multipart upload (and a browser form POST) with the object's URL as its
``Location``: ``https://<bucket>.s3.<region>.amazonaws.com/<key>``, or ``<endpoint>/<bucket>/<key>``
on a path-style store; the local store's is ``<PUBLIC_URL>/store/<key>``. It names the object,
it does not grant access: fetching it needs the store's credentials (a private bucket answers
403), so clients download through ``GET /api/v1/files/{id}/download``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from bigupload.storage.base import Storage

_ANY_TYPE = "application/octet-stream"
_BRIEFLY = 60


def object_url(storage: Storage, key: str) -> str:
    """The unsigned URL of the object under ``key``.

    It is a download URL without its query: every adapter signs its URLs in the query string
    (S3's ``X-Amz-*`` parameters, the local store's ``token``), and the rest is the object's
    address as the store routes it (endpoint, bucket addressing style, the key's encoding).
    Signing is local work; nothing is asked of the store.
    """
    signed = storage.presign_get(
        key, filename="object", content_type=_ANY_TYPE, expires_in=_BRIEFLY
    )
    scheme, netloc, path, _, _ = urlsplit(signed.url)
    return urlunsplit((scheme, netloc, path, "", ""))

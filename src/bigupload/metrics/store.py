"""Store calls at the storage port: each adapter class is decorated with :func:`metered`, so
every call through the port is counted by operation and outcome and timed, and every signing
is timed (signing is local CPU work, not a call to the store). A call an adapter makes to
itself (``stat`` inside ``complete_multipart``) is part of the outer call, not another."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from bigupload.metrics.catalog import PART_URLS, SIGNING_DURATION, STORE_CALLS, STORE_DURATION
from bigupload.storage.base import (
    ObjectNotFound,
    PartsRejected,
    StorageFull,
    StorageUnreachable,
    UploadNotFound,
)

#: The port's coroutines: each a call to the store.
CALLS = (
    "stat",
    "sha256",
    "read_range",
    "delete",
    "create_multipart",
    "list_parts",
    "complete_multipart",
    "abort_multipart",
    "list_multipart_uploads",
    "check",
)
#: The port's signing methods, and the kind they are timed under.
SIGNERS = {
    "presign_put": "put",
    "presign_post": "post",
    "presign_get": "get",
    "presign_parts": "parts",
}

_inside: ContextVar[bool] = ContextVar("bigupload_store_call", default=False)
T = TypeVar("T", bound=type)


def metered(cls: T) -> T:
    for name in CALLS:
        setattr(cls, name, _call(name, getattr(cls, name)))
    for name, kind in SIGNERS.items():
        setattr(cls, name, _signer(kind, getattr(cls, name)))
    return cls


def outcome(exc: BaseException) -> str:
    if isinstance(exc, StorageUnreachable):
        return "unreachable"
    if isinstance(exc, StorageFull):
        return "full"
    if isinstance(exc, ObjectNotFound | UploadNotFound):
        return "not_found"
    if isinstance(exc, PartsRejected):
        return "rejected"
    return "error"


def _call(name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    duration = STORE_DURATION.labels(name)
    ok = STORE_CALLS.labels(name, "ok")

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if _inside.get():
            return await method(*args, **kwargs)
        token = _inside.set(True)
        started = time.perf_counter()
        try:
            result = await method(*args, **kwargs)
        except Exception as exc:
            STORE_CALLS.labels(name, outcome(exc)).inc()
            raise
        finally:
            duration.observe(time.perf_counter() - started)
            _inside.reset(token)
        ok.inc()
        return result

    return call


def _signer(kind: str, method: Callable[..., Any]) -> Callable[..., Any]:
    duration = SIGNING_DURATION.labels(kind)

    @functools.wraps(method)
    def sign(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = method(*args, **kwargs)
        duration.observe(time.perf_counter() - started)
        if kind == "parts":
            PART_URLS.inc(len(result))
        return result

    return sign

"""Store failures as the API reports them: unreachable is 503, anything else 502."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bigupload.errors import StorageFailure, StorageUnavailable
from bigupload.storage.base import StorageError, StorageUnreachable


@contextmanager
def store_errors(doing: str) -> Iterator[None]:
    """Report a store failure while ``doing`` (e.g. "list the parts") in the API's terms."""
    try:
        yield
    except StorageUnreachable as exc:
        raise StorageUnavailable() from exc
    except StorageError as exc:
        raise StorageFailure(f"the store could not {doing}: {exc}") from exc

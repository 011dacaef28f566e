"""Recently verified API keys and tokens, so the hot path skips a registry read.

Only keys found valid are kept, for ``ttl`` seconds by bigupload's clock: a key revoked in
another process stops working within ``ttl``; one revoked through this process, at once.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from bigupload import clock

T = TypeVar("T")


class KeyCache(Generic[T]):
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = timedelta(seconds=ttl)
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[T, datetime]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > timedelta(0)

    def get(self, key_hash: str) -> T | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        value, expires = entry
        if expires <= clock.now():
            del self._entries[key_hash]
            return None
        return value

    def put(self, key_hash: str, value: T, *, until: datetime | None = None) -> None:
        """Remember ``value`` for ``ttl``, and never past ``until`` (a token's expiry)."""
        if not self.enabled:
            return
        expires = clock.now() + self.ttl
        if until is not None:
            expires = min(expires, until)
        self._entries[key_hash] = (value, expires)
        self._entries.move_to_end(key_hash)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def discard(self, key_hash: str) -> None:
        """Forget one entry (a session signed out here stops working at once)."""
        self._entries.pop(key_hash, None)

    def clear(self) -> None:
        self._entries.clear()

"""Per-owner request limits, counted in memory or in a shared store (Redis) for replicas.

Both count with the sliding window counter of the ``limits`` library. In memory (the default),
the counts are :class:`MemoryWindows`': the same arithmetic as ``limits``' memory storage, on a
dictionary, without its per-call locks, awaits, key strings and expiry task (a request paid
about 130,000 instructions for its two limits there).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

from limits import RateLimitItem, WindowStats, parse_many
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from bigupload.errors import AppError

log = logging.getLogger("bigupload.rate_limit")


class RateLimited(AppError):
    status = 429
    code = "rate_limited"


def parse_limits(spec: str | None) -> list[RateLimitItem]:
    """``"100/second;3000/minute"`` as limit items; ``None``, ``""`` or ``"off"`` for none."""
    if not spec or spec.strip().lower() == "off":
        return []
    return list(parse_many(spec))


@dataclass(slots=True)
class _Counts:
    window: int  # the current window's number (the time over the limit's expiry)
    current: int
    previous: int  # the count of the window before it


@dataclass(slots=True)
class MemoryWindows:
    """One limit's sliding window counters in this process, an owner's two windows in one
    entry: the decisions and window stats of ``limits``' ``SlidingWindowCounterRateLimiter``
    on its memory storage."""

    item: RateLimitItem
    counts: dict[str, _Counts] = field(default_factory=dict)

    def _counts(self, owner: str, now: float) -> _Counts:
        expiry = self.item.get_expiry()
        window = int(now / expiry)
        counts = self.counts.get(owner)
        if counts is None:
            if len(self.counts) >= 10_000:  # forget owners idle for two windows and more
                self.counts = {o: c for o, c in self.counts.items() if c.window >= window - 1}
            counts = self.counts[owner] = _Counts(window, 0, 0)
        elif counts.window != window:
            counts.previous = counts.current if counts.window == window - 1 else 0
            counts.current = 0
            counts.window = window
        return counts

    def _previous_ttl(self, counts: _Counts, now: float) -> float:
        expiry = self.item.get_expiry()
        return (1 - (((now - expiry) / expiry) % 1)) * expiry if counts.previous else 0.0

    def hit(self, owner: str) -> bool:
        now = time.time()
        counts = self._counts(owner, now)
        expiry = self.item.get_expiry()
        weighted = counts.previous * self._previous_ttl(counts, now) / expiry + counts.current
        if math.floor(weighted) + 1 > self.item.amount:
            return False
        counts.current += 1
        return True

    def window_stats(self, owner: str) -> WindowStats:
        now = time.time()
        counts = self._counts(owner, now)
        expiry = self.item.get_expiry()
        previous_ttl = self._previous_ttl(counts, now)
        weighted = counts.previous * previous_ttl / expiry + counts.current
        remaining = max(0, self.item.amount - math.floor(weighted))
        if not (counts.previous or counts.current):
            return WindowStats(now, remaining)
        previous_reset_in = current_reset_in = math.inf
        if counts.previous:
            previous_reset_in = previous_ttl % (expiry / counts.previous)
        if counts.current:
            current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
            current_reset_in = current_ttl % expiry
        return WindowStats(now + min(previous_reset_in, current_reset_in), remaining)


class RateLimiter:
    def __init__(self, spec: str | None, storage_uri: str = "memory://") -> None:
        self.items = parse_limits(spec)
        #: In memory, the counters are this process's; else the shared store's strategy.
        self.windows = [MemoryWindows(item) for item in self.items]
        self.strategy: SlidingWindowCounterRateLimiter | None = None
        if storage_uri.removeprefix("async+") != "memory://":
            uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
            self.strategy = SlidingWindowCounterRateLimiter(storage_from_string(uri))

    async def hit(self, owner: str) -> None:
        """Count one request of ``owner``; raise :class:`RateLimited` past a limit.

        If the counters' store fails, requests pass (and the failure is logged): an outage
        of the limiter must not become an outage of the service.
        """
        if self.strategy is None:
            for windows in self.windows:
                if not windows.hit(owner):
                    raise _limited(windows.item, windows.window_stats(owner))
            return
        for item in self.items:
            try:
                allowed = await self.strategy.hit(item, "owner", owner)
                if allowed:
                    continue
                stats = await self.strategy.get_window_stats(item, "owner", owner)
            except Exception as exc:
                log.warning("rate limit store failed, letting the request through: %s", exc)
                return
            raise _limited(item, stats)


def _limited(item: RateLimitItem, stats: WindowStats) -> RateLimited:
    retry_after = max(1, math.ceil(stats.reset_time - time.time()))
    return RateLimited(
        f"too many requests: the limit is {item}; retry in {retry_after} s",
        details={"limit": str(item), "retry_after": retry_after},
        headers={"Retry-After": str(retry_after)},
    )

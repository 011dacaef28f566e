"""Per-owner request limits, counted in memory or in a shared store (Redis) for replicas."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse_many
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


class RateLimiter:
    def __init__(self, spec: str | None, storage_uri: str = "memory://") -> None:
        self.items = parse_limits(spec)
        uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
        self.strategy = SlidingWindowCounterRateLimiter(storage_from_string(uri))

    async def hit(self, owner: str) -> None:
        """Count one request of ``owner``; raise :class:`RateLimited` past a limit.

        If the counters' store fails, requests pass (and the failure is logged): an outage
        of the limiter must not become an outage of the service.
        """
        for item in self.items:
            try:
                allowed = await self.strategy.hit(item, "owner", owner)
                if allowed:
                    continue
                stats = await self.strategy.get_window_stats(item, "owner", owner)
            except Exception as exc:
                log.warning("rate limit store failed, letting the request through: %s", exc)
                return
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(
                f"too many requests: the limit is {item}; retry in {retry_after} s",
                details={"limit": str(item), "retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )

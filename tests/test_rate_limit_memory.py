"""The in-memory limiter decides as ``limits``' sliding window counter on its memory storage."""

from __future__ import annotations

import random
import time

import pytest
from limits import parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from bigupload.rate_limit import MemoryWindows, RateLimited, RateLimiter


@pytest.mark.parametrize("spec", ["5/second", "7/minute", "1/second", "3/10 seconds"])
async def test_the_same_decisions_and_window_stats_as_limits(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = parse(spec)
    reference = SlidingWindowCounterRateLimiter(storage_from_string("async+memory://"))
    ours = MemoryWindows(item)
    clock = [1_700_000_000.25]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    steps = random.Random(spec)
    refused = 0
    for _ in range(600):
        # Bursts and pauses, across many windows (and sometimes over two of them at once).
        clock[0] += steps.choice([0.0, 0.01, 0.05, 0.3]) * item.get_expiry() * steps.random()
        if steps.random() < 0.02:
            clock[0] += 2.5 * item.get_expiry()
        owner = steps.choice(["alice", "bob"])
        expected = await reference.hit(item, "owner", owner)
        assert ours.hit(owner) == expected, clock[0]
        if not expected:
            refused += 1
            stats = await reference.get_window_stats(item, "owner", owner)
            assert ours.window_stats(owner) == stats, clock[0]
    assert refused > 20  # the sequence did reach the limit, often


async def test_a_refusal_names_the_limit_and_when_to_retry() -> None:
    limiter = RateLimiter("2/minute")
    assert limiter.strategy is None  # the default store: counted in memory
    await limiter.hit("alice")
    await limiter.hit("alice")
    with pytest.raises(RateLimited) as refused:
        await limiter.hit("alice")
    assert refused.value.details["limit"] == "2 per 1 minute"
    assert 1 <= refused.value.details["retry_after"] <= 60
    await limiter.hit("bob")

"""Rate limits counted in Redis, as the compose stack counts them: two limiters (two replicas)
on one Redis server share one owner's budget. Debian's redis-server, started for the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bigupload.rate_limit import RateLimited, RateLimiter
from tests.support.redis import RedisServer


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def test_two_limiters_on_one_redis_share_the_owners_budget(redis: RedisServer) -> None:
    first = RateLimiter("3/minute", redis.url)
    second = RateLimiter("3/minute", redis.url)
    await first.hit("alice")
    await second.hit("alice")
    await first.hit("alice")
    with pytest.raises(RateLimited) as refused:
        await second.hit("alice")
    assert refused.value.headers is not None and "Retry-After" in refused.value.headers
    await second.hit("bob")  # another owner's budget is untouched
    assert redis.dbsize() > 0

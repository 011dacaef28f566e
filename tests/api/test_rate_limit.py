"""Per-owner rate limits: a clear 429 with Retry-After, other owners unaffected."""

from __future__ import annotations

from typing import Any

import pytest

from bigupload.config import ConfigError, load_settings
from tests.conftest import Caller


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit": "3/minute"}


async def test_past_the_limit_requests_are_429_with_retry_after(alice: Caller) -> None:
    for _ in range(3):
        assert (await alice.get("/api/v1/files")).status_code == 200
    response = await alice.get("/api/v1/files")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"]["limit"] == "3 per 1 minute"
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert error["details"]["retry_after"] == retry_after


async def test_a_limited_create_records_nothing(alice: Caller) -> None:
    body = {"filename": "a.mp4", "content_type": "video/mp4", "size": 10}
    for _ in range(3):
        assert (await alice.post("/api/v1/uploads", json=body)).status_code == 201
    assert (await alice.post("/api/v1/uploads", json=body)).status_code == 429


async def test_limits_are_per_owner(alice: Caller, bob: Caller) -> None:
    for _ in range(3):
        await alice.get("/api/v1/files")
    assert (await alice.get("/api/v1/files")).status_code == 429
    assert (await bob.get("/api/v1/files")).status_code == 200


class TestOff:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"rate_limit": "off"}

    async def test_off_means_no_limit(self, alice: Caller) -> None:
        statuses = {(await alice.get("/api/v1/files")).status_code for _ in range(20)}
        assert statuses == {200}


@pytest.mark.parametrize("spec", ["lots", "5/fortnight", "-1/second"])
def test_an_invalid_limit_is_a_configuration_error(spec: str) -> None:
    with pytest.raises(ConfigError, match=r"BIGUPLOAD_RATE_LIMIT: .* is not a rate limit"):
        load_settings(rate_limit=spec)


def test_an_unusable_counter_store_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="BIGUPLOAD_RATE_LIMIT_STORAGE: 'nosuch://x' cannot"):
        load_settings(rate_limit_storage="nosuch://x")


async def test_when_the_counter_store_fails_requests_pass() -> None:
    from bigupload.rate_limit import RateLimiter

    class BrokenStrategy:
        async def hit(self, *args: object) -> bool:
            raise ConnectionError("redis is down")

    limiter = RateLimiter("1/minute")
    limiter.strategy = BrokenStrategy()  # type: ignore[assignment]
    for _ in range(5):
        await limiter.hit("alice")  # no RateLimited raised

"""``GET /metrics`` in one process: the token, off, what is not counted, bounded labels.

Counters are process-wide, so these tests compare two scrapes (the exact values of a whole
server's flow are asserted against real processes in test_served.py)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from bigupload.metrics import catalog
from bigupload.storage.base import Storage
from bigupload.storage.s3 import S3Storage, build_client
from tests.api.helpers import start
from tests.conftest import Caller
from tests.storage_events.helpers import minio_body
from tests.support.net import free_port
from tests.support.scrape import Scrape

TOKEN = "scrape-token-0123456789"
EVENTS_TOKEN = "storage-events-" + "t" * 32


async def scrape(http: httpx.AsyncClient, **headers: str) -> Scrape:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape.parse(response.text)


async def test_open_by_default_in_the_text_format(http: httpx.AsyncClient) -> None:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert "# TYPE bigupload_http_requests_total counter" in response.text


async def test_a_file_route_is_labelled_with_its_template(
    alice: Caller, http: httpx.AsyncClient
) -> None:
    before = await scrape(http)
    file_id = uuid.uuid4()
    assert (await alice.get(f"/api/v1/files/{file_id}")).status_code == 404
    after = await scrape(http)
    labels = {"route": "/api/v1/files/{file_id}", "method": "GET", "status": "404"}
    name = "bigupload_http_requests_total"
    assert after.value(name, **labels) - before.value(name, **labels) == 1
    duration = "bigupload_http_request_duration_seconds_count"
    route = {"route": "/api/v1/files/{file_id}", "method": "GET"}
    assert after.value(duration, **route) - before.value(duration, **route) == 1
    assert not any(str(file_id) in str(have) for _, have, _ in after.samples)


async def test_unknown_paths_and_methods_are_bounded(http: httpx.AsyncClient) -> None:
    before = await scrape(http)
    await http.get(f"/no/such/{uuid.uuid4()}")
    await http.request("BREW", "/api/v1/files")
    after = await scrape(http)
    name = "bigupload_http_requests_total"
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    assert after.value(name, **unmatched) - before.value(name, **unmatched) == 1
    assert after.value(name, method="other") - before.value(name, method="other") == 1
    assert all(
        route.startswith("/") or route == "unmatched" for route in after.labels(name, "route")
    )
    assert not any(route.startswith("/no/such") for route in after.labels(name, "route"))


async def test_a_scrape_is_not_counted(http: httpx.AsyncClient) -> None:
    await scrape(http)
    after = await scrape(http)
    assert "/metrics" not in after.labels("bigupload_http_requests_total", "route")


async def test_auth_failures_are_counted_by_reason(http: httpx.AsyncClient) -> None:
    before = await scrape(http)
    await http.get("/api/v1/files")
    await http.get("/api/v1/files", headers={"Authorization": "Bearer bu_nosuchkey"})
    after = await scrape(http)
    name = "bigupload_auth_failures_total"
    for reason in ("unauthenticated", "invalid_api_key"):
        assert after.value(name, reason=reason) - before.value(name, reason=reason) == 1


async def test_the_job_backlog_is_read_at_scrape_time(http: httpx.AsyncClient) -> None:
    found = await scrape(http)
    kinds = found.labels("bigupload_jobs_due", "kind")
    assert {"process", "webhook", "purge"} <= kinds
    assert found.value("bigupload_jobs_due") == 0
    assert found.value("bigupload_jobs_oldest_due_age_seconds") == 0


def test_not_an_api_route_in_openapi(app: Any) -> None:
    assert "/metrics" not in app.openapi()["paths"]


class TestToken:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"metrics_token": TOKEN}

    async def test_no_token_is_401_unauthenticated(self, http: httpx.AsyncClient) -> None:
        response = await http.get("/metrics")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("given", ["Bearer wrong-token-0123456789", f"Basic {TOKEN}"])
    async def test_a_wrong_token_is_401(self, http: httpx.AsyncClient, given: str) -> None:
        response = await http.get("/metrics", headers={"Authorization": given})
        assert response.status_code == 401
        code = "invalid_metrics_token" if given.startswith("Bearer") else "unauthenticated"
        assert response.json()["error"]["code"] == code

    async def test_the_token_opens_it(self, http: httpx.AsyncClient) -> None:
        await scrape(http, Authorization=f"Bearer {TOKEN}")

    async def test_an_api_key_does_not(self, alice: Caller) -> None:
        response = await alice.get("/metrics")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_metrics_token"


class TestRateLimited:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"rate_limit": "2/minute"}

    async def test_refusals_are_counted_and_scrapes_never_limited(
        self, alice: Caller, http: httpx.AsyncClient
    ) -> None:
        before = await scrape(http)
        statuses = [(await alice.get("/api/v1/files")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        for _ in range(3):
            after = await scrape(http)
        name = "bigupload_rate_limited_total"
        assert after.value(name, limiter="owner") - before.value(name, limiter="owner") == 1


class TestOff:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"metrics": "off"}

    async def test_metrics_off_is_404(self, http: httpx.AsyncClient) -> None:
        response = await http.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


class TestStoreUnreachable:
    @pytest.fixture
    def storage(self) -> Storage:
        client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
        return S3Storage(client, "nowhere")

    async def test_store_calls_and_answers_are_counted(
        self, alice: Caller, http: httpx.AsyncClient
    ) -> None:
        ticket = await start(alice, b"abc")
        before = await scrape(http)
        response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
        assert response.status_code == 503
        after = await scrape(http)

        def delta(name: str, **labels: str) -> float:
            return after.value(name, **labels) - before.value(name, **labels)

        assert delta("bigupload_store_unreachable_answers_total") == 1
        calls = "bigupload_store_calls_total"
        assert delta(calls, operation="stat", outcome="unreachable") == 1
        assert delta(calls, outcome="ok") == 0
        assert delta("bigupload_store_call_duration_seconds_count", operation="stat") == 1


class TestStorageEvents:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"storage_events_token": EVENTS_TOKEN}

    async def test_events_are_counted_by_source_and_outcome(
        self, http: httpx.AsyncClient, storage: Storage
    ) -> None:
        before = await scrape(http)
        body = minio_body(storage.bucket, "uploads/nobody/2026/01/not-ours")
        auth = {"Authorization": f"Bearer {EVENTS_TOKEN}"}
        assert (await http.post("/api/v1/storage-events", json=body, headers=auth)).is_success
        wrong = {"Authorization": "Bearer wrong"}
        refused = await http.post("/api/v1/storage-events", json=body, headers=wrong)
        assert refused.status_code == 401
        after = await scrape(http)
        name = "bigupload_storage_events_total"
        labels = {"source": "webhook", "outcome": "unknown"}
        assert after.value(name, **labels) - before.value(name, **labels) == 1
        reason = refused.json()["error"]["code"]
        failures = "bigupload_auth_failures_total"
        assert after.value(failures, reason=reason) - before.value(failures, reason=reason) == 1


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("checksum_mismatch: the stored bytes' SHA-256 is ...", "checksum_mismatch"),
        ("truncated: the store holds 3 bytes, 5 were uploaded", "truncated"),
        ("alice's own words: not a class", "other"),
        ("/etc/passwd", "other"),
        (None, "other"),
    ],
)
def test_failure_reasons_fall_in_fixed_classes(reason: str | None, expected: str) -> None:
    assert catalog.failure_class(reason) == expected


def test_job_outcomes_of_notification_kinds_are_deliveries() -> None:
    def delivered(channel: str, outcome: str) -> float:
        return catalog.DELIVERIES.labels(channel, outcome)._value.get()  # type: ignore[attr-defined]

    before = [delivered("webhook", "delivered"), delivered("sns", "failed")]
    catalog.job_attempt_ended("webhook", "done")
    catalog.job_attempt_ended("sns_publish", "dead")
    catalog.job_attempt_ended("process", "done")
    after = [delivered("webhook", "delivered"), delivered("sns", "failed")]
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1]

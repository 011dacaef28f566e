"""When the store cannot be reached: a clear 5xx, the request id in the log, nothing lost."""

from __future__ import annotations

import logging
import shutil
from typing import Any

import pytest
from fastapi import FastAPI

from bigupload.storage.base import Storage
from bigupload.storage.local import LocalStorage
from bigupload.storage.s3 import S3Storage, build_client
from tests.api.helpers import start, uploaded
from tests.conftest import Caller
from tests.support.net import free_port


class TestS3Unreachable:
    @pytest.fixture
    def storage(self) -> Storage:
        client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
        return S3Storage(client, "nowhere")

    async def test_create_still_signs_without_the_network(self, alice: Caller) -> None:
        ticket = await start(alice, b"abc")
        assert ticket["url"].startswith("http://127.0.0.1:")
        assert "X-Amz-Signature=" in ticket["url"]

    async def test_complete_is_503_and_the_file_stays_pending(
        self, alice: Caller, caplog: pytest.LogCaptureFixture
    ) -> None:
        ticket = await start(alice, b"abc")
        with caplog.at_level(logging.ERROR, logger="bigupload"):
            response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        error = response.json()["error"]
        assert error["code"] == "storage_unavailable"
        assert error["message"] == "the storage service is unreachable; try again later"
        assert "Traceback" not in response.text
        request_id = response.headers["x-request-id"]
        logged = [r.getMessage() for r in caplog.records if r.name == "bigupload.errors"]
        assert any(f"request_id={request_id}" in line for line in logged), logged
        assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"

    async def test_delete_is_503_and_the_record_is_kept(self, alice: Caller) -> None:
        ticket = await start(alice, b"abc")
        response = await alice.delete(f"/api/v1/files/{ticket['id']}")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "storage_unavailable"
        assert (await alice.get(f"/api/v1/files/{ticket['id']}")).status_code == 200

    async def test_readiness_reports_the_store(self, alice: Caller) -> None:
        response = await alice.http.get("/health/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["storage"].startswith("error: S3 is unreachable")
        assert (await alice.http.get("/health")).status_code == 200


class TestNoCredentials:
    @pytest.fixture
    def storage(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Storage:
        for name in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        client = build_client(endpoint_url=f"http://127.0.0.1:{free_port()}", region="us-east-1")
        return S3Storage(client, "nowhere")

    async def test_create_is_503_and_records_nothing(self, alice: Caller) -> None:
        response = await alice.post(
            "/api/v1/uploads",
            json={"filename": "a.mp4", "content_type": "video/mp4", "size": 3},
        )
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "storage_unavailable"
        assert error["message"] == "no S3 credentials are configured"
        assert (await alice.get("/api/v1/files")).json()["items"] == []


class TestLocalStoreGone:
    async def test_complete_and_delete_are_503(self, alice: Caller, storage: LocalStorage) -> None:
        record = await uploaded(alice, b"kept")
        pending = await start(alice, b"abc")
        shutil.rmtree(storage.root)
        response = await alice.post(f"/api/v1/uploads/{pending['id']}/complete")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "storage_unavailable"
        response = await alice.delete(f"/api/v1/files/{record['id']}")
        assert response.status_code == 503
        assert (await alice.get(f"/api/v1/files/{record['id']}")).json()["status"] == "uploaded"


class ExplodingStore(LocalStorage):
    async def stat(self, key: str, *, with_checksum: bool = False) -> Any:
        raise RuntimeError("secret=AKIAEXAMPLE detail")


class TestUnexpectedFailure:
    @pytest.fixture
    def storage(self, tmp_path: Any) -> Storage:
        return ExplodingStore(tmp_path / "store", public_url="http://testserver", secret="s" * 40)

    async def test_is_500_with_the_request_id_and_no_details(
        self, app: FastAPI, alice: Caller, caplog: pytest.LogCaptureFixture
    ) -> None:
        ticket = await start(alice, b"abc")
        transport = alice.http._transport  # type: ignore[attr-defined]
        transport.raise_app_exceptions = False
        with caplog.at_level(logging.ERROR, logger="bigupload"):
            response = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "internal_error"
        request_id = response.headers["x-request-id"]
        assert error["message"] == f"an unexpected error occurred (request id {request_id})"
        assert "AKIA" not in response.text
        assert "Traceback" not in response.text
        crashed = [r for r in caplog.records if r.name == "bigupload.errors"]
        assert crashed and f"request_id={request_id}" in crashed[0].getMessage()
        assert (await alice.get(f"/api/v1/files/{ticket['id']}")).json()["status"] == "pending"

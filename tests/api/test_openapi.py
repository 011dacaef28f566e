"""The API reference: every operation documents the one error shape."""

from __future__ import annotations

from tests.conftest import Caller


async def test_every_api_operation_documents_errors(alice: Caller) -> None:
    spec = (await alice.http.get("/openapi.json")).json()
    operations = [
        (path, method, op)
        for path, methods in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in methods.items()
    ]
    assert len(operations) == 19  # 16, and sign-in, session, sign-out
    for path, method, op in operations:
        for status in ("401", "422", "429", "500", "503"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, status)
        if path == "/api/v1/storage-events":
            # Stores post here: authenticated by a shared token or an SNS signature.
            assert "security" not in op, (path, method)
        elif (path, method) == ("/api/v1/session", "post"):
            # Signing in is how a browser gets its session: it has no credential yet.
            assert "security" not in op, (path, method)
        else:
            assert op["security"] == [{"HTTPBearer": []}], (path, method)
    error = spec["components"]["schemas"]["ErrorDetail"]
    assert set(error["properties"]) == {"code", "message", "details"}


async def test_the_docs_page_is_served(alice: Caller) -> None:
    response = await alice.http.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text


async def test_the_uppy_routes_are_documented_with_their_error_shape(alice: Caller) -> None:
    spec = (await alice.http.get("/openapi.json")).json()
    operations = {
        (path, method): op
        for path, methods in spec["paths"].items()
        if path.startswith("/s3/")
        for method, op in methods.items()
    }
    assert sorted(operations) == [
        ("/s3/multipart", "post"),
        ("/s3/multipart/{uploadId}", "delete"),
        ("/s3/multipart/{uploadId}", "get"),
        ("/s3/multipart/{uploadId}/batch", "get"),
        ("/s3/multipart/{uploadId}/complete", "post"),
        ("/s3/multipart/{uploadId}/{partNumber}", "get"),
        ("/s3/params", "get"),
    ]
    for (path, method), op in operations.items():
        assert op["tags"] == ["uppy"], (path, method)
        assert {"HTTPBearer": []} in op["security"], (path, method)
        for status in ("401", "422", "429", "500", "503"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/UppyErrorBody"}, (path, method)
    error = spec["components"]["schemas"]["UppyErrorBody"]
    assert set(error["properties"]) == {"error", "message"}

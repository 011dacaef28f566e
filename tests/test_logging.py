"""The request log: one line per request with its id, and never a secret."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import send, sha256_hex, start
from tests.conftest import Caller

ACCESS = "bigupload.access"
SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: The test's own HTTP client logs the URLs it calls; only the service's records are judged.
CLIENT_LOGGERS = ("httpx", "httpcore")


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="bigupload")
    yield caplog


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == ACCESS]


def service_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if not record.name.startswith(CLIENT_LOGGERS)]


def everything_logged(record: logging.LogRecord) -> str:
    """All a handler could print: the message, its arguments, extras and any traceback."""
    parts = [record.getMessage(), repr(record.args), repr(vars(record))]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def the_one_access_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    records = access_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    return records[0]


@pytest.mark.parametrize(
    ("method", "path", "authorized", "status"),
    [
        ("GET", "/health", False, 200),
        ("GET", "/api/v1/files", True, 200),
        ("GET", "/api/v1/files", False, 401),
        ("GET", "/api/v1/nothing-here", True, 404),
        ("DELETE", "/health", False, 405),
    ],
)
async def test_one_access_line_per_request_with_its_id(
    alice: Caller,
    logs: pytest.LogCaptureFixture,
    method: str,
    path: str,
    authorized: bool,
    status: int,
) -> None:
    logs.clear()
    headers = alice.auth if authorized else {}
    response = await alice.http.request(method, path, headers=headers)
    assert response.status_code == status
    record = the_one_access_line(logs)
    request_id = response.headers["x-request-id"]
    assert SANE_ID.match(request_id)
    message = record.getMessage()
    assert f"{method} {path} {status} " in message
    assert f"request_id={request_id}" in message
    assert record.levelno == logging.INFO
    assert (record.method, record.path, record.status) == (method, path, status)  # type: ignore[attr-defined]
    assert record.request_id == request_id  # type: ignore[attr-defined]
    assert record.owner == ("alice" if status == 200 and authorized else "-")  # type: ignore[attr-defined]


async def test_each_request_gets_its_own_id(alice: Caller, logs: pytest.LogCaptureFixture) -> None:
    logs.clear()
    responses = [await alice.get("/api/v1/files") for _ in range(3)]
    records = access_records(logs)
    assert len(records) == 3
    header_ids = [response.headers["x-request-id"] for response in responses]
    assert len(set(header_ids)) == 3
    assert [record.request_id for record in records] == header_ids  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "incoming", ["abc-123_DEF.9", "f" * 64, "7c9e6679-7425-40de-944b-e07fc1f90ae7"]
)
async def test_a_sane_incoming_request_id_is_kept(
    http: httpx.AsyncClient, logs: pytest.LogCaptureFixture, incoming: str
) -> None:
    logs.clear()
    response = await http.get("/health", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    record = the_one_access_line(logs)
    assert record.request_id == incoming  # type: ignore[attr-defined]
    assert f"request_id={incoming}" in record.getMessage()


@pytest.mark.parametrize(
    "hostile",
    [
        "has space",
        "line\nbreak injected=1",
        "crlf\r\nX-Evil: 1",
        "f" * 65,
        "x" * 5000,
        "<script>alert(1)</script>",
        "id;rm -rf",
        "",
    ],
    ids=["space", "newline", "crlf", "65-chars", "huge", "markup", "semicolon", "empty"],
)
async def test_a_hostile_incoming_request_id_is_replaced(
    http: httpx.AsyncClient, logs: pytest.LogCaptureFixture, hostile: str
) -> None:
    logs.clear()
    response = await http.get("/health", headers={"X-Request-ID": hostile})
    assert response.status_code == 200
    replaced = response.headers["x-request-id"]
    assert replaced != hostile
    assert SANE_ID.match(replaced)
    record = the_one_access_line(logs)
    assert record.request_id == replaced  # type: ignore[attr-defined]
    message = record.getMessage()
    assert "\n" not in message and "\r" not in message
    if hostile:
        assert hostile not in everything_logged(record)


async def test_signed_store_tokens_are_never_logged(
    alice: Caller, logs: pytest.LogCaptureFixture
) -> None:
    data = b"secret-bearing URLs stay out of the logs" * 50
    ticket = await start(alice, data, checksum_sha256=sha256_hex(data))
    assert "?token=" in ticket["url"]
    put_token = ticket["url"].split("?token=", 1)[1]

    put = await send(alice.http, ticket, data)
    assert put.status_code == 200, put.text
    done = await alice.post(f"/api/v1/uploads/{ticket['id']}/complete")
    assert done.status_code == 200, done.text
    link = await alice.get(f"/api/v1/files/{ticket['id']}/download")
    assert link.status_code == 200, link.text
    download_url = link.json()["url"]
    assert "?token=" in download_url
    get_token = download_url.split("?token=", 1)[1]
    got = await alice.http.get(download_url)
    assert got.status_code == 200
    assert got.content == data
    # A refused URL (token altered) is logged without its token too.
    refused = await alice.http.get(download_url[:-4] + "AAAA")
    assert refused.status_code == 403

    store_lines = [r for r in access_records(logs) if r.getMessage().startswith(("PUT", "GET"))]
    store_lines = [r for r in store_lines if "/store/" in r.getMessage()]
    assert [(r.method, r.status) for r in store_lines] == [  # type: ignore[attr-defined]
        ("PUT", 200),
        ("GET", 200),
        ("GET", 403),
    ]
    records = service_records(logs)
    assert records
    for record in records:
        logged = everything_logged(record)
        for token in (put_token, get_token, get_token[:-4] + "AAAA"):
            assert token not in logged, record.getMessage()
        assert "token=" not in logged


async def test_a_wrong_api_key_is_not_logged(
    http: httpx.AsyncClient, logs: pytest.LogCaptureFixture
) -> None:
    wrong = "bu_" + secrets.token_urlsafe(32)
    logs.clear()
    response = await http.get("/api/v1/files", headers={"Authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    record = the_one_access_line(logs)
    assert "/api/v1/files 401" in record.getMessage()
    for logged in map(everything_logged, service_records(logs)):
        assert wrong not in logged
        assert wrong[3:] not in logged


async def test_a_valid_api_key_is_not_logged_either(
    alice: Caller, logs: pytest.LogCaptureFixture
) -> None:
    logs.clear()
    assert (await alice.get("/api/v1/files")).status_code == 200
    assert the_one_access_line(logs).owner == "alice"  # type: ignore[attr-defined]
    for logged in map(everything_logged, service_records(logs)):
        assert alice.key not in logged


@pytest.mark.parametrize("datefmt", [None, "%Y-%m-%dT%H:%M:%S"])
def test_the_formatter_writes_what_loggings_writes(datefmt: str | None) -> None:
    from bigupload.logs import Formatter

    fmt = "%(asctime)s %(levelname)s %(name)s %(message)s"
    ours, theirs = Formatter(fmt, datefmt), logging.Formatter(fmt, datefmt)
    # Within a second, across seconds, back in time, and at a second's very edges.
    for created in (
        1_700_000_000.0,
        1_700_000_000.5,
        1_700_000_000.999,
        1_700_000_001.001,
        1_700_000_061.25,
        1_600_000_000.75,
        1_700_000_061.0,
    ):
        record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, "%s", ("x",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == theirs.format(record), created

"""Fast UploadPart URLs (``bigupload.storage.s3.presign``): botocore's, byte for byte, and cheap.

botocore is the authority: for the same time, credentials and parameters, every URL must equal
``generate_presigned_url("upload_part")``, whatever the addressing style, endpoint, session
token or checksum. botocore's clock is frozen by replacing the ``get_current_datetime`` its
SigV4 signer reads. Then LocalStack (strict, like AWS) must accept those URLs, and refuse a
tampered signature, another length, another checksum, a missing checksum header and an expired
URL, with AWS's status and error code.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import httpx
import pytest
from botocore.config import Config

from bigupload.storage.base import MAX_PART_SIZE, MIN_PART_SIZE, PartToSign, PresignedRequest
from bigupload.storage.keys import InvalidKey
from bigupload.storage.s3 import S3Storage, build_client
from tests.storage.helpers import error_code, sha256, tampered

FROZEN = datetime(2026, 11, 21, 23, 59, 59)  # naive UTC, as botocore's clock answers
KEY = "uploads/alice/2026/11/ü ñ+%25;&=?#~.bin"
UPLOAD_ID = "VXBsb2FkIElE.x_y-z+/=~2"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjE+/=//////////wEaCXVzLWVhc3QtMSJHMEUCIQ=="


@pytest.fixture
def frozen_botocore(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """botocore signs at ``FROZEN``, whenever the test runs."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_a, **_k: FROZEN)
    return FROZEN


def credentials(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    if token is None:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    else:
        monkeypatch.setenv("AWS_SESSION_TOKEN", token)


def digest(n: int) -> bytes:
    return hashlib.sha256(b"part %d" % n).digest()


def botocore_url(store: S3Storage, key: str, upload_id: str, part: PartToSign, expires: int) -> str:
    params: dict[str, Any] = {
        "Bucket": store.bucket,
        "Key": key,
        "UploadId": upload_id,
        "PartNumber": part.part_number,
    }
    if part.size is not None:
        params["ContentLength"] = part.size
    if part.checksum_sha256 is not None:
        params["ChecksumSHA256"] = base64.b64encode(part.checksum_sha256).decode()
    url: str = store.client.generate_presigned_url("upload_part", Params=params, ExpiresIn=expires)
    return url


def path_style_client(session: Any, signature_version: str = "s3v4") -> Any:
    """An S3 client of ``session`` for a loopback endpoint, path-style, signing with
    ``signature_version`` (nothing is sent: these tests only sign)."""
    return session.client(
        "s3",
        endpoint_url="http://127.0.0.1:4566",
        region_name="us-east-1",
        config=Config(signature_version=signature_version, s3={"addressing_style": "path"}),
    )


def count_botocore_calls(monkeypatch: pytest.MonkeyPatch, client: Any) -> list[str]:
    """Record each URL botocore presigns for ``client`` (botocore still does the work)."""
    calls: list[str] = []
    original = client.generate_presigned_url

    def recording(*args: Any, **kwargs: Any) -> str:
        url: str = original(*args, **kwargs)
        calls.append(url)
        return url

    monkeypatch.setattr(client, "generate_presigned_url", recording)
    return calls


# -- byte for byte botocore's ------------------------------------------------------------------

#: (endpoint, region, addressing style, bucket, the URL's expected scheme://host/path prefix)
LAYOUTS = {
    "path-custom-endpoint": (
        "http://127.0.0.1:4566",
        "us-east-1",
        "auto",  # build_client picks path-style for a custom endpoint
        "bu-bucket",
        "http://127.0.0.1:4566/bu-bucket/uploads/",
    ),
    "virtual-custom-endpoint": (
        "http://s3.localhost.localstack.cloud:4566",
        "us-east-1",
        "virtual",
        "bu-bucket",
        "http://bu-bucket.s3.localhost.localstack.cloud:4566/uploads/",
    ),
    "virtual-aws": (
        None,
        "eu-west-1",
        "virtual",
        "bigupload-test",
        "https://bigupload-test.s3.eu-west-1.amazonaws.com/uploads/",
    ),
    "auto-aws": (
        None,
        "us-east-1",
        "auto",
        "bigupload-test",
        "https://bigupload-test.s3.amazonaws.com/uploads/",
    ),
    "path-aws": (
        None,
        "ap-southeast-2",
        "path",
        "bigupload.dotted",
        "https://s3.ap-southeast-2.amazonaws.com/bigupload.dotted/uploads/",
    ),
    "https-default-port": (
        "https://minio.example.com:443",
        "us-east-1",
        "path",
        "bu-bucket",
        "https://minio.example.com:443/bu-bucket/uploads/",
    ),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "session-token"])
@pytest.mark.parametrize("first_checksum", [False, True], ids=["first-plain", "first-checksum"])
def test_part_urls_are_botocores_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
    frozen_botocore: datetime,
    caplog: pytest.LogCaptureFixture,
    layout: str,
    token: str | None,
    first_checksum: bool,
) -> None:
    endpoint, region, style, bucket, prefix = LAYOUTS[layout]
    credentials(monkeypatch, token)
    client = build_client(endpoint_url=endpoint, region=region, addressing_style=style)
    store = S3Storage(client, bucket)
    parts = [
        PartToSign(1, MIN_PART_SIZE, digest(1) if first_checksum else None),
        PartToSign(2, MAX_PART_SIZE, None),
        PartToSign(3, 1, digest(3)),
        PartToSign(10_000, 0, None),
        PartToSign(9_999, 123_456_789, digest(9_999)),
        PartToSign(2, 7, digest(2)),  # the same number twice: a part may be signed again
    ]
    botocore_calls = count_botocore_calls(monkeypatch, store.client)
    with caplog.at_level(logging.WARNING):
        requests = store.presign_parts(KEY, UPLOAD_ID, parts, expires_in=900)
    assert len(botocore_calls) == 1, "one botocore URL per batch: the fast path was not taken"
    assert not caplog.records

    for part, request in zip(parts, requests, strict=True):
        assert request.method == "PUT"
        assert request.url == botocore_url(store, KEY, UPLOAD_ID, part, 900)
        assert request.url.startswith(prefix)
        query = parse_qs(urlsplit(request.url).query)
        assert query["X-Amz-Date"] == ["20261121T235959Z"]
        assert query.get("X-Amz-Security-Token") == ([token] if token else None)
        if part.checksum_sha256 is None:
            assert request.headers == {}
            assert query["X-Amz-SignedHeaders"] == ["content-length;host"]
        else:
            checksum = base64.b64encode(part.checksum_sha256).decode()
            assert request.headers == {"x-amz-checksum-sha256": checksum}
            assert query["X-Amz-SignedHeaders"] == ["content-length;host;x-amz-checksum-sha256"]


@pytest.mark.parametrize("layout", ["path-custom-endpoint", "virtual-aws"])
@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "session-token"])
def test_size_less_part_urls_are_botocores_and_sign_no_length(
    monkeypatch: pytest.MonkeyPatch,
    frozen_botocore: datetime,
    caplog: pytest.LogCaptureFixture,
    layout: str,
    token: str | None,
) -> None:
    endpoint, region, style, bucket, _ = LAYOUTS[layout]
    credentials(monkeypatch, token)
    store = S3Storage(
        build_client(endpoint_url=endpoint, region=region, addressing_style=style), bucket
    )
    parts = [
        PartToSign(1, None, None),
        PartToSign(2, None, digest(2)),
        PartToSign(10_000, None, None),
    ]
    botocore_calls = count_botocore_calls(monkeypatch, store.client)
    with caplog.at_level(logging.WARNING):
        requests = store.presign_parts(KEY, UPLOAD_ID, parts, expires_in=900)
    assert len(botocore_calls) == 1, "one botocore URL per batch: the fast path was not taken"
    assert not caplog.records
    for part, request in zip(parts, requests, strict=True):
        assert request.url == botocore_url(store, KEY, UPLOAD_ID, part, 900)
        signed = parse_qs(urlsplit(request.url).query)["X-Amz-SignedHeaders"]
        assert signed == (
            ["host"] if part.checksum_sha256 is None else ["host;x-amz-checksum-sha256"]
        )


def test_a_batch_of_sized_and_size_less_parts_signs_each_kind_from_its_own_template(
    monkeypatch: pytest.MonkeyPatch, frozen_botocore: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    credentials(monkeypatch, None)
    store = S3Storage(build_client(endpoint_url="http://127.0.0.1:4566", region="us-east-1"), "b")
    parts = [
        PartToSign(1, MIN_PART_SIZE, None),
        PartToSign(2, None, None),
        PartToSign(3, 5, digest(3)),
        PartToSign(4, None, digest(4)),
        PartToSign(5, 0, None),
    ]
    botocore_calls = count_botocore_calls(monkeypatch, store.client)
    with caplog.at_level(logging.WARNING):
        requests = store.presign_parts(KEY, UPLOAD_ID, parts, expires_in=60)
    assert len(botocore_calls) == 2  # one template per kind, then the fast path
    assert not caplog.records
    assert [r.url for r in requests] == [
        botocore_url(store, KEY, UPLOAD_ID, part, 60) for part in parts
    ]


def test_size_less_parts_fall_back_to_botocore_with_a_client_it_does_not_know(
    monkeypatch: pytest.MonkeyPatch, frozen_botocore: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    credentials(monkeypatch, None)
    client = path_style_client(boto3.session.Session(), "s3")
    store = S3Storage(client, "bu-bucket")
    parts = [PartToSign(1, None, None), PartToSign(2, None, digest(2))]
    with caplog.at_level(logging.WARNING, logger="bigupload.storage.s3.presign"):
        requests = store.presign_parts(KEY, UPLOAD_ID, parts, expires_in=60)
    assert "slow path" in caplog.text
    for part, request in zip(parts, requests, strict=True):
        assert request.url == botocore_url(store, KEY, UPLOAD_ID, part, 60)


def test_each_batch_signs_with_the_credentials_of_the_moment(
    monkeypatch: pytest.MonkeyPatch, frozen_botocore: datetime
) -> None:
    """Credentials are read per batch: rotated (or refreshed) ones sign the next batch."""
    session = boto3.session.Session(
        aws_access_key_id="AKIAFIRST", aws_secret_access_key="first-secret"
    )
    client = path_style_client(session)
    store = S3Storage(client, "bu-bucket")
    parts = [PartToSign(n, 10 * n, digest(n) if n % 2 else None) for n in range(1, 6)]
    botocore_calls = count_botocore_calls(monkeypatch, client)

    first = store.presign_parts(KEY, UPLOAD_ID, parts, expires_in=60)
    live = session.get_credentials()  # the very object the client signs with
    live.access_key, live.secret_key, live.token = "AKIASECOND", "second-secret", "a-token"
    second = store.presign_parts(KEY, UPLOAD_ID, parts, expires_in=60)

    assert len(botocore_calls) == 2
    assert all("Credential=AKIAFIRST%2F" in r.url for r in first)
    assert all("Credential=AKIASECOND%2F" in r.url for r in second)
    assert all("X-Amz-Security-Token=a-token&" in r.url for r in second)
    for part, request in zip(parts, second, strict=True):
        assert request.url == botocore_url(store, KEY, UPLOAD_ID, part, 60)


def test_a_client_the_fast_signer_does_not_know_is_signed_by_botocore(
    monkeypatch: pytest.MonkeyPatch, frozen_botocore: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    """A client botocore signs otherwise (here SigV2) still gets botocore's URLs, slowly."""
    credentials(monkeypatch, None)
    client = path_style_client(boto3.session.Session(), "s3")
    store = S3Storage(client, "bu-bucket")
    parts = [PartToSign(1, 5, None), PartToSign(2, 6, digest(2))]
    with caplog.at_level(logging.WARNING, logger="bigupload.storage.s3.presign"):
        requests = store.presign_parts(KEY, UPLOAD_ID, parts, expires_in=60)
    assert "slow path" in caplog.text
    assert "X-Amz-Signature" not in requests[0].url
    for part, request in zip(parts, requests, strict=True):
        assert request.url == botocore_url(store, KEY, UPLOAD_ID, part, 60)


# -- what is checked before signing ------------------------------------------------------------


@pytest.mark.parametrize(
    "part",
    [
        PartToSign(0, 1),
        PartToSign(10_001, 1),
        PartToSign(1, -1),
        PartToSign(1, MAX_PART_SIZE + 1),
        PartToSign(1, 1, b"short"),
    ],
)
def test_parts_outside_s3_limits_are_refused_before_signing(
    moto_store: S3Storage, part: PartToSign
) -> None:
    with pytest.raises(ValueError):
        moto_store.presign_parts("uploads/a/2026/11/b", "id", [part], expires_in=60)


def test_an_invalid_key_is_refused_and_no_parts_sign_nothing(moto_store: S3Storage) -> None:
    with pytest.raises(InvalidKey):
        moto_store.presign_parts("/abs", "id", [PartToSign(1, 1)], expires_in=60)
    assert moto_store.presign_parts("uploads/a/2026/11/b", "id", [], expires_in=60) == []


def test_part_urls_say_when_they_expire(
    moto_store: S3Storage, set_clock: Callable[[datetime], None]
) -> None:
    now = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
    set_clock(now)
    requests = moto_store.presign_parts(
        "uploads/a/2026/11/b", "id", [PartToSign(1, 1), PartToSign(2, 1)], expires_in=900
    )
    assert [r.expires_at for r in requests] == [now + timedelta(seconds=900)] * 2


# -- a strict store accepts them, and refuses what they were not signed for --------------------

PART = b"0123456789abcdef" * 64 + b"tail"  # 1,028 bytes


@pytest.fixture
def strict_http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def put(
    http: httpx.Client, request: PresignedRequest, body: bytes, **headers: str
) -> httpx.Response:
    return http.put(request.url, content=body, headers={**request.headers, **headers})


@pytest.mark.strict_s3
@pytest.mark.parametrize("with_checksum", [False, True], ids=["plain", "checksum"])
async def test_a_strict_store_accepts_the_part_urls(
    strict_store: S3Storage,
    strict_http: httpx.Client,
    new_key: Callable[..., str],
    with_checksum: bool,
) -> None:
    key = new_key()
    upload_id = await strict_store.create_multipart(
        key, content_type="video/mp4", checksum_sha256=with_checksum
    )
    bodies = {1: b"a" * MIN_PART_SIZE, 2: PART, 3: b"z"}
    parts = [PartToSign(n, len(b), sha256(b) if with_checksum else None) for n, b in bodies.items()]
    requests = strict_store.presign_parts(key, upload_id, parts, expires_in=600)
    etags = {}
    for part, request in zip(parts, requests, strict=True):
        response = put(strict_http, request, bodies[part.part_number])
        assert response.status_code == 200, response.text
        etags[part.part_number] = response.headers["etag"]
        if with_checksum:
            assert (
                response.headers["x-amz-checksum-sha256"]
                == request.headers["x-amz-checksum-sha256"]
            )

    stored = await strict_store.list_parts(key, upload_id)
    assert [(p.part_number, p.size, p.etag) for p in stored] == [
        (n, len(b), etags[n]) for n, b in bodies.items()
    ]
    assert [p.checksum_sha256 for p in stored] == [
        base64.b64encode(sha256(b)).decode() if with_checksum else None for b in bodies.values()
    ]
    await strict_store.abort_multipart(key, upload_id)


@pytest.mark.strict_s3
async def test_a_strict_store_accepts_session_token_and_virtual_hosted_urls(
    strict_s3: Any,
    strict_store: S3Storage,
    strict_http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    new_key: Callable[..., str],
) -> None:
    key = new_key()
    upload_id = await strict_store.create_multipart(key, content_type="text/plain")
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    virtual = S3Storage(
        build_client(
            endpoint_url=f"http://s3.localhost.localstack.cloud:{strict_s3.port}",
            region="us-east-1",
            addressing_style="virtual",
        ),
        strict_store.bucket,
    )
    [request] = virtual.presign_parts(key, upload_id, [PartToSign(1, len(PART))], expires_in=600)
    url = urlsplit(request.url)
    assert url.netloc == f"{strict_store.bucket}.s3.localhost.localstack.cloud:{strict_s3.port}"
    assert "X-Amz-Security-Token=" in url.query
    # that name resolves to 127.0.0.1 only through public DNS: connect there, name the host
    response = strict_http.put(
        f"{strict_s3.endpoint_url}{url.path}?{url.query}",
        content=PART,
        headers={"Host": url.netloc},
    )
    assert response.status_code == 200, response.text
    [stored] = await strict_store.list_parts(key, upload_id)
    assert (stored.part_number, stored.size) == (1, len(PART))
    await strict_store.abort_multipart(key, upload_id)


#: case -> (HTTP status, S3 error code), as LocalStack (and AWS) answers a part's PUT.
REFUSED = {
    "tampered": (403, "SignatureDoesNotMatch"),
    "longer": (403, "SignatureDoesNotMatch"),  # Content-Length is signed
    "shorter": (403, "SignatureDoesNotMatch"),
    "other_bytes": (400, "BadDigest"),  # same length, another SHA-256
    "other_checksum_header": (403, "SignatureDoesNotMatch"),  # the checksum is signed
    "no_checksum_header": (403, "SignatureDoesNotMatch"),
    "expired": (403, "AccessDenied"),
}


@pytest.mark.strict_s3
@pytest.mark.parametrize("case", list(REFUSED))
async def test_a_strict_store_refuses_what_a_part_url_was_not_signed_for(
    strict_store: S3Storage,
    strict_http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    new_key: Callable[..., str],
    case: str,
) -> None:
    key = new_key()
    upload_id = await strict_store.create_multipart(
        key, content_type="text/plain", checksum_sha256=True
    )
    with monkeypatch.context() as patch:
        if case == "expired":
            # signed an hour ago for a minute: long expired, without waiting
            an_hour_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
            patch.setattr(botocore.auth, "get_current_datetime", lambda *_a, **_k: an_hour_ago)
        [request] = strict_store.presign_parts(
            key, upload_id, [PartToSign(1, len(PART), sha256(PART))], expires_in=60
        )
    other = b"X" + PART[1:]
    url, body, headers = request.url, PART, dict(request.headers)
    if case == "tampered":
        url = tampered(strict_store, url)
    elif case == "longer":
        body = PART + b"!"
    elif case == "shorter":
        body = PART[:-1]
    elif case == "other_bytes":
        body = other
    elif case == "other_checksum_header":
        body = other
        headers["x-amz-checksum-sha256"] = base64.b64encode(sha256(other)).decode()
    elif case == "no_checksum_header":
        del headers["x-amz-checksum-sha256"]

    response = strict_http.put(url, content=body, headers=headers)
    assert response.request.headers["content-length"] == str(len(body))
    assert (response.status_code, error_code(strict_store, response)) == REFUSED[case], (
        response.text
    )
    assert await strict_store.list_parts(key, upload_id) == []
    if case != "expired":  # the genuine request still works: only the change was refused
        assert put(strict_http, request, PART).status_code == 200
        assert [p.size for p in await strict_store.list_parts(key, upload_id)] == [len(PART)]
    await strict_store.abort_multipart(key, upload_id)


@pytest.mark.strict_s3
async def test_an_upload_that_takes_checksums_refuses_a_part_signed_without_one(
    strict_store: S3Storage, strict_http: httpx.Client, new_key: Callable[..., str]
) -> None:
    """As AWS: every part of such an upload must carry its checksum."""
    key = new_key()
    upload_id = await strict_store.create_multipart(
        key, content_type="text/plain", checksum_sha256=True
    )
    [request] = strict_store.presign_parts(
        key, upload_id, [PartToSign(1, len(PART))], expires_in=60
    )
    response = put(strict_http, request, PART)
    assert (response.status_code, error_code(strict_store, response)) == (400, "InvalidRequest")
    assert "Checksum Type mismatch" in response.text
    await strict_store.abort_multipart(key, upload_id)

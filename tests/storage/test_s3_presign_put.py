"""Fast PutObject URLs (``bigupload.storage.s3.presign_put``): botocore's, byte for byte.

For the same time, credentials and parameters, every URL ``S3Storage.presign_put`` answers must
equal ``generate_presigned_url("put_object")``'s, whatever the addressing style, endpoint, key,
content type, checksum, conditional write, expiry or session token; and botocore must have
presigned only the first URL of each shape (the fast path taken). botocore's clock is frozen as
in ``test_s3_presign.py``; some tests move it, as time passes between creates.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

import boto3
import botocore.auth
import pytest

from bigupload.storage.s3 import S3Storage, build_client
from tests.storage.test_s3_presign import (
    FROZEN,
    LAYOUTS,
    TOKEN,
    count_botocore_calls,
    credentials,
    path_style_client,
)

KEYS = [
    "uploads/alice/2026/11/0b6f1c7e-8a4e-4e0e-9d5e-3f1f1f1f1f1f",
    "uploads/alice/2026/11/ü ñ+%25;&=?#~.bin",
    "a",
    "with spaces/and  two/trailing ",
    "日本語/ファイル名.txt",
    "emoji/😀 file (1).png",
    "dots/a.b.c/-_.~!*'()$@,:",
    "x" * 1000,
]
CONTENT_TYPES = [
    "application/octet-stream",
    "text/plain; charset=utf-8",
    'multipart/mixed;  boundary="a  b"',
    "image/svg+xml",
]
SIZES = [0, 1, 5 * 1024**3]


def botocore_put(
    store: S3Storage,
    key: str,
    content_type: str,
    size: int,
    checksum: bytes | None,
    expires: int,
) -> str:
    params: dict[str, Any] = {
        "Bucket": store.bucket,
        "Key": key,
        "ContentType": content_type,
        "ContentLength": size,
    }
    if checksum is not None:
        params["ChecksumSHA256"] = base64.b64encode(checksum).decode()
    if store.conditional_writes:
        params["IfNoneMatch"] = "*"
    url: str = store.client.generate_presigned_url("put_object", Params=params, ExpiresIn=expires)
    return url


def frozen_at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_a, **_k: when)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("token", [None, TOKEN], ids=["no-token", "session-token"])
@pytest.mark.parametrize("conditional", [True, False], ids=["if-none-match", "unconditional"])
def test_put_urls_are_botocores_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    layout: str,
    token: str | None,
    conditional: bool,
) -> None:
    endpoint, region, style, bucket, prefix = LAYOUTS[layout]
    credentials(monkeypatch, token)
    client = build_client(endpoint_url=endpoint, region=region, addressing_style=style)
    store = S3Storage(client, bucket, conditional_writes=conditional)
    calls = count_botocore_calls(monkeypatch, client)
    checksums = [None, hashlib.sha256(b"x").digest()]
    signed: list[tuple[str, str, int, bytes | None, int, datetime, str]] = []
    when = FROZEN - timedelta(minutes=30)
    with caplog.at_level(logging.WARNING):
        for n, key in enumerate(KEYS):
            for content_type in CONTENT_TYPES:
                for size in SIZES:
                    for checksum in checksums:
                        expires = (60, 900, 604_800)[n % 3]
                        # Time passes between creates, over midnight too (a new signing key).
                        when += timedelta(seconds=37 * n + size % 7 + 1)
                        frozen_at(monkeypatch, when)
                        url = store.presign_put(
                            key,
                            content_type=content_type,
                            size=size,
                            checksum_sha256=checksum,
                            expires_in=expires,
                        ).url
                        signed.append((key, content_type, size, checksum, expires, when, url))
    assert not caplog.records
    shapes = {(checksum is not None, expires) for _, _, _, checksum, expires, _, _ in signed}
    assert len(calls) == len(shapes), "botocore signed more than one URL per shape"
    assert len({when.date() for *_, when, _ in signed}) > 1  # the day changed meanwhile
    for key, content_type, size, checksum, expires, when, url in signed:
        frozen_at(monkeypatch, when)
        assert url == botocore_put(store, key, content_type, size, checksum, expires)
        assert url.startswith(prefix.removesuffix("uploads/"))
        assert ("X-Amz-Security-Token=" in url) is (token is not None)


def test_the_headers_to_send_are_the_signed_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials(monkeypatch, None)
    frozen_at(monkeypatch, FROZEN)
    store = S3Storage(build_client(endpoint_url="http://127.0.0.1:4566"), "bu-bucket")
    checksum = hashlib.sha256(b"x").digest()
    for _ in range(2):  # botocore's, then the fast signer's
        request = store.presign_put(
            "k", content_type="text/plain", size=3, checksum_sha256=checksum, expires_in=60
        )
        assert request.method == "PUT"
        assert request.headers == {
            "Content-Type": "text/plain",
            "x-amz-checksum-sha256": base64.b64encode(checksum).decode(),
            "If-None-Match": "*",
        }
        assert (
            "X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3Bif-none-match%3B"
            "x-amz-checksum-sha256&" in request.url
        )
        assert request.expires_at is not None


def test_put_urls_sign_with_the_credentials_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotated (or refreshed) credentials are learnt from botocore again, then signed fast."""
    frozen_at(monkeypatch, FROZEN)
    session = boto3.session.Session(
        aws_access_key_id="AKIAFIRST", aws_secret_access_key="first-secret"
    )
    client = path_style_client(session)
    store = S3Storage(client, "bu-bucket")
    calls = count_botocore_calls(monkeypatch, client)

    def sign(key: str) -> str:
        return store.presign_put(
            key, content_type="text/plain", size=1, checksum_sha256=None, expires_in=60
        ).url

    first = [sign(f"k{n}") for n in range(3)]
    live = session.get_credentials()  # the very object the client signs with
    live.access_key, live.secret_key, live.token = "AKIASECOND", "second-secret", "a-token"
    second = [sign(f"k{n}") for n in range(3)]

    assert len(calls) == 2
    assert all("Credential=AKIAFIRST%2F" in url for url in first)
    assert all("Credential=AKIASECOND%2F" in url for url in second)
    assert all("X-Amz-Security-Token=a-token&" in url for url in second)
    for n, url in enumerate(second):
        assert url == botocore_put(store, f"k{n}", "text/plain", 1, None, 60)


def test_a_client_the_fast_signer_does_not_know_is_signed_by_botocore(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client botocore signs otherwise (here SigV2) still gets botocore's URLs, slowly."""
    credentials(monkeypatch, None)
    frozen_at(monkeypatch, FROZEN)
    client = path_style_client(boto3.session.Session(), "s3")
    store = S3Storage(client, "bu-bucket")
    calls = count_botocore_calls(monkeypatch, client)
    with caplog.at_level(logging.WARNING, logger="bigupload.storage.s3.presign_put"):
        urls = [
            store.presign_put(
                f"k{n}", content_type="a/b", size=n, checksum_sha256=None, expires_in=60
            ).url
            for n in range(3)
        ]
    assert caplog.text.count("slow path") == 1
    assert len(calls) == 3
    assert "X-Amz-Signature" not in urls[0]
    for n, url in enumerate(urls):
        assert url == botocore_put(store, f"k{n}", "a/b", n, None, 60)

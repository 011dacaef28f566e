"""Fast presigned PutObject URLs: SigV4 query-string signing without botocore's request pipeline.

botocore's ``generate_presigned_url("put_object")`` builds a request through its serializer,
endpoint rules and event handlers for every URL: about 1.6 M instructions, more than the rest of
a create. Here botocore presigns the *first* URL of each shape (which headers are signed: the
content type and length always, ``If-None-Match`` and ``x-amz-checksum-sha256`` when asked; the
expiry; the client's current credentials), and that URL teaches this signer what botocore
resolved: scheme, host and path prefix (addressing style, endpoint), credential scope (access
key, region, service), session token. This signer then signs that same URL itself, at the same
time, and must get botocore's byte for byte; only then are later URLs of the shape signed here
(one SHA-256 of the canonical request and one HMAC with the day's key, derived once a day). If
they differ (a botocore change, a configuration that signs other headers or query parameters),
the shape stays botocore's, with one WARNING.

Each URL is signed at its own time (botocore's clock, ``botocore.auth.get_current_datetime``),
with the credentials of the moment: credentials that changed (refreshed, rotated) make a new
shape, learnt from botocore again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

import botocore.auth

from bigupload.storage.s3.presign import _ALGORITHM, _UNSIGNED_PAYLOAD, _frozen_credentials, _host
from bigupload.storage.s3.presign import _AUTH_PARAMS as _AUTH
from bigupload.storage.s3.presign import _Unexpected as _NoCredentials

logger = logging.getLogger(__name__)

_TIMESTAMP = "%Y%m%dT%H%M%SZ"  # botocore's SIGV4_TIMESTAMP


def _q(value: str) -> str:
    """A query value as botocore encodes it (``percent_encode``)."""
    return quote(value, safe="-_.~")


def _path_of(key: str) -> str:
    """A key in a URL path as botocore's serializer encodes it."""
    return quote(key.encode("utf-8"), safe="/~")


class _Unexpected(Exception):
    """botocore's URL is not shaped as this signer expects."""


class _ShapeKey(NamedTuple):
    checksum: bool
    if_none_match: bool
    expires_in: int
    access_key: str
    secret_key: str
    token: str | None


class _Shape:
    """What every URL of one shape shares, learnt from botocore's URL for one of them."""

    def __init__(self, template: str, key: str, shape: _ShapeKey) -> None:
        url = urlsplit(template)
        quoted = _path_of(key)
        if url.fragment or not url.path.endswith(quoted):
            raise _Unexpected("botocore's URL does not end with the key")
        pairs = [pair.partition("=") for pair in url.query.split("&")]
        names = [name for name, _, _ in pairs]
        expected = [n for n in _AUTH if shape.token or n != "X-Amz-Security-Token"]
        if names != expected:
            raise _Unexpected(f"botocore's URL has other query parameters: {names}")
        values = {name: value for name, _, value in pairs}
        access_key, _, scope = unquote(values["X-Amz-Credential"]).partition("/")
        steps = scope.split("/")
        if len(steps) != 4 or steps[3] != "aws4_request" or access_key != shape.access_key:
            raise _Unexpected(f"unexpected credential {values['X-Amz-Credential']!r}")
        if values["X-Amz-Expires"] != str(shape.expires_in):
            raise _Unexpected("botocore's URL has another expiry")
        self.template_date = values["X-Amz-Date"]
        self.signed_headers = unquote(values["X-Amz-SignedHeaders"])
        self.base = f"{url.scheme}://{url.netloc}{url.path[: len(url.path) - len(quoted)]}"
        self.prefix = url.path[: len(url.path) - len(quoted)]
        self.host = _host(url.scheme, url.hostname, url.port)
        self.region, self.service = steps[1], steps[2]
        self.access_key = access_key
        self.secret = f"AWS4{shape.secret_key}".encode()
        self.expires = values["X-Amz-Expires"]
        self.token = _q(shape.token) if shape.token else None
        self._day = ""
        self._signing_key = b""

    def signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = self.secret
            for step in (day, self.region, self.service, "aws4_request"):
                key = hmac.digest(key, step.encode(), "sha256")
            self._signing_key, self._day = key, day
        return self._signing_key

    def sign(self, key: str, timestamp: str, headers: dict[str, str]) -> str:
        """The URL of ``key`` signed at ``timestamp`` (SigV4's ``X-Amz-Date``)."""
        day = timestamp[:8]
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        signed = ";".join(sorted(headers))
        if signed != self.signed_headers:
            raise _Unexpected(f"this URL signs {signed!r}, botocore's {self.signed_headers!r}")
        query = [
            ("X-Amz-Algorithm", _ALGORITHM),
            ("X-Amz-Credential", _q(f"{self.access_key}/{scope}")),
            ("X-Amz-Date", timestamp),
            ("X-Amz-Expires", self.expires),
            ("X-Amz-SignedHeaders", _q(signed)),
        ]
        if self.token is not None:
            query.append(("X-Amz-Security-Token", self.token))
        path = self.prefix + _path_of(key)
        canonical_headers = "\n".join(
            f"{name}:{' '.join(headers[name].split())}" for name in sorted(headers)
        )
        canonical = (
            f"PUT\n{path}\n"
            + "&".join(f"{name}={value}" for name, value in sorted(query))
            + f"\n{canonical_headers}\n\n{signed}\n{_UNSIGNED_PAYLOAD}"
        )
        string_to_sign = (
            f"{_ALGORITHM}\n{timestamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.digest(self.signing_key(day), string_to_sign.encode(), "sha256").hex()
        head = self.base[: len(self.base) - len(self.prefix)]
        return (
            f"{head}{path}?"
            + "&".join(f"{name}={value}" for name, value in query)
            + f"&X-Amz-Signature={signature}"
        )


class PutSigner:
    """Presigned PutObject URLs of one client and bucket, botocore's byte for byte."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket
        self._shapes: dict[_ShapeKey, _Shape | None] = {}  # None: botocore signs this shape
        self._lock = threading.Lock()

    def presign(
        self,
        key: str,
        *,
        content_type: str,
        size: int,
        checksum_sha256: str | None,
        if_none_match: bool,
        expires_in: int,
    ) -> str:
        """The URL; ``checksum_sha256`` in base64. Raises what botocore raises when no
        credentials are configured."""
        headers = {
            "content-length": str(size),
            "content-type": content_type,
            "host": "",
        }
        if if_none_match:
            headers["if-none-match"] = "*"
        if checksum_sha256 is not None:
            headers["x-amz-checksum-sha256"] = checksum_sha256
        try:
            credentials = _frozen_credentials(self.client)
        except _NoCredentials:  # botocore then says why
            return self._botocore(key, headers, expires_in)
        shape_key = _ShapeKey(
            checksum_sha256 is not None,
            if_none_match,
            expires_in,
            credentials.access_key,
            credentials.secret_key,
            credentials.token,
        )
        if shape_key not in self._shapes:
            return self._learn(shape_key, key, headers)
        shape = self._shapes[shape_key]
        if shape is None:
            return self._botocore(key, headers, expires_in)
        headers["host"] = shape.host
        now = botocore.auth.get_current_datetime()  # type: ignore[attr-defined]
        timestamp = now.strftime(_TIMESTAMP)
        try:
            return shape.sign(key, timestamp, headers)
        except _Unexpected:  # headers botocore would sign otherwise (an empty type, say)
            return self._botocore(key, headers, expires_in)

    def _learn(
        self,
        shape_key: _ShapeKey,
        key: str,
        headers: dict[str, str],
    ) -> str:
        template = self._botocore(key, headers, shape_key.expires_in)
        try:
            shape = _Shape(template, key, shape_key)
            headers["host"] = shape.host
            mine = shape.sign(key, shape.template_date, headers)
        except _Unexpected as exc:
            problem, found = str(exc), None
        else:
            problem = "the fast signature differs from botocore's"
            found = shape if mine == template else None
        if found is None:
            logger.warning("PutObject URLs signed by botocore (slow path): %s", problem)
        with self._lock:
            self._shapes[shape_key] = found
        return template

    def _botocore(self, key: str, headers: dict[str, str], expires_in: int) -> str:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": headers["content-type"],
            "ContentLength": int(headers["content-length"]),
        }
        if "x-amz-checksum-sha256" in headers:
            params["ChecksumSHA256"] = headers["x-amz-checksum-sha256"]
        if "if-none-match" in headers:
            params["IfNoneMatch"] = "*"
        url: str = self.client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in
        )
        return url

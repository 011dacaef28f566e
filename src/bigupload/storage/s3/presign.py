"""Fast presigned UploadPart URLs: SigV4 query-string signing with the day's key derived once.

botocore's ``generate_presigned_url("upload_part")`` costs about 210 µs of CPU per URL, so the
10,000 parts of one large upload would cost two seconds of CPU. Here botocore presigns *one* URL
per batch (the batch's first part), and that URL is the template of the others: its scheme, host,
path (addressing style, endpoint and key encoding as botocore resolved them), operation
parameters, credential scope (access key, date, region, service), ``X-Amz-Date``, expiry and
session token. The SigV4 signing key is derived once from the client's current (frozen)
credentials, and each URL then costs one SHA-256 of its canonical request and one HMAC.

botocore stays the authority. The first part's URL is also computed here and must equal
botocore's byte for byte (same time, credentials and parameters); if it does not (a botocore
change, a configuration that signs other headers, credentials refreshed between the two reads),
the batch is tried once more, and then every URL of the batch is presigned by botocore itself.

A URL signs ``content-length`` (the part's exact size), ``host`` and, when given,
``x-amz-checksum-sha256`` (base64): the uploader must send exactly ``size`` bytes and that
header. A part of no size (``None``) signs no ``content-length``: S3 then takes any length up to
its 5 GiB part limit. The payload is ``UNSIGNED-PAYLOAD``, as in every presigned S3 URL.

Sized and size-less parts sign different headers, so a batch holding both is signed as two
batches, each from its own botocore template (and checked against it).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit

logger = logging.getLogger(__name__)

_ALGORITHM = "AWS4-HMAC-SHA256"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_PLAIN_HEADERS = "content-length;host"
_CHECKSUM_HEADERS = "content-length;host;x-amz-checksum-sha256"
_UNSIZED_PLAIN_HEADERS = "host"
_UNSIZED_CHECKSUM_HEADERS = "host;x-amz-checksum-sha256"
_AUTH_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Security-Token",
    "X-Amz-Signature",
)
_HOLE = "\x00"  # where each URL's part number goes, in the templates built below
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UploadPart(NamedTuple):
    """One part to sign: its number, its exact size (``None``: any), and its SHA-256 in base64
    (or ``None``)."""

    part_number: int
    size: int | None
    checksum_sha256: str | None = None


class _Unexpected(Exception):
    """botocore's URL is not shaped as this signer expects."""


class _OtherCredentials(Exception):
    """botocore signed with credentials refreshed since this signer read them."""


def presign_upload_parts(
    client: Any,
    *,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[UploadPart],
    expires_in: int,
) -> list[str]:
    """One presigned UploadPart URL per part, in order, identical to botocore's own.

    ``client`` is a boto3 S3 client configured for SigV4 (``signature_version="s3v4"``).
    Raises what botocore raises when no credentials are configured.
    """
    if not parts:
        return []
    unsized = [index for index, part in enumerate(parts) if part.size is None]
    if not unsized or len(unsized) == len(parts):
        return _sign_batch(client, bucket, key, upload_id, parts, expires_in)
    # Both kinds: each signs other headers, so each is a batch of its own.
    sized = [index for index, part in enumerate(parts) if part.size is not None]
    urls: list[str] = [""] * len(parts)
    for indexes in (sized, unsized):
        batch = [parts[index] for index in indexes]
        for index, url in zip(
            indexes, _sign_batch(client, bucket, key, upload_id, batch, expires_in), strict=True
        ):
            urls[index] = url
    return urls


def _sign_batch(
    client: Any,
    bucket: str,
    key: str,
    upload_id: str,
    parts: Sequence[UploadPart],
    expires_in: int,
) -> list[str]:
    """Parts that are all sized, or all size-less: fast, unless botocore disagrees."""
    problem = "the fast signature differs from botocore's"
    for _attempt in range(2):
        try:
            # Credentials first: if botocore refreshes them as it signs, the template says so.
            credentials = _frozen_credentials(client)
            template = _botocore_url(client, bucket, key, upload_id, parts[0], expires_in)
            batch = _Batch(template, credentials, parts[0])
        except _OtherCredentials:
            problem = "the credentials changed while signing"
            continue
        except _Unexpected as exc:
            problem = str(exc)
            break
        urls = batch.sign_all(parts)
        if urls[0] == template:
            return urls
    logger.warning("UploadPart URLs signed by botocore (slow path): %s", problem)
    return [_botocore_url(client, bucket, key, upload_id, part, expires_in) for part in parts]


def _botocore_url(
    client: Any, bucket: str, key: str, upload_id: str, part: UploadPart, expires_in: int
) -> str:
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "UploadId": upload_id,
        "PartNumber": part.part_number,
    }
    if part.size is not None:
        params["ContentLength"] = part.size
    if part.checksum_sha256 is not None:
        params["ChecksumSHA256"] = part.checksum_sha256
    url: str = client.generate_presigned_url("upload_part", Params=params, ExpiresIn=expires_in)
    return url


def _frozen_credentials(client: Any) -> Any:
    """The client's credentials as botocore signs with them (refreshed if they expire soon)."""
    getter = getattr(client, "_get_credentials", None)  # botocore's, and private
    if getter is not None:
        credentials = getter()
    else:
        credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is None:
        raise _Unexpected("no credentials to sign with")  # botocore then says why
    return credentials.get_frozen_credentials()


def _host(scheme: str, hostname: str | None, port: int | None) -> str:
    """The ``host`` header botocore signs: lowercase, without a default port."""
    if not hostname:
        raise _Unexpected("no host in botocore's URL")
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return host


class _Variant:
    """The constant pieces of every URL and canonical request signing one set of headers."""

    __slots__ = ("canonical_head", "canonical_mid", "canonical_tail", "url_head", "url_mid")

    def __init__(
        self,
        base: str,
        path: str,
        host: str,
        operation: list[tuple[str, str]],
        auth: list[tuple[str, str]],
        signed_headers: str,
    ) -> None:
        auth = [
            (name, quote(signed_headers, safe="-_.~") if name == "X-Amz-SignedHeaders" else value)
            for name, value in auth
        ]
        # The URL keeps botocore's order: operation parameters, then authentication ones.
        query = "&".join(f"{name}={value}" for name, value in operation + auth)
        self.url_head, self.url_mid = f"{base}?{query}&X-Amz-Signature=".split(_HOLE)
        # The canonical query string sorts the (already encoded) parameters.
        canonical = "&".join(f"{name}={value}" for name, value in sorted(operation + auth))
        before, after = canonical.split(_HOLE)
        self.canonical_head = f"PUT\n{path}\n{before}"
        # Sized: ...<number>{mid}<size>{tail[0]}[<checksum>{tail[1]}]; size-less: the same
        # with no size (``mid`` then ends the query, and ``tail[0]`` names the host).
        sized = signed_headers.startswith("content-length;")
        self.canonical_mid = f"{after}\ncontent-length:" if sized else after
        if signed_headers.endswith(";x-amz-checksum-sha256"):
            self.canonical_tail = (
                f"\nhost:{host}\nx-amz-checksum-sha256:",
                f"\n\n{signed_headers}\n{_UNSIGNED_PAYLOAD}",
            )
        else:
            self.canonical_tail = (f"\nhost:{host}\n\n{signed_headers}\n{_UNSIGNED_PAYLOAD}", "")


class _Batch:
    """The signing state of one batch, taken from botocore's URL for its first part."""

    def __init__(self, template: str, credentials: Any, first: UploadPart) -> None:
        url = urlsplit(template)
        if url.fragment or not url.query:
            raise _Unexpected("botocore's URL has no query or has a fragment")
        operation: list[tuple[str, str]] = []
        auth: dict[str, str] = {}
        for pair in url.query.split("&"):
            name, _, value = pair.partition("=")
            if name.startswith("X-Amz-"):
                auth[name] = value
            elif name == "partNumber":
                if value != str(first.part_number):
                    raise _Unexpected("botocore's URL names another part number")
                operation.append((name, _HOLE))
            else:
                operation.append((name, value))
        names = [name for name in _AUTH_PARAMS if name in auth]
        required = [name for name in _AUTH_PARAMS if name != "X-Amz-Security-Token"]
        if list(auth) != names or not set(required) <= set(names):
            raise _Unexpected(f"not a SigV4 UploadPart URL: {sorted(auth)}")
        if _HOLE not in dict(operation).values():
            raise _Unexpected("no partNumber in botocore's URL")
        self.sized = first.size is not None
        if self.sized:
            plain_headers, checksum_headers = _PLAIN_HEADERS, _CHECKSUM_HEADERS
        else:
            plain_headers, checksum_headers = _UNSIZED_PLAIN_HEADERS, _UNSIZED_CHECKSUM_HEADERS
        expected = plain_headers if first.checksum_sha256 is None else checksum_headers
        signed_headers = unquote(auth["X-Amz-SignedHeaders"])
        if signed_headers != expected or auth["X-Amz-Algorithm"] != _ALGORITHM:
            raise _Unexpected(f"botocore signed {signed_headers!r}, not {expected!r}")
        access_key, _, scope = unquote(auth["X-Amz-Credential"]).partition("/")
        steps = scope.split("/")
        if len(steps) != 4 or steps[3] != "aws4_request":
            raise _Unexpected(f"unexpected credential scope {scope!r}")
        date, region, service, terminator = steps
        token = auth.get("X-Amz-Security-Token")
        if (
            access_key != credentials.access_key
            or (unquote(token) if token is not None else None) != credentials.token
        ):
            raise _OtherCredentials
        timestamp = auth["X-Amz-Date"]
        if timestamp[:8] != date:
            raise _Unexpected("X-Amz-Date and the credential scope disagree")

        signing_key = f"AWS4{credentials.secret_key}".encode()
        for step in (date, region, service, terminator):
            signing_key = hmac.digest(signing_key, step.encode(), "sha256")
        self._signing_key = signing_key
        self._string_to_sign_head = f"{_ALGORITHM}\n{timestamp}\n{scope}\n"

        base = f"{url.scheme}://{url.netloc}{url.path}"
        host = _host(url.scheme, url.hostname, url.port)
        signed = [(name, value) for name, value in auth.items() if name != "X-Amz-Signature"]
        self._plain = _Variant(base, url.path, host, operation, signed, plain_headers)
        self._checksum = _Variant(base, url.path, host, operation, signed, checksum_headers)

    def sign_all(self, parts: Sequence[UploadPart]) -> list[str]:
        """Every part's URL; the parts are all sized or all size-less, as the first was."""
        # Hot loop: everything constant is bound to locals first.
        key = self._signing_key
        sts_head = self._string_to_sign_head
        digest, sha256 = hmac.digest, hashlib.sha256
        plain, checksum = self._plain, self._checksum
        sized = self.sized
        urls = []
        for number, size, checksum_sha256 in parts:
            if (size is not None) is not sized:
                raise ValueError("a batch mixes sized and size-less parts")
            length = size if sized else ""  # a size-less URL signs no content-length
            if checksum_sha256 is None:
                v = plain
                canonical = (
                    f"{v.canonical_head}{number}{v.canonical_mid}{length}{v.canonical_tail[0]}"
                )
            else:
                v = checksum
                canonical = (
                    f"{v.canonical_head}{number}{v.canonical_mid}{length}"
                    f"{v.canonical_tail[0]}{checksum_sha256}{v.canonical_tail[1]}"
                )
            string_to_sign = sts_head + sha256(canonical.encode()).hexdigest()
            signature = digest(key, string_to_sign.encode(), "sha256").hex()
            urls.append(f"{v.url_head}{number}{v.url_mid}{signature}")
        return urls

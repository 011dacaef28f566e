"""Verify Amazon SNS messages as AWS documents it, and confirm HTTP(S) subscriptions.

A message is trusted only when all of these hold (checked in this order):

1. it carries every field its ``Type`` signs, plus ``Signature``, ``SignatureVersion`` and
   ``SigningCertURL``;
2. its ``TopicArn`` is one of ``settings.sns_topic_arns`` (none configured refuses every
   message: anyone can subscribe an endpoint to a topic of their own, and SNS will sign what
   that topic publishes);
3. ``SigningCertURL`` matches ``settings.sns_cert_url_pattern`` (by default only
   ``https://sns.<region>.amazonaws.com/...pem``);
4. the certificate found there (fetched with a timeout and a size cap, then kept in memory per
   URL) is valid now and holds an RSA key;
5. ``Signature`` is that key's signature of the canonical string (each signed field's name and
   value, one per line, in AWS's order) with SHA1withRSA (``SignatureVersion`` "1") or
   SHA256withRSA ("2").

See https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html. No
well-kept library does this (the PyPI candidates are unmaintained or need Python 3.13), so it
is done here with ``cryptography``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bigupload import clock
from bigupload.config import Settings
from bigupload.errors import AppError

log = logging.getLogger("bigupload.storage_events.sns")

#: The fields each message type signs, in the order of the string to sign.
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
#: Signed only when present.
OPTIONAL_FIELDS = frozenset({"Subject"})
SIGNATURE_FIELDS = ("Signature", "SignatureVersion", "SigningCertURL")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

#: A signing certificate larger than this is refused (AWS's are about 2 KiB).
MAX_CERTIFICATE_SIZE = 64 * 1024
FETCH_TIMEOUT = 5.0
#: Certificates kept in memory, at most (AWS rotates them rarely).
CACHE_SIZE = 64


class SignatureInvalid(AppError):
    """The message is not provably from Amazon SNS."""

    status = 403
    code = "sns_signature_invalid"


class TopicNotAllowed(AppError):
    status = 403
    code = "sns_topic_not_allowed"


class CertificateUnavailable(AppError):
    """The signing certificate could not be fetched now: SNS should retry."""

    status = 503
    code = "sns_certificate_unavailable"


class ConfirmationFailed(AppError):
    status = 502
    code = "sns_confirmation_failed"


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string AWS signs for ``message`` (its fields must be checked first)."""
    lines = []
    for name in SIGNED_FIELDS[message["Type"]]:
        value = message.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode()


def check_fields(message: Mapping[str, Any]) -> None:
    """Every field the message's type signs (and the signature's) is a string."""
    kind = message.get("Type")
    if kind not in SIGNED_FIELDS:
        raise SignatureInvalid(f"{kind!r} is not an SNS message type")
    for name in (*SIGNED_FIELDS[kind], *SIGNATURE_FIELDS):
        value = message.get(name)
        if value is None and name in OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str) or not value:
            raise SignatureInvalid(
                f"the SNS {kind} has no {name}: it cannot be verified, so it is refused"
            )


def _same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


class SnsVerifier:
    """Verifies SNS messages for one configuration; keeps fetched certificates in memory."""

    def __init__(
        self,
        settings: Settings,
        *,
        timeout: float = FETCH_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.topics = frozenset(settings.sns_topic_arns)
        self.cert_url_pattern = re.compile(settings.sns_cert_url_pattern)
        self.timeout = timeout
        self._transport = transport
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = asyncio.Lock()

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, transport=self._transport
        )

    async def verify(self, message: Mapping[str, Any]) -> Mapping[str, Any]:
        """``message`` itself once it is proven to come from an allowed SNS topic."""
        check_fields(message)
        topic = message["TopicArn"]
        if topic not in self.topics:
            raise TopicNotAllowed(
                f"SNS messages from topic {topic!r} are not accepted"
                + (
                    ": no topic is allowed (set BIGUPLOAD_SNS_TOPIC_ARNS)"
                    if not self.topics
                    else ""
                ),
                details={"topic_arn": topic},
            )
        algorithm = _HASHES.get(message["SignatureVersion"])
        if algorithm is None:
            raise SignatureInvalid(
                f"SignatureVersion {message['SignatureVersion']!r} is not 1 or 2"
            )
        url = message["SigningCertURL"]
        if not self.allowed_cert_url(url):
            raise SignatureInvalid(
                "the SigningCertURL is not an Amazon SNS certificate URL "
                "(BIGUPLOAD_SNS_CERT_URL_PATTERN)",
                details={"signing_cert_url": url},
            )
        try:
            signature = base64.b64decode(message["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise SignatureInvalid("the Signature is not base64") from None
        public_key = (await self.certificate(url)).public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise SignatureInvalid("the signing certificate does not hold an RSA key")
        try:
            public_key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SignatureInvalid(
                "the SNS message's signature does not match its content"
            ) from None
        return message

    def allowed_cert_url(self, url: str) -> bool:
        if any(ch.isspace() or ord(ch) < 32 for ch in url):
            return False
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            return False
        return self.cert_url_pattern.search(url) is not None

    async def certificate(self, url: str) -> x509.Certificate:
        """The certificate at ``url``, valid now: from memory, or fetched once."""
        async with self._lock:
            certificate = self._certificates.get(url)
            if certificate is None:
                certificate = _load(await self._fetch(url))
                self._certificates[url] = certificate
                while len(self._certificates) > CACHE_SIZE:
                    self._certificates.popitem(last=False)
        now = clock.now()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SignatureInvalid("the signing certificate is not valid now")
        return certificate

    async def _fetch(self, url: str) -> bytes:
        try:
            async with self._client() as client, client.stream("GET", url) as response:
                if response.status_code >= 500:
                    raise CertificateUnavailable(
                        f"the signing certificate could not be fetched (HTTP "
                        f"{response.status_code}); try again later"
                    )
                if response.status_code != 200:
                    raise SignatureInvalid(
                        f"the signing certificate could not be fetched (HTTP "
                        f"{response.status_code})"
                    )
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_CERTIFICATE_SIZE:
                        raise SignatureInvalid("the signing certificate is too large")
                return bytes(body)
        except httpx.HTTPError as exc:
            log.warning("SNS signing certificate %s could not be fetched: %s", url, exc)
            raise CertificateUnavailable(
                "the signing certificate could not be fetched; try again later"
            ) from None

    async def confirm_subscription(self, message: Mapping[str, Any]) -> None:
        """Confirm a verified ``SubscriptionConfirmation`` by visiting its ``SubscribeURL``.

        The URL must be on the same scheme and host as the signing certificate (for AWS:
        ``https://sns.<region>.amazonaws.com``), so a message cannot send us anywhere else.
        """
        url = message["SubscribeURL"]
        if not _same_origin(url, message["SigningCertURL"]):
            raise SignatureInvalid(
                "the SubscribeURL is not on the host of the signing certificate",
                details={"subscribe_url": url},
            )
        try:
            async with self._client() as client:
                response = await client.get(url)
        except httpx.HTTPError as exc:
            raise ConfirmationFailed(f"the subscription could not be confirmed: {exc}") from None
        if response.status_code != 200:
            raise ConfirmationFailed(
                f"the subscription could not be confirmed: HTTP {response.status_code}"
            )
        log.info("confirmed the SNS subscription to topic %s", message["TopicArn"])


def _load(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise SignatureInvalid("the signing certificate is not a PEM certificate") from None

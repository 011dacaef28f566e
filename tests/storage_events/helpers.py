"""What the storage-event tests share: event bodies as stores send them, and an SNS look-alike
that signs messages exactly as AWS documents it and serves its certificate on loopback."""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote_plus

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from sqlalchemy import select

from bigupload.files.models import FileRecord

TOPIC = "arn:aws:sns:us-east-1:123456789012:bigupload-events"
OTHER_TOPIC = "arn:aws:sns:us-east-1:999999999999:someone-elses-topic"
#: Loopback certificate URLs only (the default allows only Amazon's).
LOOPBACK_CERT_PATTERN = r"^http://127\.0\.0\.1:\d+/[^?#]*\.pem$"


def s3_record(
    bucket: str,
    key: str,
    event_name: str = "ObjectCreated:Put",
    *,
    size: int | None = None,
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
    sequencer: str = "0055AED6DCD90281E5",
) -> dict[str, Any]:
    """One record as AWS S3 documents it (the key URL-encoded as S3 encodes it)."""
    obj: dict[str, Any] = {"key": quote_plus(key), "eTag": etag, "sequencer": sequencer}
    if size is not None:
        obj["size"] = size
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "bigupload",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def minio_body(
    bucket: str, key: str, event_name: str = "s3:ObjectCreated:Put", **record: Any
) -> dict[str, Any]:
    """MinIO's webhook body: S3's records (eventName with ``s3:``) plus EventName and Key."""
    inner = s3_record(bucket, key, event_name, **record)
    inner["eventSource"] = "minio:s3"
    return {"EventName": event_name, "Key": f"{bucket}/{key}", "Records": [inner]}


async def record_of(app: FastAPI, file_id: str) -> FileRecord:
    async with app.state.sessionmaker() as session:
        record = (
            await session.execute(select(FileRecord).where(FileRecord.id == uuid.UUID(file_id)))
        ).scalar_one()
        return record


# -- SNS ---------------------------------------------------------------------------------------


def _canonical(message: dict[str, Any]) -> bytes:
    """AWS's string to sign, written out from its documentation."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{message[n]}\n" for n in names if n in message).encode()


@dataclass
class FakeSns:
    """Signs SNS messages with its own key; serves the certificate and the SubscribeURL."""

    base_url: str
    key: rsa.RSAPrivateKey
    seen: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return f"{self.base_url}/SimpleNotificationService-test.pem"

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signed = {**message, "SignatureVersion": version, "SigningCertURL": self.cert_url}
        signature = self.key.sign(_canonical(signed), padding.PKCS1v15(), algorithm)
        signed["Signature"] = base64.b64encode(signature).decode()
        return signed

    def notification(self, message: str, *, topic: str = TOPIC, **extra: Any) -> dict[str, Any]:
        return {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": message,
            "Timestamp": "2026-01-01T00:00:00.000Z",
            "UnsubscribeURL": f"{self.base_url}/?Action=Unsubscribe&SubscriptionArn={topic}:1",
            **extra,
        }

    def confirmation(
        self, kind: str = "SubscriptionConfirmation", *, topic: str = TOPIC
    ) -> dict[str, Any]:
        token = uuid.uuid4().hex
        return {
            "Type": kind,
            "MessageId": str(uuid.uuid4()),
            "Token": token,
            "TopicArn": topic,
            "Message": f"You have chosen to subscribe to the topic {topic}.",
            "SubscribeURL": f"{self.base_url}/?Action=ConfirmSubscription&TopicArn={topic}"
            f"&Token={token}",
            "Timestamp": "2026-01-01T00:00:00.000Z",
        }


def _certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@contextmanager
def fake_sns() -> Iterator[FakeSns]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _certificate(key)
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path.startswith("/huge"):
                body = pem + b"\n" * (64 * 1024)  # over the size cap
            elif self.path.endswith(".pem"):
                body = pem
            else:
                body = b"<ConfirmSubscriptionResponse/>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeSns(f"http://127.0.0.1:{server.server_address[1]}", key, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

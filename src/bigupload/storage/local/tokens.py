"""Signed tokens for the local store's URLs: each names the key and everything it allows.

A PUT token carries the key, content type, length, optional SHA-256 and expiry; a GET token
the key, the filename to present and the expiry; a part token the key, the multipart upload's
id, the part number, the length (absent: any, up to S3's 5 GiB part limit), optional SHA-256
and expiry; a POST token (the policy of a browser form upload) the key, content type, largest
size and expiry. They are HS256 JWTs with an audience per purpose, so a download link can never
be replayed as an upload link, nor a part link as a whole-object one.

Tokens are made without PyJWT (one per create, and part tokens by the thousand): the header
segment is encoded once, and the signature is one HMAC-SHA256 of ``header.payload``, a standard
HS256 JWT verified by PyJWT like any other. :meth:`TokenSigner.sign_parts` assembles the payload
from JSON-encoded pieces (about 3 us a token, against 20 through PyJWT); the others encode their
claims exactly as ``jwt.encode`` does, so their tokens are byte for byte PyJWT's.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import jwt

from bigupload import clock

PUT_AUDIENCE = "bigupload:store:put"
GET_AUDIENCE = "bigupload:store:get"
PART_AUDIENCE = "bigupload:store:part"
POST_AUDIENCE = "bigupload:store:post"
_ALGORITHM = "HS256"
#: PyJWT's encoding of claims: compact, ASCII (non-ASCII characters escaped).
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_HEADER_SEGMENT = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=") + b"."


class TokenExpired(Exception):
    """The link's time is up."""


class TokenInvalid(Exception):
    """The link was not signed by us, was altered, or is for another purpose or key."""


@dataclass(frozen=True, slots=True)
class PutGrant:
    key: str
    content_type: str
    size: int
    checksum_sha256: str | None  # base64, as S3 takes it


@dataclass(frozen=True, slots=True)
class PartGrant:
    key: str
    upload_id: str
    part_number: int
    size: int | None  # None: any length up to MAX_PART_SIZE
    checksum_sha256: str | None  # base64, as S3 takes it


@dataclass(frozen=True, slots=True)
class PostGrant:
    key: str
    content_type: str
    max_size: int  # 0 to max_size bytes


@dataclass(frozen=True, slots=True)
class GetGrant:
    key: str
    filename: str
    content_type: str


class TokenSigner:
    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._secret_bytes = secret.encode("utf-8")

    def sign_put(self, grant: PutGrant, expires_at: datetime) -> str:
        claims = {
            "aud": PUT_AUDIENCE,
            "key": grant.key,
            "ct": grant.content_type,
            "len": grant.size,
            "exp": int(expires_at.timestamp()),
        }
        if grant.checksum_sha256:
            claims["sha"] = grant.checksum_sha256
        return self._encode(claims)

    def sign_post(self, grant: PostGrant, expires_at: datetime) -> str:
        claims = {
            "aud": POST_AUDIENCE,
            "key": grant.key,
            "ct": grant.content_type,
            "max": grant.max_size,
            "exp": int(expires_at.timestamp()),
        }
        return self._encode(claims)

    def sign_get(self, grant: GetGrant, expires_at: datetime) -> str:
        claims = {
            "aud": GET_AUDIENCE,
            "key": grant.key,
            "fn": grant.filename,
            "ct": grant.content_type,
            "exp": int(expires_at.timestamp()),
        }
        return self._encode(claims)

    def _encode(self, claims: dict[str, object]) -> str:
        """The HS256 JWT of ``claims``, as ``jwt.encode(claims, secret, "HS256")`` makes it."""
        payload = _dumps(claims).encode()
        signing_input = _HEADER_SEGMENT + base64.urlsafe_b64encode(payload).rstrip(b"=")
        signature = hmac.digest(self._secret_bytes, signing_input, "sha256")
        return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    def sign_parts(
        self,
        key: str,
        upload_id: str,
        parts: Iterable[tuple[int, int | None, str | None]],
        expires_at: datetime,
    ) -> list[str]:
        """One token per ``(part number, size or None, base64 SHA-256 or None)``, in order.

        The caller has validated every value: ``upload_id`` is URL- and JSON-safe, numbers
        and sizes are ints, checksums are base64 (no character JSON would escape).
        """
        prefix = (
            f'{{"aud":"{PART_AUDIENCE}","key":{json.dumps(key)},"uid":"{upload_id}",'
            f'"exp":{int(expires_at.timestamp())},"pn":'
        )
        secret, header, encode, digest = (
            self._secret_bytes,
            _HEADER_SEGMENT,
            base64.urlsafe_b64encode,
            hmac.digest,
        )
        tokens = []
        for number, size, checksum in parts:
            length = "" if size is None else f',"len":{size}'  # no length: any, up to 5 GiB
            if checksum is None:
                payload = f"{prefix}{number}{length}}}"
            else:
                payload = f'{prefix}{number}{length},"sha":"{checksum}"}}'
            signing_input = header + encode(payload.encode()).rstrip(b"=")
            signature = encode(digest(secret, signing_input, "sha256")).rstrip(b"=")
            tokens.append((signing_input + b"." + signature).decode("ascii"))
        return tokens

    def _decode(self, token: str, audience: str, key: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],
                audience=audience,
                # Expiry is checked below against bigupload's clock, which tests can move.
                options={"require": ["exp", "aud", "key"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise TokenInvalid(str(exc)) from exc
        expires = claims.get("exp")
        if not isinstance(expires, int):
            raise TokenInvalid("token has no expiry")
        if expires <= clock.now().timestamp():
            raise TokenExpired
        if claims.get("key") != key:
            raise TokenInvalid("token is for another key")
        return claims

    def verify_put(self, token: str, key: str) -> PutGrant:
        claims = self._decode(token, PUT_AUDIENCE, key)
        size, content_type, sha = claims.get("len"), claims.get("ct"), claims.get("sha")
        if not isinstance(size, int) or not isinstance(content_type, str):
            raise TokenInvalid("token lacks its constraints")
        return PutGrant(key, content_type, size, sha if isinstance(sha, str) else None)

    def verify_post(self, token: str, key: str) -> PostGrant:
        """The form upload the token allows, if it was signed for ``key`` (the form's)."""
        claims = self._decode(token, POST_AUDIENCE, key)
        largest, content_type = claims.get("max"), claims.get("ct")
        if type(largest) is not int or not isinstance(content_type, str):
            raise TokenInvalid("token lacks its constraints")
        return PostGrant(key, content_type, largest)

    def verify_get(self, token: str, key: str) -> GetGrant:
        claims = self._decode(token, GET_AUDIENCE, key)
        filename, content_type = claims.get("fn"), claims.get("ct")
        if not isinstance(filename, str) or not isinstance(content_type, str):
            raise TokenInvalid("token lacks its filename")
        return GetGrant(key, filename, content_type)

    def verify_part(self, token: str, key: str, upload_id: str, part_number: str) -> PartGrant:
        """The part the token allows, if it was signed for this key, upload and part number.

        ``upload_id`` and ``part_number`` are the URL's query values, as sent: a token signed
        for one part is refused for any other.
        """
        claims = self._decode(token, PART_AUDIENCE, key)
        uid, number, size, sha = (claims.get(n) for n in ("uid", "pn", "len", "sha"))
        if not isinstance(uid, str) or not isinstance(number, int):
            raise TokenInvalid("token lacks its constraints")
        if "len" in claims and not isinstance(size, int):
            raise TokenInvalid("token lacks its constraints")  # absent is any length, not null
        if uid != upload_id or str(number) != part_number:
            raise TokenInvalid("token is for another upload or part")
        length = size if isinstance(size, int) else None
        return PartGrant(key, uid, number, length, sha if isinstance(sha, str) else None)

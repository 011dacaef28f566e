"""Signed tokens for the local store's URLs: each names the key and everything it allows.

A PUT token carries the key, content type, length, optional SHA-256 and expiry; a GET token
the key, the filename to present and the expiry. They are HS256 JWTs with an audience per
purpose, so a download link can never be replayed as an upload link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import jwt

from bigupload import clock

PUT_AUDIENCE = "bigupload:store:put"
GET_AUDIENCE = "bigupload:store:get"
_ALGORITHM = "HS256"


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
class GetGrant:
    key: str
    filename: str
    content_type: str


class TokenSigner:
    def __init__(self, secret: str) -> None:
        self._secret = secret

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
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

    def sign_get(self, grant: GetGrant, expires_at: datetime) -> str:
        claims = {
            "aud": GET_AUDIENCE,
            "key": grant.key,
            "fn": grant.filename,
            "ct": grant.content_type,
            "exp": int(expires_at.timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=_ALGORITHM)

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

    def verify_get(self, token: str, key: str) -> GetGrant:
        claims = self._decode(token, GET_AUDIENCE, key)
        filename, content_type = claims.get("fn"), claims.get("ct")
        if not isinstance(filename, str) or not isinstance(content_type, str):
            raise TokenInvalid("token lacks its filename")
        return GetGrant(key, filename, content_type)

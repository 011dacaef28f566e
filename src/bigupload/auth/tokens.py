"""JSON Web Tokens from the identity provider already in place, as an alternative to API keys.

A token is accepted when its signature verifies (a shared HS256 secret, or the provider's
public keys from its JWKS URL), it has not expired, and its issuer and audience are the
configured ones. The owner is one claim of it (``sub`` by default), made safe for object keys,
behind a prefix (``BIGUPLOAD_JWT_OWNER_PREFIX``, ``jwt.``) that no API key's owner may begin with:
a token whose subject is ``admin`` is the owner ``jwt.admin``, never the key owner ``admin``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import jwt

from bigupload import clock
from bigupload.auth.keys import valid_name
from bigupload.errors import AppError, Unauthenticated

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_LEEWAY_SECONDS = 30
_MAX_OWNER = 64
_DIGEST_SUFFIX = 13  # "-" and 12 hexadecimal digits


class IdentityProviderUnavailable(AppError):
    status = 503
    code = "identity_provider_unavailable"


def owner_from_claim(value: str, prefix: str = "") -> str:
    """The claim as an owner name behind ``prefix``: itself when safe, else a readable form plus
    a digest; at most 64 characters, as every owner."""
    if valid_name(prefix + value):
        return prefix + value
    room = min(40, _MAX_OWNER - len(prefix) - _DIGEST_SUFFIX)
    readable = _UNSAFE.sub("_", value)[:room].strip("._-") or "user"
    return f"{prefix}{readable}-{hashlib.sha256(value.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    owner: str
    subject: str
    expires_at: datetime


class TokenVerifier:
    def __init__(
        self,
        *,
        audience: str,
        issuer: str | None = None,
        secret: str | None = None,
        jwks_url: str | None = None,
        algorithms: tuple[str, ...] | None = None,
        owner_claim: str = "sub",
        owner_prefix: str = "",
    ) -> None:
        if (secret is None) == (jwks_url is None):
            raise ValueError("configure exactly one of a JWT secret and a JWKS URL")
        self.audience = audience
        self.issuer = issuer
        self.secret = secret
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, timeout=10) if jwks_url else None
        self.algorithms = list(algorithms or (("HS256",) if secret else ("RS256", "ES256")))
        self.owner_claim = owner_claim
        self.owner_prefix = owner_prefix

    async def _key(self, token: str) -> Any:
        if self.secret is not None:
            return self.secret
        assert self.jwks is not None
        try:
            # The key set is cached; fetching it is blocking I/O, so it never runs on the loop.
            signing_key = await anyio.to_thread.run_sync(self.jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailable(
                "the identity provider's keys cannot be fetched; try again later"
            ) from exc
        except (jwt.PyJWKClientError, jwt.DecodeError) as exc:
            raise Unauthenticated("the token is not valid", code="invalid_token") from exc
        return signing_key.key

    async def verify(self, token: str) -> VerifiedToken:
        key = await self._key(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=_LEEWAY_SECONDS,
                # Expiry is checked below by bigupload's clock, which tests can move.
                options={"require": ["exp", self.owner_claim], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}", code="invalid_token") from None
        expires = claims["exp"]
        if not isinstance(expires, int | float):
            raise Unauthenticated("the token's 'exp' claim is not a number", code="invalid_token")
        if expires + _LEEWAY_SECONDS <= clock.now().timestamp():
            raise Unauthenticated("the token has expired", code="token_expired")
        subject = claims[self.owner_claim]
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated(
                f"the token's {self.owner_claim!r} claim is not a string", code="invalid_token"
            )
        return VerifiedToken(
            owner=owner_from_claim(subject, self.owner_prefix),
            subject=subject,
            expires_at=datetime.fromtimestamp(expires, UTC),
        )

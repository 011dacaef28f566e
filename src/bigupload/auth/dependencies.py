"""Who is calling: the ``Authorization: Bearer <key>`` of an API request, or else the web page's
session cookie (see :mod:`bigupload.auth.sessions`)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from starlette.requests import HTTPConnection

from bigupload import clock
from bigupload.auth import repository
from bigupload.auth.cache import KeyCache
from bigupload.auth.keys import KEY_PREFIX, hash_key
from bigupload.auth.sessions import (
    COOKIE_NAME,
    MAX_TOKEN_LENGTH,
    clear_cookie_header,
    csrf_passed,
    csrf_token,
)
from bigupload.auth.tokens import TokenVerifier
from bigupload.config import Settings
from bigupload.db import session_scope
from bigupload.errors import Forbidden, Unauthenticated


class _Bearer(HTTPBearer):
    """FastAPI's ``HTTPBearer`` (the same OpenAPI security scheme; no error of its own), but
    answering the token alone, not a pydantic model made for it on every request."""

    async def __call__(self, request: HTTPConnection) -> str | None:  # type: ignore[override]
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        return token if token and scheme.lower() == "bearer" else None


_bearer = _Bearer(
    scheme_name="HTTPBearer",
    auto_error=False,
    description="An API key made with `bigupload keys create`, or, when configured, a JWT "
    "from your identity provider.",
)
_MAX_KEY = 256
_MAX_TOKEN = 16 * 1024


@dataclass(frozen=True, slots=True)
class Principal:
    owner: str
    key_name: str
    #: How the caller came: an API key, a JWT, or the web page's session cookie.
    via: Literal["key", "jwt", "session"] = "key"
    #: For ``via="session"``: the session, its end, and the CSRF token its requests carry.
    session_id: uuid.UUID | None = None
    expires_at: datetime | None = None
    csrf_token: str | None = None


#: A registry session of its own, for a lookup on a cache miss; committed and closed after.
_registry = contextlib.asynccontextmanager(session_scope)


async def current_principal(
    request: Request,
    bearer: Annotated[str | None, Depends(_bearer)],
) -> Principal:
    """Who calls. A cached key, token or session costs no registry session: only a cache miss
    opens one (its own, closed before the route runs) to look the caller up."""
    if bearer is None:
        cookie = request.cookies.get(COOKIE_NAME)
        if not cookie:
            raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
        principal = await _signed_in(request, cookie)
    else:
        # The hot path: a cached key costs one digest and one dictionary read.
        token = bearer
        verifier: TokenVerifier | None = request.app.state.token_verifier
        if len(token) > (_MAX_TOKEN if verifier else _MAX_KEY):
            raise Unauthenticated("the credential is too long to be valid", code="invalid_api_key")
        cache: KeyCache[Principal] = request.app.state.key_cache
        digest = hash_key(token)
        cached = cache.get(digest)
        if cached is not None:
            principal = cached
        elif verifier is not None and not token.startswith(KEY_PREFIX):
            verified = await verifier.verify(token)
            principal = Principal(
                owner=verified.owner, key_name=f"jwt:{verified.subject}", via="jwt"
            )
            cache.put(digest, principal, until=verified.expires_at)
        else:
            async with _registry(request.app.state.sessionmaker) as session:
                key = await repository.find_active(session, digest)
            if key is None:
                raise Unauthenticated(
                    "the API key is not valid or was revoked", code="invalid_api_key"
                )
            principal = Principal(owner=key.owner, key_name=key.name)
            cache.put(digest, principal)
    request.state.owner = principal.owner
    await request.app.state.rate_limiter.hit(principal.owner)
    return principal


async def _signed_in(request: Request, token: str) -> Principal:
    """The principal of a session cookie, cached like keys; then the CSRF check."""
    settings: Settings = request.app.state.settings
    cache: KeyCache[Principal] = request.app.state.session_cache
    digest = hash_key(token)
    principal = cache.get(digest)
    if principal is None:
        record = None
        if len(token) <= MAX_TOKEN_LENGTH:
            async with _registry(request.app.state.sessionmaker) as session:
                record = await repository.find_session(session, digest)
        if record is None:
            raise _session_ended(
                request, "the session is not valid (signed out, or its key was revoked)"
            )
        if record.expires_at <= clock.now():
            raise _session_ended(request, "the session has expired", code="session_expired")
        principal = Principal(
            owner=record.owner,
            key_name=record.key_name,
            via="session",
            session_id=record.id,
            expires_at=record.expires_at,
            csrf_token=csrf_token(settings.effective_secret_key, token),
        )
        cache.put(digest, principal, until=record.expires_at)
    assert principal.csrf_token is not None
    if not csrf_passed(request, settings, principal.csrf_token):
        raise Forbidden(
            "this request used the session cookie without proof that it comes from the page: "
            "send X-CSRF-Token (SessionInfo.csrf_token)",
            code="csrf_failed",
        )
    return principal


def _session_ended(request: Request, message: str, *, code: str = "invalid_session") -> Exception:
    """A 401 that also clears the cookie: the browser need not send it again."""
    headers = {
        "WWW-Authenticate": "Bearer",
        "Set-Cookie": clear_cookie_header(request, request.app.state.settings),
    }
    return Unauthenticated(f"{message}; sign in again", code=code, headers=headers)


PrincipalDep = Annotated[Principal, Depends(current_principal, scope="function")]

"""Who is calling: the ``Authorization: Bearer <key>`` of every API request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bigupload.auth import repository
from bigupload.auth.cache import KeyCache
from bigupload.auth.keys import KEY_PREFIX, hash_key
from bigupload.auth.tokens import TokenVerifier
from bigupload.dependencies import SessionDep
from bigupload.errors import Unauthenticated

_bearer = HTTPBearer(
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


async def current_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("an API key is required: send 'Authorization: Bearer <key>'")
    token = credentials.credentials
    verifier: TokenVerifier | None = request.app.state.token_verifier
    if len(token) > (_MAX_TOKEN if verifier else _MAX_KEY):
        raise Unauthenticated("the credential is too long to be valid", code="invalid_api_key")
    cache: KeyCache[Principal] = request.app.state.key_cache
    digest = hash_key(token)
    principal = cache.get(digest)
    if principal is None:
        if verifier is not None and not token.startswith(KEY_PREFIX):
            verified = await verifier.verify(token)
            principal = Principal(owner=verified.owner, key_name=f"jwt:{verified.subject}")
            cache.put(digest, principal, until=verified.expires_at)
        else:
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


PrincipalDep = Annotated[Principal, Depends(current_principal, scope="function")]

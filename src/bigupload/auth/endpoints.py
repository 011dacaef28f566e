"""``/api/v1/session``: the web page signs in with an API key and gets a session cookie."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request, Response, status

from bigupload import clock
from bigupload.auth import repository
from bigupload.auth.cache import KeyCache
from bigupload.auth.dependencies import Principal, PrincipalDep
from bigupload.auth.keys import hash_key
from bigupload.auth.schemas import Limits, SessionInfo, SignIn
from bigupload.auth.sessions import (
    COOKIE_NAME,
    clear_cookie_header,
    client_address,
    cookie_header,
    csrf_token,
    new_token,
    sign_in_allowed,
)
from bigupload.config import Settings
from bigupload.dependencies import SessionDep, SettingsDep
from bigupload.errors import ErrorBody, Forbidden, Unauthenticated
from bigupload.json_body import ApiRoute
from bigupload.rate_limit import RateLimiter

router = APIRouter(prefix="/session", tags=["session"], route_class=ApiRoute)

_FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorBody,
        "description": "`csrf_failed`: the session cookie came without proof that the page "
        "sent the request.",
    }
}


@router.post(
    "",
    response_model=SessionInfo,
    summary="Sign in with an API key: sets the session cookie",
    description="Answers the session and sets `bigupload_session` (HttpOnly, SameSite=Strict). "
    "Attempts are limited per client address (`session_rate_limit`).",
    responses=_FORBIDDEN,
)
async def sign_in(
    body: SignIn, request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> SessionInfo:
    limiter: RateLimiter = request.app.state.sign_in_limiter
    await limiter.hit(f"sign-in:{client_address(request)}")
    if not sign_in_allowed(request, settings):
        raise Forbidden("sign-in from another site's page is refused", code="csrf_failed")
    key = await repository.find_active(session, hash_key(body.api_key))
    if key is None:
        raise Unauthenticated("the API key is not valid or was revoked", code="invalid_api_key")
    token = new_token()
    max_age = settings.session_max_age_seconds
    record = await repository.create_session(
        session, key, hash_key(token), expires_at=clock.now() + timedelta(seconds=max_age)
    )
    response.headers.append("set-cookie", cookie_header(request, settings, token, max_age=max_age))
    return SessionInfo(
        owner=record.owner,
        key_name=record.key_name,
        csrf_token=csrf_token(settings.effective_secret_key, token),
        expires_at=record.expires_at,
        limits=Limits.of(settings),
    )


@router.get(
    "",
    response_model=SessionInfo,
    summary="Who is signed in (the session cookie, or a bearer key)",
    responses=_FORBIDDEN,
)
async def get_session(principal: PrincipalDep, settings: SettingsDep) -> SessionInfo:
    return _info(principal, settings)


@router.delete(
    "",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out: ends the session and clears its cookie",
    description="For bearer callers there is no session: nothing changes.",
    responses=_FORBIDDEN,
)
async def sign_out(
    principal: PrincipalDep, request: Request, session: SessionDep, settings: SettingsDep
) -> Response:
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    if principal.via == "session" and principal.session_id is not None:
        await repository.revoke_session(session, principal.session_id)
        # Committed before the cache forgets it, so no request of this process can find the
        # session still open and cache it again.
        await session.commit()
        cache: KeyCache[Principal] = request.app.state.session_cache
        cache.discard(hash_key(request.cookies[COOKIE_NAME]))
        response.headers.append("set-cookie", clear_cookie_header(request, settings))
    return response


def _info(principal: Principal, settings: Settings) -> SessionInfo:
    return SessionInfo(
        owner=principal.owner,
        key_name=principal.key_name,
        csrf_token=principal.csrf_token,
        expires_at=principal.expires_at,
        limits=Limits.of(settings),
    )

"""SQL for API keys and the web page's sessions."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.auth.keys import display_prefix, generate_key, hash_key
from bigupload.auth.models import ApiKey, WebSession


class KeyExists(Exception):
    """A key of that name exists already."""


async def find_active(session: AsyncSession, key_hash: str) -> ApiKey | None:
    """The unrevoked key with that digest (see :func:`bigupload.auth.keys.hash_key`)."""
    result = await session.execute(
        select(ApiKey).where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    )
    return result.scalar_one_or_none()


async def count(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(ApiKey)) or 0)


async def create(
    session: AsyncSession, name: str, owner: str, *, email: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key and answer it with its clear value, which is never stored.

    ``email`` is where notifications about ``owner``'s files go (the newest key's wins).
    """
    existing = await session.scalar(select(ApiKey.id).where(ApiKey.name == name))
    if existing is not None:
        raise KeyExists(name)
    clear = generate_key()
    record = ApiKey(
        name=name,
        owner=owner,
        prefix=display_prefix(clear),
        key_hash=hash_key(clear),
        created_at=clock.now(),
        email=email,
    )
    session.add(record)
    await session.flush()
    return record, clear


async def list_all(session: AsyncSession) -> Sequence[ApiKey]:
    result = await session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.name))
    return result.scalars().all()


async def revoke(session: AsyncSession, name: str) -> bool:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    return bool(getattr(result, "rowcount", 0))


async def email_of(session: AsyncSession, owner: str) -> str | None:
    """Where to e-mail ``owner``: the address of their newest unrevoked key that has one."""
    result = await session.execute(
        select(ApiKey.email)
        .where(ApiKey.owner == owner, ApiKey.revoked_at.is_(None), ApiKey.email.is_not(None))
        .order_by(ApiKey.created_at.desc(), ApiKey.name.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def create_session(
    session: AsyncSession, key: ApiKey, token_hash: str, *, expires_at: datetime
) -> WebSession:
    """Record a sign-in with ``key``; the key's ended sessions are dropped on the way."""
    now = clock.now()
    await session.execute(
        delete(WebSession).where(
            WebSession.api_key_id == key.id,
            or_(WebSession.expires_at <= now, WebSession.revoked_at.is_not(None)),
        )
    )
    record = WebSession(
        token_hash=token_hash,
        api_key_id=key.id,
        owner=key.owner,
        key_name=key.name,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(record)
    await session.flush()
    return record


async def find_session(session: AsyncSession, token_hash: str) -> WebSession | None:
    """The session with that token digest while it and its key are unrevoked (expired or not)."""
    result = await session.execute(
        select(WebSession)
        .join(ApiKey, ApiKey.id == WebSession.api_key_id)
        .where(
            WebSession.token_hash == token_hash,
            WebSession.revoked_at.is_(None),
            ApiKey.revoked_at.is_(None),
        )
    )
    return result.scalar_one_or_none()


async def revoke_session(session: AsyncSession, session_id: uuid.UUID) -> bool:
    result = await session.execute(
        update(WebSession)
        .where(WebSession.id == session_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
    return bool(getattr(result, "rowcount", 0))

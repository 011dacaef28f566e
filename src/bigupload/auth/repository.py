"""SQL for API keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.auth.keys import display_prefix, generate_key, hash_key
from bigupload.auth.models import ApiKey


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

"""The registry's engine, sessions and column types (SQLite by default, or PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_only

from bigupload.text import loads_replacing_surrogates

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A 64-bit integer that is still SQLite's autoincrementing rowid.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: How long the registry may keep a request waiting (a lock, a connection), unless configured.
DEFAULT_TIMEOUT_SECONDS = 30.0


class DatabaseUnreachable(ConnectionError):
    """The registry's server could not be reached, or did not answer in time.

    The driver raises these as plain ``OSError`` / ``TimeoutError``; the engine raises them as
    this, so that they are told apart from the application's own ``OSError`` s (it is still an
    ``OSError``, for callers that catch those).
    """


def _sqlite_pragmas(busy_timeout: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Autocommit at the driver level; transactions are begun explicitly below as
        # IMMEDIATE, so two writers queue on the busy timeout instead of failing with
        # SQLITE_BUSY_SNAPSHOT.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


#: How every SQLite transaction begins: two writers queue on the busy timeout.
SQLITE_BEGIN = "BEGIN IMMEDIATE"


def _sqlite_begin(dbapi_connection: Any) -> None:
    """The dialect's ``do_begin``: ``BEGIN IMMEDIATE`` on the driver's connection, straight (no
    statement execution around it; errors are wrapped as any statement's, by the engine)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(SQLITE_BEGIN)
    finally:
        cursor.close()


def _asyncpg_ping(dbapi_connection: Any) -> bool:
    """The asyncpg dialect's ``do_ping`` (the pool's pre-ping at every checkout) in one round
    trip instead of three.

    SQLAlchemy's wraps a ``fetchrow(";")`` in a transaction (``BEGIN``, the statement,
    ``ROLLBACK``) so that its prepared statement stays on one server connection behind
    PgBouncer's transaction pooling. A simple query (asyncpg's ``execute`` without
    arguments: no prepared statement) needs no transaction there or anywhere. Failures are
    translated as SQLAlchemy's ping translates them, so a dead connection is still replaced.
    """
    driver = getattr(dbapi_connection, "_connection", None)
    if driver is None or getattr(dbapi_connection, "_transaction", None) is not None:
        dbapi_connection.ping()  # not the adapter this was written for, or inside a transaction
        return True
    try:
        await_only(driver.execute("SELECT 1"))
    except Exception as error:
        dbapi_connection._handle_exception(error)
    return True


def _connect_or_unreachable(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as exc:  # refused, reset, no route, timed out (TimeoutError)
        raise DatabaseUnreachable(f"cannot connect to the registry: {exc!r}") from exc


def _unreachable_mid_statement(context: Any) -> BaseException | None:
    # A statement cut off by the command timeout, or a connection reset under it, is raised
    # by the driver as a bare OSError: the registry is unreachable, not the application wrong.
    original = context.original_exception
    if context.sqlalchemy_exception is None and isinstance(original, OSError):
        return DatabaseUnreachable(f"the registry did not answer: {original!r}")
    return None


def create_engine(url: str, *, echo: bool = False, timeout: float | None = None) -> AsyncEngine:
    """The registry's engine. ``timeout`` (seconds) bounds every wait on the registry: SQLite's
    wait for another process's lock, PostgreSQL's connect (and six times it, a statement), and
    the wait for a pooled connection (twice it)."""
    wait = DEFAULT_TIMEOUT_SECONDS if timeout is None else timeout
    if url.startswith("sqlite"):
        # SQLite has one writer: one connection, and requests queue for it in order, instead
        # of many connections sleeping in SQLite's busy handler. Sessions always end in a
        # commit or a rollback, so the pool need not roll back again on return.
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=1,
            max_overflow=0,
            pool_reset_on_return=None,
            json_deserializer=loads_replacing_surrogates,
            pool_timeout=2 * wait,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas(wait))
        # Each engine has its own dialect: this one's transactions begin as IMMEDIATE.
        engine.sync_engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign]
        return engine
    connect_args: dict[str, Any] = {"timeout": wait}
    if timeout is not None:  # migrations and the CLI's own commands are not cut off
        connect_args["command_timeout"] = 6 * timeout
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        json_deserializer=loads_replacing_surrogates,
        pool_timeout=2 * wait,
        connect_args=connect_args,
    )
    if engine.dialect.driver == "asyncpg":
        engine.sync_engine.dialect.do_ping = _asyncpg_ping  # type: ignore[method-assign]
    event.listen(engine.sync_engine, "do_connect", _connect_or_unreachable)
    event.listen(engine.sync_engine, "handle_error", _unreachable_mid_statement)
    return engine


class RegistrySession(AsyncSession):
    """An :class:`AsyncSession` whose ``commit`` costs nothing when nothing was begun.

    A request's session often runs no statement at all (an API key found in the cache, a
    ticket signed before the shared insert): committing it would begin and commit an empty
    transaction on SQLAlchemy's synchronous side (a greenlet switch and the commit events) to
    the same effect, none: no connection is ever taken for it.
    """

    async def commit(self) -> None:
        if self.in_transaction():
            await super().commit()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine, class_=RegistrySession, expire_on_commit=False, autoflush=False
    )


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for one unit of work: committed if the work succeeds, rolled back otherwise.

    Closed at the end, unless it never held anything (no transaction, no object): closing
    then does nothing, and ``AsyncSession``'s close runs in a task of its own (a task per
    request, for most requests that never touched the registry).
    """
    session = factory()
    try:
        try:
            yield session
            if session.in_transaction():
                await session.commit()
        except BaseException:
            await session.rollback()
            raise
    finally:
        if session.in_transaction() or session.sync_session.identity_map:
            await session.__aexit__(None, None, None)  # close it, even if cancelled

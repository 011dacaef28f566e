"""Core inserts on SQLite as one transaction in ONE call on aiosqlite's thread.

Through SQLAlchemy, every cursor operation of a transaction (``BEGIN``, each cursor, each
``executemany``, ``COMMIT``, each close) is an ``await`` into the thread aiosqlite runs its
``sqlite3`` connection on: about 20 thread hand-offs for a batch of two inserts. Here the batch
is a single function run on that thread, with that ``sqlite3`` connection: ``BEGIN IMMEDIATE``
(as :func:`bigupload.db.create_engine` begins every SQLite transaction), each ``executemany``,
``COMMIT``, or ``ROLLBACK`` on any error.

Nothing else changes: the connection is the one the engine's pool checked out (callers still
queue for SQLite's one connection in order), and the SQL and its parameters are SQLAlchemy's
own: each insert is compiled once for the engine's dialect, as the engine compiles it for an
``executemany``, and each row goes through the compiled statement's bind processors (UUIDs,
datetimes, JSON, type decorators) and scalar defaults, as in SQLAlchemy's execution context.
An error is handed back to SQLAlchemy's connection, which raises it as it raises any statement's
(``IntegrityError``, ``OperationalError`` ..., the connection invalidated when the driver's is
gone, the engine's ``handle_error`` hooks run).

While anyone listens to the connection's statement events (``before_cursor_execute``,
``commit``, ...) or the engine logs its SQL, :meth:`SQLiteBatch.applies` is false and the caller
runs its inserts through SQLAlchemy as usual, so that they see every statement.

It relies on a few private attributes, checked by ``tests/test_sqlite_batch.py``: SQLAlchemy's
``compiled._bind_processors`` and ``Connection._handle_dbapi_exception``, the adapter's
``_handle_exception``, and aiosqlite's ``Connection._execute`` (the call every one of its
methods makes to run a function on its thread) and ``_conn``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Insert
from sqlalchemy.sql.compiler import SQLCompiler

from bigupload.db import SQLITE_BEGIN

#: Connection events that see statements or transactions: while any has a listener, the
#: batch goes through SQLAlchemy.
_STATEMENT_EVENTS = (
    "before_execute",
    "after_execute",
    "before_cursor_execute",
    "after_cursor_execute",
    "begin",
    "commit",
    "rollback",
)

Row = Mapping[str, Any]
Parameters = tuple[Any, ...]


class CompiledInsert:
    """A Core ``INSERT`` compiled once for a dialect, for rows that give exactly ``keys``.

    :attr:`statement` is the SQL the engine would send for an ``executemany`` of such rows,
    and :meth:`parameters` a row's values as the engine would bind them.
    """

    def __init__(self, insert: Insert, keys: Sequence[str], dialect: Dialect) -> None:
        compiled = insert.compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        if not isinstance(compiled, SQLCompiler) or not compiled.positional:
            raise ValueError("needs a dialect with positional parameters")
        if (
            compiled.returning
            or compiled.literal_execute_params
            or compiled.post_compile_params
            or compiled.escaped_bind_names
            or compiled.schema_translate_map
            or compiled._insertmanyvalues  # a multi-VALUES insert (only with RETURNING)
        ):
            raise ValueError(f"not a plain insert of bound values: {compiled.string}")
        defaults: dict[str, Any] = {}
        for column in compiled.insert_prefetch:
            default = column.default
            if default is None or not default.is_scalar:
                raise ValueError(f"{column.key}: only scalar defaults are applied; pass a value")
            defaults[column.key] = getattr(default, "arg", None)
        order = tuple(compiled.positiontup or ())
        if len(set(order)) != len(order) or set(order) != set(keys) | defaults.keys():
            raise ValueError(f"the parameters are not the rows' keys: {order}")
        processors = cast(Mapping[str, Callable[[Any], Any]], compiled._bind_processors)
        #: Per parameter: the row's key, the bind processor (or None), and whether it is a
        #: default (taken from ``defaults``, not the row).
        self._plan = tuple((name, processors.get(name), name in defaults) for name in order)
        self._defaults = defaults
        self.keys = frozenset(keys)
        self.statement: str = compiled.string

    def parameters(self, row: Row) -> Parameters:
        if row.keys() != self.keys:
            raise ValueError(f"a row has {sorted(row)}, not {sorted(self.keys)}")
        defaults = self._defaults
        values = []
        for name, process, is_default in self._plan:
            value = defaults[name] if is_default else row[name]
            values.append(value if process is None else process(value))
        return tuple(values)


class _Transaction:
    """One batch, run on the driver's thread: which statement failed, if one did."""

    def __init__(self, work: list[tuple[str, list[Parameters]]]) -> None:
        self.work = work
        self.failed: tuple[str, list[Parameters]] | None = None

    def __call__(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute(SQLITE_BEGIN)
            for statement, rows in self.work:
                self.failed = (statement, rows)
                connection.executemany(statement, rows)
            self.failed = None
            connection.commit()
        except BaseException:
            connection.rollback()  # nothing to do if the transaction is already over
            raise


def _raise_as_sqlalchemy(
    connection: Connection,
    error: Exception,
    statement: str | None,
    parameters: list[Parameters] | None,
) -> NoReturn:
    """Raise ``error`` (the driver's) as SQLAlchemy raises a failed statement's."""
    adapter = cast(Any, connection.connection.dbapi_connection)
    try:
        adapter._handle_exception(error)  # aiosqlite's "no active connection": OperationalError
    except Exception as translated:
        connection._handle_dbapi_exception(translated, statement, parameters, None, None)
    raise AssertionError("unreachable")  # pragma: no cover


def _sync(connection: AsyncConnection) -> Connection:
    sync = connection.sync_connection
    if sync is None:
        raise ValueError("the connection is not started")
    return sync


class SQLiteBatch:
    """Inserts, each of many rows, in one transaction run in one call on aiosqlite's thread."""

    def __init__(self, engine: AsyncEngine, *inserts: tuple[Insert, Sequence[str]]) -> None:
        if not self.supports(engine):
            raise ValueError("needs SQLite through aiosqlite")
        self._engine = engine.sync_engine
        dialect = engine.dialect
        self.inserts = tuple(CompiledInsert(insert, keys, dialect) for insert, keys in inserts)

    @staticmethod
    def supports(engine: AsyncEngine) -> bool:
        return engine.dialect.name == "sqlite" and engine.dialect.driver == "aiosqlite"

    def applies(self, connection: AsyncConnection) -> bool:
        """Whether nobody watches ``connection``'s statements (else insert through SQLAlchemy)."""
        dispatch = _sync(connection).dispatch
        if any(getattr(dispatch, name) for name in _STATEMENT_EVENTS):
            return False
        return not self._engine.logger.isEnabledFor(logging.INFO)

    async def run(self, connection: AsyncConnection, *rows: Sequence[Row]) -> None:
        """Insert ``rows[i]`` with ``inserts[i]``, all in one transaction, committed on return.

        ``connection`` is the caller's, from the engine's pool, in no transaction.
        """
        if len(rows) != len(self.inserts):
            raise ValueError(f"{len(rows)} lists of rows for {len(self.inserts)} inserts")
        transaction = _Transaction(
            [
                (insert.statement, [insert.parameters(row) for row in batch])
                for insert, batch in zip(self.inserts, rows, strict=True)
                if batch
            ]
        )
        driver = cast(Any, _sync(connection).connection.driver_connection)
        try:
            # As aiosqlite's own methods: its sqlite3 connection (raising if it is closed),
            # then the function on its thread.
            await driver._execute(transaction, driver._conn)
        except Exception as error:
            statement, parameters = transaction.failed or (None, None)
            await connection.run_sync(_raise_as_sqlalchemy, error, statement, parameters)

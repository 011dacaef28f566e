"""Core inserts on PostgreSQL as ONE statement: one round trip for a whole batch.

Through a transaction, a batch of two inserts and its notification is five round trips after
the pool's ping: ``BEGIN``, each insert, ``pg_notify``, ``COMMIT``. Here it is one statement,
run outside any transaction block (``AUTOCOMMIT``), which PostgreSQL runs as one transaction of
its own: each insert a data-modifying ``WITH`` of ``INSERT ... SELECT unnest(...)`` over one
array per column (the batch's rows in order, so their ids follow the order of the rows), and
the statement's own ``SELECT`` the ``pg_notify``, sent when it commits. All of it or none of it
is written.

The statement is SQLAlchemy Core, compiled once and cached by the engine; the arrays go through
the columns' own bind processing (UUIDs, datetimes, JSON, type decorators), and an error is
raised as for any statement (``IntegrityError`` ...), statement events and logging seeing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

Row = Mapping[str, Any]


def _array(table: Table, key: str, name: str) -> Any:
    return func.unnest(bindparam(name, type_=ARRAY(table.c[key].type)))


class PostgresBatch:
    """Rows into tables, and one ``pg_notify``, in one statement."""

    def __init__(self, *inserts: tuple[Table, Sequence[str]]) -> None:
        ctes = []
        #: Per table: its rows' keys, each with the name of its array's parameter.
        self._arrays: list[tuple[tuple[str, str], ...]] = []
        for number, (table, keys) in enumerate(inserts):
            arrays = tuple((key, f"t{number}_{key}") for key in keys)
            rows = select(*(_array(table, key, name) for key, name in arrays))
            ctes.append(insert(table).from_select(list(keys), rows).cte(f"insert_{number}"))
            self._arrays.append(arrays)
        notify = func.pg_notify(bindparam("channel"), bindparam("payload"))
        statement: Select[Any] = select(notify.label("notified"))
        for cte in ctes:
            statement = statement.add_cte(cte)
        self._statement = statement

    @staticmethod
    def supports(engine: AsyncEngine) -> bool:
        return engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg"

    async def run(
        self, connection: AsyncConnection, channel: str, payload: str, *rows: Sequence[Row]
    ) -> None:
        """Insert ``rows[i]`` into the ``i``-th table and notify ``channel`` of ``payload``,
        committed on return.

        ``connection`` is the caller's, from the engine's pool, in no transaction; it is left
        in ``AUTOCOMMIT`` until it is returned to the pool, which resets it.
        """
        if len(rows) != len(self._arrays):
            raise ValueError(f"{len(rows)} lists of rows for {len(self._arrays)} tables")
        parameters: dict[str, Any] = {"channel": channel, "payload": payload}
        for arrays, batch in zip(self._arrays, rows, strict=True):
            for key, name in arrays:
                parameters[name] = [row[key] for row in batch]
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(self._statement, parameters)

"""The SQL statements an engine runs, grouped by transaction (to count them, not to time them)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class Statements:
    def __init__(self) -> None:
        #: One list per transaction begun, of the statements run in it (``BEGIN`` left out).
        self.transactions: list[list[str]] = []
        #: Every statement with its parameters, as the driver was given them.
        self.executed: list[tuple[str, Any]] = []

    def _begin(self, _conn: Any) -> None:
        self.transactions.append([])

    def _execute(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("BEGIN"):
            return
        self.executed.append((statement, parameters))
        if not self.transactions:
            self.transactions.append([])
        self.transactions[-1].append(" ".join(statement.split()))

    @property
    def all(self) -> list[str]:
        return [s for transaction in self.transactions for s in transaction]

    def starting(self, prefix: str) -> list[str]:
        return [s for s in self.all if s.upper().startswith(prefix.upper())]


@contextmanager
def statements_of(engine: AsyncEngine) -> Iterator[Statements]:
    """Record what ``engine`` runs inside the block."""
    found = Statements()
    sync = engine.sync_engine
    event.listen(sync, "begin", found._begin)
    event.listen(sync, "before_cursor_execute", found._execute)
    try:
        yield found
    finally:
        event.remove(sync, "before_cursor_execute", found._execute)
        event.remove(sync, "begin", found._begin)

"""What one ``POST /api/v1/uploads`` costs the registry, the job runner ON: transactions, pings,
statements and the round trips they make, per create, on SQLite and on PostgreSQL.

In one process: the app with its job runner (lifespan started), requests through httpx's ASGI
transport, ``--creates`` creates one at a time with ``--gap`` seconds between them (so that
the background work each create wakes, the outbox dispatcher and the job runner, has done its
part before the next one: as a lone client sees it), counted by SQLAlchemy's engine and pool
events over the whole phase. A figure that does not move with the machine's load.

Round trips on PostgreSQL: the calls into asyncpg that each make one (a simple query such as
``BEGIN``, ``COMMIT``, ``ROLLBACK``; a prepared statement's execution; an ``executemany``; a
``prepare``; the ping's ``fetchrow``), counted by wrapping them. On SQLite, the statements.

    PYTHONPATH=src .venv/bin/python bench/create_statements.py              # both registries
    PYTHONPATH=src .venv/bin/python bench/create_statements.py --registry postgresql
    .venv/bin/python bench/create_statements.py --base 66535a2   # an earlier revision's src
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]

import httpx  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

BODY = {"filename": "bench.bin", "content_type": "application/octet-stream", "size": 1048576}
WARM = 5


@contextlib.contextmanager
def database(registry: str, data: Path) -> Iterator[str]:
    if registry == "sqlite":
        yield f"sqlite+aiosqlite:///{data / 'registry.db'}"
        return
    from tests.support.postgres import PostgresServer

    with PostgresServer() as server:
        yield server.url


def instrument(engine: AsyncEngine, counts: Counter[str]) -> None:
    sync = engine.sync_engine
    event.listen(sync, "begin", lambda _c: counts.update(["BEGIN"]))
    event.listen(sync, "commit", lambda _c: counts.update(["COMMIT"]))
    event.listen(sync, "rollback", lambda _c: counts.update(["ROLLBACK"]))
    event.listen(
        sync,
        "before_cursor_execute",
        lambda _c, _cur, stmt, _params, _ctx, many: counts.update(
            [
                "statements",
                "executemany" if many else "execute",
                "sql: " + " ".join(stmt.split())[:70],
            ]
        ),
    )
    event.listen(sync.pool, "checkout", lambda *_a: counts.update(["checkouts"]))
    dialect = sync.dialect
    ping = dialect.do_ping

    def counted_ping(dbapi_connection: Any) -> bool:
        counts["pings"] += 1
        return bool(ping(dbapi_connection))

    dialect.do_ping = counted_ping  # type: ignore[method-assign]


def count_round_trips(counts: Counter[str]) -> None:
    """Count asyncpg's calls that each make one round trip to the server."""
    import asyncpg
    from asyncpg.prepared_stmt import PreparedStatement

    def counted(owner: Any, name: str) -> None:
        method = getattr(owner, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts["round_trips"] += 1
            return await method(*args, **kwargs)

        setattr(owner, name, wrapper)

    for name in ("execute", "fetchrow", "executemany", "prepare"):
        counted(asyncpg.Connection, name)
    counted(PreparedStatement, "fetch")


async def measure(registry: str, creates: int, gap: float) -> dict[str, float]:
    from bigupload import migrate
    from bigupload.app import create_app
    from bigupload.auth import repository as keys
    from bigupload.config import load_settings
    from bigupload.db import create_engine, create_sessionmaker

    with (
        tempfile.TemporaryDirectory(prefix="bigupload-stmts-") as tmp,
        database(registry, Path(tmp)) as url,
    ):
        engine = create_engine(url)
        await migrate.upgrade(engine)
        async with create_sessionmaker(engine)() as session, session.begin():
            _, key = await keys.create(session, "bench", "bench")
        await engine.dispose()
        settings = load_settings(
            data_dir=Path(tmp),
            database_url=url,
            secret_key="b" * 48,
            public_url="http://bench",
            rate_limit="1000000/second;60000000/minute",
        )
        app = create_app(settings)
        counts: Counter[str] = Counter()
        headers = {"Authorization": f"Bearer {key}"}
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as http,
        ):
            for _ in range(WARM):
                answer = await http.post("/api/v1/uploads", json=BODY, headers=headers)
                assert answer.status_code == 201, answer.text
            await asyncio.sleep(max(gap, 1.0))
            instrument(app.state.engine, counts)
            if registry == "postgresql":
                count_round_trips(counts)
            for _ in range(creates):
                answer = await http.post("/api/v1/uploads", json=BODY, headers=headers)
                assert answer.status_code == 201, answer.text
                await asyncio.sleep(gap)
            counts["creates"] = creates
    if registry == "sqlite":
        counts["round_trips"] = counts["statements"]
    return {name: value / creates for name, value in counts.items() if name != "creates"}


def statements(figures: dict[str, float]) -> list[str]:
    """The statements sent, per create, most frequent first."""
    found = [(v, k[5:]) for k, v in figures.items() if k.startswith("sql: ")]
    return [f"  {v:5.2f}  {text}" for v, text in sorted(found, reverse=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default="sqlite,postgresql")
    parser.add_argument("--creates", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between creates")
    parser.add_argument("--verbose", action="store_true", help="each statement, to stderr")
    parser.add_argument("--base", help="measure this revision's src (exported by git archive)")
    args = parser.parse_args()
    exported = tempfile.TemporaryDirectory(prefix="bigupload-stmts-base-")
    if args.base:
        from revisions import export

        sys.path.insert(0, str(export(args.base, Path(exported.name) / "tree") / "src"))
    logging.basicConfig(level=logging.WARNING)
    columns = ["checkouts", "pings", "BEGIN", "COMMIT", "ROLLBACK", "statements", "round_trips"]
    print("| registry | " + " | ".join(f"{c} / create" for c in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for registry in args.registry.split(","):
        figures = asyncio.run(measure(registry.strip(), args.creates, args.gap))
        print(f"| {registry} | " + " | ".join(f"{figures.get(c, 0):.2f}" for c in columns) + " |")
        if args.verbose:
            print("\n".join(statements(figures)), file=sys.stderr)
    exported.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())

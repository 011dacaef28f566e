"""The registry's sessions: a commit with nothing begun costs nothing; BEGIN is IMMEDIATE."""

from __future__ import annotations

from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from bigupload.db import create_engine, create_sessionmaker, session_scope


async def test_a_commit_with_nothing_begun_begins_and_commits_nothing(database_url: str) -> None:
    engine = create_engine(database_url)
    commits: list[Session] = []
    try:
        async with create_sessionmaker(engine)() as session:
            event.listen(session.sync_session, "after_commit", commits.append)
            await session.commit()  # a request that ran no statement
            assert commits == []
            assert not session.in_transaction()
            assert (await session.scalar(select(1))) == 1
            await session.commit()  # one that did
            assert len(commits) == 1
    finally:
        await engine.dispose()


async def test_sessions_of_a_scope_commit_their_work(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        factory = create_sessionmaker(engine)
        async for session in session_scope(factory):
            await session.execute(text("CREATE TABLE t (n INTEGER)"))
            await session.execute(text("INSERT INTO t VALUES (1)"))
        async for _session in session_scope(factory):  # never touched: nothing to close
            pass
        async for session in session_scope(factory):
            assert (await session.scalar(text("SELECT n FROM t"))) == 1
            assert session.in_transaction()
    finally:
        await engine.dispose()

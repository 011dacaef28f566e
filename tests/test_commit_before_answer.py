"""A client never holds an answer for work the registry has not committed.

Over real HTTP: as soon as the 201 of ``POST /uploads`` arrives, another connection to the
registry must already see the file (the commit happens before the answer, not after it).
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

from bigupload.app import create_app
from bigupload.config import load_settings
from tests.conftest import SECRET
from tests.support.live import LiveServer
from tests.support.net import free_port
from tests.support.service import prepare_registry


def test_the_record_is_committed_before_the_ticket_is_answered(tmp_path: Path) -> None:
    port = free_port()
    settings = load_settings(data_dir=tmp_path, secret_key=SECRET, port=port, rate_limit="off")
    api_key = asyncio.run(prepare_registry(settings.effective_database_url))
    database = tmp_path / "bigupload.db"
    live = LiveServer(create_app(settings), port).start()
    try:
        body = {"filename": "a.bin", "content_type": "application/octet-stream", "size": 10}
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {api_key}"}) as api:
            for _ in range(30):
                ticket = api.post("/api/v1/uploads", json=body).json()
                with sqlite3.connect(database) as reader:
                    found = reader.execute(
                        "SELECT count(*) FROM files WHERE id = ?", (ticket["id"].replace("-", ""),)
                    ).fetchone()[0]
                assert found == 1, "the answer arrived before the record was committed"
    finally:
        live.stop()

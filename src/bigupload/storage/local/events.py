"""The local store tells the service about the objects it stored, as S3 does through events.

Each stored object becomes an S3 event notification (``{"Records": [...]}``, the shape AWS
documents: ``eventName`` ``ObjectCreated:Put``, ``ObjectCreated:Post`` or
``ObjectCreated:CompleteMultipartUpload``, the bucket, the key URL-encoded as S3 encodes it,
size, ETag and sequencer). It is delivered to the store's sink in a background task: a slow or
failing sink never fails or delays the upload that stored the object, and a delivery that fails
is logged (the client's complete call, and the sweeper, still find the object).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote_plus

from bigupload import clock
from bigupload.storage.base import StoredObject

log = logging.getLogger("bigupload.storage.local")

#: Receives one S3 event notification.
EventSink = Callable[[Mapping[str, Any]], Awaitable[object]]

PUT = "ObjectCreated:Put"
POST = "ObjectCreated:Post"
COMPLETE_MULTIPART = "ObjectCreated:CompleteMultipartUpload"

_counter = itertools.count()


def sequencer() -> str:
    """An increasing hex string, as S3's sequencer is (for events of one key, in one process)."""
    return f"{time.time_ns():016X}{next(_counter) % 0x10000:04X}"


def object_created(bucket: str, stored: StoredObject, event_name: str) -> dict[str, Any]:
    """An S3 event notification saying that ``stored`` was created in ``bucket``."""
    now = clock.now()
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "bigupload:local",
                "awsRegion": "",
                "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
                "eventName": event_name,
                "userIdentity": {"principalId": "bigupload"},
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "bigupload-local",
                    "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                    "object": {
                        "key": quote_plus(stored.key),
                        "size": stored.size,
                        "eTag": (stored.etag or "").strip('"'),
                        "sequencer": sequencer(),
                    },
                },
            }
        ]
    }


class EventEmitter:
    """Delivers notifications to a sink in background tasks it keeps until they end."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, sink: EventSink | None, notification: Mapping[str, Any]) -> None:
        """Deliver ``notification`` to ``sink`` (if any) in the background; never raises."""
        if sink is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._deliver(sink, notification))
        except RuntimeError:  # no running loop: nobody could handle it
            log.error("a storage event could not be delivered: no event loop is running")
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _deliver(sink: EventSink, notification: Mapping[str, Any]) -> None:
        try:
            await sink(notification)
        except Exception:
            records = notification.get("Records") or [{}]
            log.exception(
                "the local store's %s event for key %r could not be handled",
                records[0].get("eventName"),
                records[0].get("s3", {}).get("object", {}).get("key"),
            )

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, within: float = 10.0) -> None:
        """Wait for deliveries in flight (at most ``within`` seconds, then cancel them)."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=within)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
            log.warning("%d storage event deliveries did not end in time: cancelled", len(late))

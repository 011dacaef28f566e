"""Sending bytes to the store through presigned URLs: one PUT, or many parts in parallel.

A multipart transfer runs three kinds of threads around one shared HTTP client:

- a *feeder* hashes the next parts (a read pass, spread over a few hashing threads), signs
  them in one request per batch (1, 2, 4, ... parts, up to ``concurrency``, so the first part
  goes out once it alone is hashed) and queues them, never more than a batch ahead of the
  workers, so a URL is signed shortly before it is used;
- *workers* (``concurrency`` of them) stream each part from disk in 1 MiB chunks: memory stays
  near ``concurrency`` MiB whatever the part or file size (to a plain-HTTP URL the kernel
  sends it from the page cache, see :mod:`.direct`);
- the calling thread collects finished parts, reports progress and records state, so a
  progress callback (or Ctrl-C) interrupts the transfer where the caller can handle it.

Every PUT is retried under the client's :class:`~bigupload.client.retry.RetryPolicy`: on
network failures, 5xx and 429 after a backoff (or the server's ``Retry-After``); an expired URL
is signed again; a part the store refuses for its checksum is read, hashed, signed and sent
again, unless the file changed on disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from bigupload.client import retry
from bigupload.client.api import Api, retryable, transport_error
from bigupload.client.direct import DirectPut
from bigupload.client.errors import (
    BigUploadError,
    FileChangedError,
    TransferError,
    is_checksum_refusal,
    is_expired,
    store_error,
)
from bigupload.client.models import SignedPart
from bigupload.client.progress import Meter, ProgressCallback
from bigupload.client.source import Cancelled, SourceFile, b64

log = logging.getLogger("bigupload.client")

#: How often progress is reported, at most (seconds).
REPORT_INTERVAL = 0.1
#: How often the calling thread looks up from waiting (seconds).
_POLL = 0.2
#: A URL with less life than this left is signed again before use (seconds).
_EXPIRY_MARGIN = 30.0


def part_length(size: int, part_size: int, number: int) -> int:
    """The length of part ``number`` (1-based) of a ``size``-byte file."""
    return max(0, min(part_size, size - (number - 1) * part_size))


def put(
    http: httpx.Client,
    url: str,
    headers: dict[str, str],
    source: SourceFile,
    offset: int,
    size: int,
    *,
    stop: Callable[[], bool] | None = None,
    sent: Callable[[int], None] | None = None,
    direct: DirectPut | None = None,
) -> httpx.Response:
    """One PUT of ``size`` bytes of ``source`` from ``offset``, with exactly ``headers``:
    through ``direct`` where it is usable for ``url``, else through ``http``."""
    if direct is not None and direct.usable(url):
        return direct.put(url, headers, source, offset, size, stop=stop, sent=sent)
    body = source.chunks(offset, size, stop=stop, sent=sent)
    return http.put(url, headers={**headers, "Content-Length": str(size)}, content=body)


def refusal(response: httpx.Response, what: str) -> tuple[BigUploadError, str]:
    """The error for a store's non-2xx answer, and what kind it is: ``"expired"``,
    ``"checksum"``, ``"retry"`` or ``"fatal"``."""
    status = response.status_code
    code, message = store_error(response)
    text = f"the store refused {what}: {status} {code or response.reason_phrase}"
    text += f" ({message})" if message else ""
    error = TransferError(text, status=status, code=code or "store_error")
    if is_expired(status, code, message):
        return error, "expired"
    if is_checksum_refusal(status, code, message):
        return error, "checksum"
    if retryable(response):
        return error, "retry"
    return error, "fatal"


def send_single(
    http: httpx.Client,
    policy: retry.RetryPolicy,
    source: SourceFile,
    url: str,
    headers: dict[str, str],
    progress: ProgressCallback | None,
    direct: DirectPut | None = None,
) -> None:
    """Send the whole file with one PUT, retrying what can be retried.

    A 412 on a retry means an earlier attempt was stored though its answer was lost: the
    caller's ``complete`` then checks the stored object.
    """
    meter = Meter(source.size)
    state = {"sent": 0, "reported": 0.0}

    def sent(n: int) -> None:
        state["sent"] += n
        now = time.monotonic()
        if progress is not None and now - state["reported"] >= REPORT_INTERVAL:
            state["reported"] = now
            progress(meter.sample(int(state["sent"]), now))

    def attempt() -> None:
        state["sent"] = 0
        try:
            response = put(http, url, headers, source, 0, source.size, sent=sent, direct=direct)
        except httpx.TransportError as exc:
            raise retry.Retry(transport_error(exc, "the store")) from exc
        if response.is_success:
            return
        if response.status_code == 412:
            log.info("the store holds the object already (an earlier attempt landed)")
            return
        error, kind = refusal(response, "the upload")
        if kind == "checksum":
            if source.changed():
                raise FileChangedError(f"{source.path} changed while it was being uploaded")
            raise retry.Retry(error, immediate=True)
        if kind == "retry":
            raise retry.Retry(
                error, retry_after=retry.retry_after(response.headers.get("retry-after"))
            )
        if kind == "expired":
            error.code = "url_expired"
        raise error

    if progress is not None:
        progress(meter.sample(0))
    retry.call(policy, attempt, "upload")
    if progress is not None:
        progress(meter.sample(source.size))


@dataclass
class _Part:
    number: int
    offset: int
    size: int
    sha256: bytes | None = None
    signed: SignedPart | None = None
    deadline: float = 0.0  # time.monotonic() after which the URL is not to be used


class PartsTransfer:
    """Send parts ``todo`` of a multipart upload; :meth:`run` answers ``{number: etag}``."""

    def __init__(
        self,
        *,
        api: Api,
        http: httpx.Client,
        policy: retry.RetryPolicy,
        source: SourceFile,
        file_id: str,
        part_size: int,
        checksums: bool,
        todo: Sequence[int],
        bytes_done: int,
        concurrency: int,
        progress: ProgressCallback | None = None,
        meter: Meter | None = None,
        on_part: Callable[[int, str], None] | None = None,
        direct: DirectPut | None = None,
    ) -> None:
        self.http = http
        self.direct = direct
        # Waits between attempts end early when the transfer stops, the signing calls' too.
        self.policy = dataclasses.replace(policy, sleep=self._sleep)
        self._policy_sleep = policy.sleep
        self.api = api.with_policy(self.policy)
        self.source = source
        self.file_id = file_id
        self.checksums = checksums
        self.parts = {
            n: _Part(n, (n - 1) * part_size, part_length(source.size, part_size, n)) for n in todo
        }
        self.todo = sorted(self.parts)
        self.concurrency = max(1, min(concurrency, len(self.todo) or 1))
        self.batch_size = max(2, concurrency)
        self.progress = progress
        self.on_part = on_part
        self.meter = meter or Meter(source.size)

        self.stop = threading.Event()
        self.fed = threading.Event()
        self.ready: queue.Queue[_Part | None] = queue.Queue(maxsize=self.concurrency)
        self.events: queue.Queue[tuple[int, str] | BaseException] = queue.Queue()
        self._lock = threading.Lock()
        self._done_bytes = bytes_done
        self._inflight: dict[int, int] = {}
        self._last_report = 0.0
        self._last_reported_bytes = -1

    # -- the calling thread --------------------------------------------------------------------

    def run(self) -> dict[int, str]:
        etags: dict[int, str] = {}
        self._report(force=True)
        if not self.todo:
            return etags
        hashers = ThreadPoolExecutor(
            max_workers=min(4, self.concurrency), thread_name_prefix="bigupload-hash"
        )
        threads = [threading.Thread(target=self._feed, args=(hashers,), daemon=True)]
        threads += [
            threading.Thread(target=self._work, name=f"bigupload-part-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        try:
            remaining = set(self.todo)
            while remaining:
                try:
                    event = self.events.get(timeout=_POLL)
                except queue.Empty:
                    event = None
                    if not any(t.is_alive() for t in threads) and self.events.empty():
                        raise BigUploadError(
                            f"the transfer stopped with {len(remaining)} parts unsent",
                            code="internal_error",
                        ) from None
                if isinstance(event, BaseException):
                    raise event
                if event is not None:
                    number, etag = event
                    remaining.discard(number)
                    etags[number] = etag
                    if self.on_part is not None:
                        self.on_part(number, etag)
                self._report(force=event is not None or not remaining)
            return etags
        finally:
            self.stop.set()
            for _ in range(self.concurrency):  # idle workers stop now, not at their next poll
                with contextlib.suppress(queue.Full):
                    self.ready.put_nowait(None)
            hashers.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + 5
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _sleep(self, seconds: float) -> None:
        if self._policy_sleep is time.sleep:
            stopped = self.stop.wait(seconds)
        else:
            self._policy_sleep(seconds)
            stopped = self.stop.is_set()
        if stopped:
            raise Cancelled

    def _bytes_done(self) -> int:
        with self._lock:
            return self._done_bytes + sum(self._inflight.values())

    def _report(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < REPORT_INTERVAL:
            return
        done = self._bytes_done()
        if not force and done == self._last_reported_bytes:
            return
        self._last_report, self._last_reported_bytes = now, done
        self.progress(self.meter.sample(done, now))

    # -- the feeder ----------------------------------------------------------------------------

    def _feed(self, hashers: ThreadPoolExecutor) -> None:
        try:
            for batch in self._batches():
                if self.checksums:
                    digests = hashers.map(self._hash, batch)
                    for part, digest in zip(batch, digests, strict=True):
                        part.sha256 = digest
                self._sign(batch)
                for part in batch:
                    while True:
                        if self.stop.is_set():
                            return
                        try:
                            self.ready.put(part, timeout=_POLL)
                            break
                        except queue.Full:
                            continue
        except Cancelled:
            return
        except BaseException as exc:
            self.events.put(exc)
        finally:
            self.fed.set()

    def _batches(self) -> Iterator[list[_Part]]:
        """The parts in signing batches of 1, 2, 4, ... up to :attr:`batch_size`: the first
        part is sent once it alone is hashed, not once a whole batch is."""
        start, size = 0, 1
        while start < len(self.todo):
            yield [self.parts[n] for n in self.todo[start : start + size]]
            start, size = start + size, min(self.batch_size, size * 2)

    def _hash(self, part: _Part) -> bytes:
        return self.source.sha256(part.offset, part.size, stop=self.stop.is_set)

    def _sign(self, parts: Sequence[_Part]) -> None:
        checksums = {p.number: b64(p.sha256) for p in parts if p.sha256 is not None}
        asked = time.monotonic()
        signed, server_now = self.api.sign_parts(
            self.file_id, [p.number for p in parts], checksums or None
        )
        by_number = {s.part_number: s for s in signed}
        for part in parts:
            answer = by_number[part.number]
            if answer.size != part.size:
                raise BigUploadError(
                    f"the server signed part {part.number} for {answer.size} bytes; "
                    f"it has {part.size}",
                    code="protocol_error",
                )
            part.signed = answer
            part.deadline = asked + _lifetime(answer, server_now)

    # -- the workers ---------------------------------------------------------------------------

    def _next(self) -> _Part | None:
        while not self.stop.is_set():
            try:
                return self.ready.get(timeout=_POLL)
            except queue.Empty:
                if self.fed.is_set() and self.ready.empty():
                    return None
        return None

    def _work(self) -> None:
        while (part := self._next()) is not None:
            try:
                etag = self._send(part)
            except BaseException as exc:
                with self._lock:
                    self._inflight.pop(part.number, None)
                if not isinstance(exc, Cancelled):
                    self.events.put(exc)
                return
            with self._lock:  # one step, so progress never goes back
                self._inflight.pop(part.number, None)
                self._done_bytes += part.size
            self.events.put((part.number, etag))

    def _sent(self, number: int) -> Callable[[int], None]:
        def sent(n: int) -> None:
            with self._lock:
                self._inflight[number] = self._inflight.get(number, 0) + n

        return sent

    def _unsent(self, part: _Part) -> None:
        with self._lock:
            self._inflight[part.number] = 0

    def _send(self, part: _Part) -> str:
        what = f"part {part.number}"

        def attempt() -> str:
            if self.stop.is_set():
                raise Cancelled
            if part.signed is None or time.monotonic() > part.deadline:
                self._sign([part])
            assert part.signed is not None
            with self._lock:
                self._inflight[part.number] = 0
            try:
                response = put(
                    self.http,
                    part.signed.url,
                    part.signed.headers,
                    self.source,
                    part.offset,
                    part.size,
                    stop=self.stop.is_set,
                    sent=self._sent(part.number),
                    direct=self.direct,
                )
            except httpx.TransportError as exc:
                self._unsent(part)
                raise retry.Retry(transport_error(exc, "the store")) from exc
            except BaseException:
                self._unsent(part)
                raise
            if response.is_success:
                etag = str(response.headers.get("etag") or "")
                if not etag:
                    raise TransferError(
                        f"the store answered no ETag for {what}: is ETag exposed (CORS)?",
                        code="protocol_error",
                    )
                return etag
            self._unsent(part)
            error, kind = refusal(response, what)
            if kind == "expired":
                log.info("%s: its URL expired; signing it again", what)
                part.signed = None
                raise retry.Retry(error, immediate=True)
            if kind == "checksum":
                if self.source.changed():
                    raise FileChangedError(
                        f"{self.source.path} changed while it was being uploaded"
                    )
                log.info("%s: the store refused its checksum; reading it again", what)
                if self.checksums:
                    part.sha256 = self._hash(part)
                part.signed = None
                raise retry.Retry(error, immediate=True)
            if kind == "retry":
                wait = retry.retry_after(response.headers.get("retry-after"))
                raise retry.Retry(error, retry_after=wait)
            raise error

        return retry.call(self.policy, attempt, what)


def _lifetime(part: SignedPart, server_now: datetime | None) -> float:
    """Seconds the URL may still be used, by the server's clock (its ``Date``), less a margin
    for the time a part takes to start."""
    if part.expires_at is None:
        return 3600.0
    now = server_now or datetime.now(UTC)
    expires = part.expires_at if part.expires_at.tzinfo else part.expires_at.replace(tzinfo=UTC)
    life = (expires - now).total_seconds()
    return life - min(_EXPIRY_MARGIN, life / 4)

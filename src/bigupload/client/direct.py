"""PUTs of a file's bytes to plain-HTTP URLs with ``os.sendfile``: the kernel moves them from
the page cache to the socket, and the process never holds or copies them.

Through httpx each MiB of a part is read into a new ``bytes`` and written by h11, about a
quarter of the client's CPU on a fast store. This path is taken only where it is valid: an
``http://`` URL, no proxy for its host, and an OS with ``sendfile``; anything else (TLS, a
proxy) goes through httpx as before. Its answers are ``httpx.Response`` objects and its
failures ``httpx.TransportError`` subclasses, so retries and errors are the same on both.

Idle connections are kept per host (at most :data:`MAX_IDLE` each), checked before reuse as
httpcore checks its own: one the server closed meanwhile is left for a new one.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from bigupload.client.errors import FileChangedError
from bigupload.client.source import CHUNK_SIZE, Cancelled, SourceFile

#: Whether this OS can send a file to a socket (Linux, macOS, the BSDs).
AVAILABLE = hasattr(os, "sendfile") and hasattr(select, "poll")
#: Idle connections kept per host, at most.
MAX_IDLE = 16
#: How often a send waiting for the store looks at whether the transfer stopped (seconds).
_STOP_POLL = 0.2


class DirectPut:
    """Sends through ``sendfile`` where :meth:`usable`; ``timeout`` bounds each wait (seconds)."""

    def __init__(self, *, timeout: float, connect_timeout: float, user_agent: str) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.user_agent = user_agent
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
        self._closed = False

    def usable(self, url: str) -> bool:
        """Whether ``url`` is plain HTTP reached without a proxy."""
        if not AVAILABLE or self._closed:
            return False
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            return False
        proxies = urllib.request.getproxies()
        if not ({"http", "all"} & {k.lower() for k in proxies}):
            return True
        return bool(urllib.request.proxy_bypass(parts.hostname))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()

    def put(
        self,
        url: str,
        headers: dict[str, str],
        source: SourceFile,
        offset: int,
        size: int,
        *,
        stop: Callable[[], bool] | None = None,
        sent: Callable[[int], None] | None = None,
    ) -> httpx.Response:
        """One PUT of ``size`` bytes of ``source`` from ``offset``, with exactly ``headers``
        (and ``Content-Length``)."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (parts.hostname or "", parts.port or 80)
        request = httpx.Request("PUT", url)
        connection = self._connection(key, request)
        try:
            response = self._exchange(
                connection, request, target, headers, source, offset, size, stop, sent
            )
        except BaseException:
            connection.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            connection.close()
        else:
            self._keep(key, connection)
        return response

    # -- connections ---------------------------------------------------------------------------

    def _connection(
        self, key: tuple[str, int], request: httpx.Request
    ) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                reused = idle.pop() if idle else None
            if reused is None:
                break
            if reused.sock is not None and _still_open(reused.sock):
                return reused
            reused.close()
        connection = http.client.HTTPConnection(key[0], key[1], timeout=self.connect_timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        assert connection.sock is not None
        connection.sock.settimeout(self.timeout)
        return connection

    def _keep(self, key: tuple[str, int], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < MAX_IDLE:
                idle.append(connection)
                return
        connection.close()

    # -- one exchange --------------------------------------------------------------------------

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        request: httpx.Request,
        target: str,
        headers: dict[str, str],
        source: SourceFile,
        offset: int,
        size: int,
        stop: Callable[[], bool] | None,
        sent: Callable[[int], None] | None,
    ) -> httpx.Response:
        names = {name.lower() for name in headers}
        try:
            connection.putrequest(
                "PUT", target, skip_host="host" in names, skip_accept_encoding=True
            )
            if "user-agent" not in names:
                connection.putheader("User-Agent", self.user_agent)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(size))
            connection.endheaders()
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(str(exc), request=request) from exc
        assert connection.sock is not None
        try:
            _send_file(connection.sock, source, offset, size, self.timeout, stop, sent)
        except TimeoutError as exc:
            raise httpx.WriteTimeout(str(exc) or "timed out", request=request) from exc
        except OSError as exc:
            # The server may have answered early (and closed): that answer is the result.
            early = _early_answer(connection, request)
            if early is not None:
                return early
            raise httpx.WriteError(str(exc), request=request) from exc
        return _answer(connection, request)


def _still_open(sock: socket.socket) -> bool:
    """An idle connection is readable only when its server closed it (or sent garbage)."""
    try:
        return not _ready(sock.fileno(), select.POLLIN, 0)
    except (OSError, ValueError):
        return False


def _ready(fd: int, events: int, timeout: float) -> bool:
    """Whether ``fd`` is ready for ``events`` (``select.POLLIN``/``POLLOUT``) within
    ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(timeout * 1000))


def _send_file(
    sock: socket.socket,
    source: SourceFile,
    offset: int,
    size: int,
    timeout: float,
    stop: Callable[[], bool] | None,
    sent: Callable[[int], None] | None,
) -> None:
    """``size`` bytes of ``source`` from ``offset`` to ``sock`` (non-blocking: it has a
    timeout), at most a chunk per call so that progress and ``stop`` are seen."""
    out = sock.fileno()
    end = offset + size
    while offset < end:
        if stop is not None and stop():
            raise Cancelled
        try:
            n = os.sendfile(out, source.fd, offset, min(CHUNK_SIZE, end - offset))
        except BlockingIOError:
            _wait_writable(out, timeout, stop)
            continue
        if n == 0:
            raise FileChangedError(f"{source.path} became shorter while it was being sent")
        offset += n
        if sent is not None:
            sent(n)


def _wait_writable(fd: int, timeout: float, stop: Callable[[], bool] | None) -> None:
    """Until ``fd`` takes bytes again: :class:`TimeoutError` after ``timeout`` seconds,
    :class:`Cancelled` as soon as ``stop()`` says so (looked at every :data:`_STOP_POLL`)."""
    deadline = time.monotonic() + timeout
    while not _ready(fd, select.POLLOUT, min(_STOP_POLL, max(0.0, deadline - time.monotonic()))):
        if stop is not None and stop():
            raise Cancelled
        if time.monotonic() >= deadline:
            raise TimeoutError("the store took no bytes in time")


def _answer(connection: http.client.HTTPConnection, request: httpx.Request) -> httpx.Response:
    try:
        answer = connection.getresponse()
        body = answer.read()
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
    except (http.client.HTTPException, ConnectionError) as exc:
        text = str(exc) or type(exc).__name__
        raise httpx.RemoteProtocolError(text, request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    response = httpx.Response(
        answer.status, headers=answer.getheaders(), content=body, request=request
    )
    if answer.will_close:
        response.headers["connection"] = "close"
    return response


def _early_answer(
    connection: http.client.HTTPConnection, request: httpx.Request
) -> httpx.Response | None:
    try:
        response = _answer(connection, request)
    except httpx.TransportError:
        return None
    response.headers["connection"] = "close"
    return response

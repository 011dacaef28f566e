"""Streaming ``multipart/form-data`` for browser form uploads (S3 POST policy style).

python-multipart's push parser reads the body chunk by chunk as it arrives; its callbacks are
queued as events that :class:`FormReader` hands on in order, so nothing holds more than one chunk
of the body. A preamble is skipped. A body that ends before its closing boundary is
:class:`MalformedForm`, so a truncated upload is never mistaken for a whole one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from python_multipart import MultipartParser
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

#: Most bytes of one part's headers.
MAX_HEADER_BYTES = 8 * 1024


class MalformedForm(Exception):
    """The body is not well-formed ``multipart/form-data``."""


class FieldsTooLarge(MalformedForm):
    """A part's headers, or a field read whole, are longer than allowed."""


@dataclass(frozen=True, slots=True)
class PartInfo:
    """What a part's headers say."""

    name: str
    filename: str | None
    content_type: str | None
    header_bytes: int


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a ``multipart/form-data`` Content-Type, or :class:`MalformedForm`."""
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        raise MalformedForm("the body must be multipart/form-data")
    boundary = params.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 70:
        raise MalformedForm("multipart/form-data needs a boundary of 1 to 70 characters")
    if not boundary.isascii():
        raise MalformedForm("the boundary must be ASCII")
    return boundary


def _part_info(headers: list[list[bytes]]) -> PartInfo:
    found = {name.lower(): value.strip() for name, value in headers}
    kind, params = parse_options_header(found.get(b"content-disposition"))
    if kind != b"form-data" or b"name" not in params:
        raise MalformedForm("each part needs Content-Disposition: form-data with a name")
    # Browsers send field names and filenames as UTF-8 (RFC 7578 section 5.1).
    filename, content_type = params.get(b"filename"), found.get(b"content-type")
    return PartInfo(
        name=params[b"name"].decode("utf-8", "replace"),
        filename=None if filename is None else filename.decode("utf-8", "replace"),
        content_type=None if content_type is None else content_type.decode("latin-1"),
        header_bytes=_size(headers),
    )


def _size(headers: list[list[bytes]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)  # ": " and CRLF


class FormReader:
    """The parts of one form body, in order: :meth:`next_part`, then :meth:`read_value` or
    :meth:`stream` for its bytes (or neither: the next call skips them).

    Each chunk of the body is written to the parser, whose callbacks queue events: ``part``
    (its :class:`PartInfo`), ``data`` (a piece of its bytes), ``part_end``, ``end``, and
    ``error`` (the form is malformed past what is queued before it)."""

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body.__aiter__()
        self._delimiter = b"\r\n--" + boundary
        self._preamble: bytearray | None = bytearray(b"\r\n")  # until the first delimiter
        self._events: deque[tuple[str, Any]] = deque()
        self._headers: list[list[bytes]] = []  # the current part's [name, value]
        self._finished = self._in_part = False
        queue = self._events.append
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._headers.clear,
            "on_header_begin": lambda: self._headers.append([b"", b""]),
            "on_header_field": lambda data, start, end: self._header(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._header(1, data[start:end]),
            "on_headers_finished": lambda: queue(("part", _part_info(self._headers))),
            "on_part_data": lambda data, start, end: queue(("data", data[start:end])),
            "on_part_end": lambda: queue(("part_end", None)),
            "on_end": lambda: queue(("end", None)),
        }
        self._parser = MultipartParser(
            boundary, callbacks, max_header_count=32, max_header_size=MAX_HEADER_BYTES
        )

    def _header(self, which: int, piece: bytes) -> None:
        self._headers[-1][which] += piece
        if _size(self._headers) > MAX_HEADER_BYTES:
            raise FieldsTooLarge(f"a part's headers exceed {MAX_HEADER_BYTES} bytes")

    async def _pump(self) -> None:
        """Write the body's next chunk to the parser, or fail at the body's end."""
        try:
            chunk = await self._body.__anext__()
        except StopAsyncIteration:
            if self._preamble is not None:
                raise MalformedForm("no boundary opens the form") from None
            raise MalformedForm("the body ends before the form's closing boundary") from None
        if self._preamble is not None:  # a preamble is skipped: the parser reads none
            self._preamble += chunk
            at = self._preamble.find(self._delimiter)
            if at < 0:
                if len(self._preamble) > MAX_HEADER_BYTES:
                    raise MalformedForm("no boundary opens the form")
                return
            chunk, self._preamble = bytes(self._preamble[at + 2 :]), None
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            too_large = str(exc).startswith("Maximum header")
            self._events.append(("error", (FieldsTooLarge if too_large else MalformedForm)(exc)))
        except MalformedForm as exc:
            self._events.append(("error", exc))

    async def _next(self) -> tuple[str, Any]:
        while not self._events:
            await self._pump()
        if self._events[0][0] == "error":  # left queued: it is raised again if asked again
            raise self._events[0][1]
        return self._events.popleft()

    async def next_part(self) -> PartInfo | None:
        """The next part's headers, or ``None`` once the form has ended."""
        async for _ in self.stream():  # the current part's bytes, unread
            pass
        while not self._finished:
            kind, value = await self._next()
            self._finished = kind == "end"
            if kind == "part":
                self._in_part = True
                return cast(PartInfo, value)
        return None

    async def stream(self) -> AsyncIterator[bytes]:
        """The current part's bytes as they arrive; ends at the part's delimiter."""
        while self._in_part:
            kind, value = await self._next()
            if kind == "data":
                yield value
            self._in_part = kind != "part_end"

    async def read_value(self, limit: int) -> bytes:
        """The current part's bytes, whole; :class:`MalformedForm` past ``limit`` bytes."""
        value = bytearray()
        async for chunk in self.stream():
            value += chunk
            if len(value) > limit:
                raise FieldsTooLarge(f"the form's fields exceed {limit} bytes")
        return bytes(value)

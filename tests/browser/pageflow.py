"""What a person does on the uploader page, and what the tests watch while they do it.

Selectors are the page's DOM contract (``data-testid`` / ``data-col`` / ``data-action``) and
Uppy 6's own Dashboard classes. :class:`Traffic` records every request the page makes, so a test
can tell which ``/s3`` routes were called and which multipart parts were sent, and when.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from playwright.sync_api import expect

#: Waits for the page's own reactions (sign-in, a row appearing): generous, machines are noisy.
WAIT = 60_000
#: Waits that include sending 150 MiB and processing it (checksum) in the background.
BIG_WAIT = 300_000

#: Uppy 6 Dashboard: the file input of the "browse files" button (not the folder one).
FILE_INPUT = '#uploader input.uppy-Dashboard-input[name="files[]"]:not([webkitdirectory])'
UPLOAD_BUTTON = "#uploader .uppy-StatusBar-actionBtn--upload"
PAUSE_RESUME = '#uploader [data-cy="togglePauseResume"]'
CANCEL = '#uploader [data-cy="cancel"]'


@dataclass(frozen=True)
class Source:
    """A file on disk the browser will send, with its SHA-256."""

    path: Path
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name


def make_source(path: Path, size: int, *, text: bool = False) -> Source:
    """Write ``size`` bytes (random, or readable lines) in 1 MiB chunks; never all in memory."""
    import os

    digest = hashlib.sha256()
    line = b"bigupload: a small text file sent by the web page through a POST form\n"
    with path.open("wb") as out:
        left = size
        while left:
            if text:
                chunk = (line * (1 + min(left, 1 << 20) // len(line)))[: min(left, 1 << 20)]
            else:
                chunk = os.urandom(min(left, 1 << 20))
            out.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return Source(path, size, digest.hexdigest())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# -- the page ---------------------------------------------------------------------------------


def open_page(page: Any, url: str) -> None:
    page.goto(url + "/")
    expect(page.locator("form[data-testid=signin]")).to_be_visible(timeout=WAIT)


def sign_in(page: Any, key: str) -> None:
    """Fill the sign-in form and send it (the caller checks what the page shows)."""
    page.locator("[data-testid=api-key]").fill(key)
    page.locator("[data-testid=signin-submit]").click()


def sign_in_as(page: Any, url: str, key: str, owner: str) -> None:
    open_page(page, url)
    sign_in(page, key)
    expect(page.locator("[data-testid=owner]")).to_contain_text(owner, timeout=WAIT)
    expect(page.locator("#uploader .uppy-Dashboard")).to_be_visible(timeout=WAIT)


def add_files(page: Any, sources: Iterable[Source]) -> None:
    """Choose files in the Dashboard's "browse files" input, as a person would."""
    page.locator(FILE_INPUT).first.set_input_files([str(s.path) for s in sources])


def click_upload(page: Any) -> None:
    page.locator(UPLOAD_BUTTON).click()


def row(page: Any, name: str) -> Any:
    """The files table's row for the file called ``name``."""
    return page.locator("[data-testid=files] tr[data-file-id]").filter(
        has=page.locator("[data-col=name]", has_text=name)
    )


def expect_status(page: Any, name: str, status: str, timeout: float = BIG_WAIT) -> None:
    expect(row(page, name).locator("[data-col=status]")).to_have_text(status, timeout=timeout)


def download_sha256(page: Any, name: str) -> tuple[str, str]:
    """Click the row's download button; answer (SHA-256 of the bytes, the suggested filename)."""
    with page.expect_download(timeout=BIG_WAIT) as info:
        row(page, name).locator("[data-action=download]").click()
    download = info.value
    path = download.path()  # waits for the download to finish
    assert download.failure() is None, download.failure()
    return sha256_of(Path(path)), download.suggested_filename


def uppy_file_uploaded(
    page: Any, name: str, traffic: Traffic | None = None, timeout: float = BIG_WAIT
) -> None:
    """Wait until Uppy says its file ``name`` was sent whole; fail at once if it failed."""
    error = page.wait_for_function(
        """name => {
            const file = window.bigupload.uppy.getFiles().find(f => f.name === name);
            if (file && file.error) return {error: String(file.error)};
            return Boolean(file && file.progress.uploadComplete);
        }""",
        arg=name,
        timeout=timeout,
        polling=200,
    ).json_value()
    if error is not True:
        refusals = traffic.refusals() if traffic else "not recorded"
        raise AssertionError(f"Uppy failed to send {name}: {error}; refused:\n{refusals}")


def saved_resume_state(page: Any, name: str, timeout: float = WAIT) -> None:
    """Wait until Golden Retriever has saved the multipart upload id of ``name`` in IndexedDB.

    Its writes are throttled; a reload before the write would test nothing.
    """
    page.wait_for_function(
        """async name => {
            const db = await new Promise((resolve, reject) => {
                const open = indexedDB.open('uppy-blobs');
                open.onsuccess = () => resolve(open.result);
                open.onerror = () => reject(open.error);
            });
            try {
                if (!db.objectStoreNames.contains('metadata')) return false;
                const records = await new Promise((resolve, reject) => {
                    const all = db.transaction(['metadata']).objectStore('metadata').getAll();
                    all.onsuccess = () => resolve(all.result);
                    all.onerror = () => reject(all.error);
                });
                return records.some(r => Object.values(JSON.parse(r.metadata).files || {})
                    .some(f => f.name === name && f.s3Multipart && f.s3Multipart.uploadId));
            } finally { db.close(); }
        }""",
        arg=name,
        timeout=timeout,
        polling=200,
    )


# -- what the page sends ----------------------------------------------------------------------


def part_number(url: str) -> int | None:
    """The ``partNumber`` of a part URL (S3 and the local store both name it in the query)."""
    values = parse_qs(urlsplit(url).query).get("partNumber")
    return int(values[0]) if values else None


def is_part_url(url: str) -> bool:
    return part_number(url) is not None


#: ``/s3`` routes by what they do (Uppy Companion's contract).
S3_ROUTES: dict[str, tuple[str, re.Pattern[str]]] = {
    "params": ("GET", re.compile(r"^/s3/params$")),
    "create": ("POST", re.compile(r"^/s3/multipart$")),
    "list": ("GET", re.compile(r"^/s3/multipart/[^/]+$")),
    "sign": ("GET", re.compile(r"^/s3/multipart/[^/]+/\d+$")),
    "batch": ("GET", re.compile(r"^/s3/multipart/[^/]+/batch$")),
    "complete": ("POST", re.compile(r"^/s3/multipart/[^/]+/complete$")),
    "abort": ("DELETE", re.compile(r"^/s3/multipart/[^/]+$")),
}


@dataclass(frozen=True)
class Seen:
    method: str
    url: str
    status: int | None  # None: sent, no answer (yet, or ever)
    load: int  # which document load of the page sent it (0, then 1 after a reload, ...)


class Traffic:
    """Every request the page sends and the status it got, numbered by document load."""

    def __init__(self, page: Any, origin: str) -> None:
        self.origin = origin
        self.load = 0
        self._lock = threading.Lock()
        self._sent: list[tuple[Any, int]] = []
        self._status: dict[int, int] = {}
        self._refused: list[Any] = []
        page.on("request", self._on_request)
        page.on("response", self._on_response)

    def _on_request(self, request: Any) -> None:
        with self._lock:
            self._sent.append((request, self.load))

    def _on_response(self, response: Any) -> None:
        with self._lock:
            self._status[id(response.request)] = response.status
            if response.status >= 400:
                self._refused.append(response)

    def refusals(self) -> str:
        """Every answer >= 400 the page got, with its body when the browser still has it."""
        lines = []
        with self._lock:
            refused = list(self._refused)
        for response in refused:
            try:
                body = response.text()[:300]
            except Exception as exc:  # the page may have dropped it
                body = f"<body gone: {type(exc).__name__}>"
            lines.append(f"{response.request.method} {response.url} -> {response.status} {body}")
        return "\n".join(lines) or "none"

    def next_load(self) -> None:
        """Call just before reloading: what the page sends from now on belongs to the next load."""
        with self._lock:
            self.load += 1

    def all(self) -> list[Seen]:
        with self._lock:
            return [Seen(r.method, r.url, self._status.get(id(r)), load) for r, load in self._sent]

    def route_calls(self, name: str, load: int | None = None) -> list[Seen]:
        method, pattern = S3_ROUTES[name]
        return [
            seen
            for seen in self.all()
            if seen.method == method
            and seen.url.startswith(self.origin + "/s3/")
            and pattern.match(urlsplit(seen.url).path)
            and (load is None or seen.load == load)
        ]

    def part_puts(self, load: int | None = None, status: int | None = None) -> list[int]:
        """Part numbers of the part PUTs sent (optionally: of one load, answered ``status``)."""
        return [
            number
            for seen in self.all()
            if seen.method == "PUT"
            and (number := part_number(seen.url)) is not None
            and (load is None or seen.load == load)
            and (status is None or seen.status == status)
        ]

    def store_posts(self) -> list[Seen]:
        """Form POSTs of single uploads: to the store, so neither ``/s3`` nor ``/api``."""
        return [
            seen
            for seen in self.all()
            if seen.method == "POST"
            and not seen.url.startswith((self.origin + "/s3", self.origin + "/api"))
        ]


class PartGate:
    """Lets the part PUTs numbered up to ``through`` go; holds any later one unanswered.

    A held request is paused before it is sent and stays so until the page drops it (reload,
    pause, cancel): the test decides where the upload is interrupted, with no race against a
    fast loopback. The route is never removed: Playwright continues the pending requests of a
    removed handler, which would send the held part after all.
    """

    def __init__(self, page: Any, through: int) -> None:
        self.through = through
        self.held: list[int] = []
        page.route(is_part_url, self._gate)

    def _gate(self, route: Any) -> None:
        number = part_number(route.request.url)
        if route.request.method == "PUT" and number is not None and number > self.through:
            self.held.append(number)
            return  # never continued: the page itself gives up on it
        route.continue_()

    def hold_after(self, through: int) -> None:
        """From now on, let parts up to ``through`` go (the ones held stay held)."""
        self.through = through

    def open(self) -> None:
        """Let every part from now on go (the ones held stay held)."""
        self.through = 10_000

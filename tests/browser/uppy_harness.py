"""Driving an unmodified Uppy (5.x or 6.x, from npm) in Chromium against a live bigupload.

The harness pages (``tests/browser/uppy_clients/v{5,6}``, bundled by
``scripts/build-uppy-harness.sh``) are served *same-origin* with bigupload: Playwright answers
``<service>/__harness__/*`` from disk and lets every other request through to the real service
and store. Uppy 6 sends its session cookie only to its own origin, so this is the only faithful
way to load it without adding test routes to the app.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn

from bigupload.app import create_app
from bigupload.config import load_settings
from bigupload.storage.factory import build_storage
from bigupload.storage.s3 import setup
from tests.conftest import SECRET, make_bucket
from tests.support.moto import s3_client
from tests.support.net import free_port
from tests.support.service import Service, prepare_registry

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]
CLIENTS = Path(__file__).parent / "uppy_clients"
BUILD_SCRIPT = REPO / "scripts" / "build-uppy-harness.sh"
#: The two client generations in use (see ../shared/uppy-s3-contract.md).
GENERATIONS = ["v5", "v6"]
HARNESS_PREFIX = "/__harness__/"
#: A record's end states once the job runner has processed it.
SETTLED = {"completed", "failed", "aborted", "expired"}


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps an event loop
    running in the main thread, where ``asyncio.run`` refuses to start."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def ensure_harness_built() -> None:
    """Build the bundles when missing or older than their sources (npm ci only if needed)."""
    sources = [CLIENTS / "harness-common.js", CLIENTS / "index.html"]
    for gen in GENERATIONS:
        bundle = CLIENTS / gen / "dist" / "harness.js"
        inputs = [*sources, CLIENTS / gen / "harness.js", CLIENTS / gen / "package-lock.json"]
        if bundle.exists() and all(p.stat().st_mtime <= bundle.stat().st_mtime for p in inputs):
            continue
        result = subprocess.run(
            [str(BUILD_SCRIPT)], capture_output=True, text=True, check=False, timeout=600
        )
        if result.returncode != 0:
            pytest.fail(
                f"{BUILD_SCRIPT.name} failed (make test-deps runs it):\n{result.stderr[-3000:]}"
            )
        return


# -- a live service with its job runner ---------------------------------------------------------


class _Server:
    """uvicorn in a thread with the app's lifespan on, so the job runner works: it confirms
    POST-form uploads on S3 (the landing job) and processes every upload to ``completed``."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@contextmanager
def uppy_service(
    request: pytest.FixtureRequest, tmp_path: Path, store: str, **overrides: Any
) -> Iterator[Service]:
    """bigupload on ``store`` ("local" or "s3-strict") with setting ``overrides``; the S3 bucket
    is set up as ``bigupload storage setup`` does (its CORS rule lets the service's origin send
    bytes and read ``ETag`` and ``Location``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "secret_key": SECRET,
        "port": port,
        "rate_limit": "off",
    }
    if store == "s3-strict":
        server = request.getfixturevalue("strict_s3")
        s3 = s3_client(server.endpoint_url)
        bucket = make_bucket(s3)
        values |= {
            "storage": "s3",
            "s3_endpoint_url": server.endpoint_url,
            "s3_region": "us-east-1",
            "s3_bucket": bucket,
        }
    elif store != "local":
        raise ValueError(store)
    settings = load_settings(**(values | overrides))
    if store == "s3-strict":
        # Set up as `bigupload storage setup` does, from the same settings.
        desired = setup.Desired.from_settings(settings)
        setup.apply(s3, bucket, setup.inspect(s3, bucket, desired))
        assert not setup.inspect(s3, bucket, desired)[0].changed
    settings.data_dir.mkdir(parents=True)
    api_key = run_async(prepare_registry(settings.effective_database_url))
    with _Server(create_app(settings), port):
        yield Service(url, api_key, settings)


def multipart_uploads(service: Service) -> list[tuple[str, str]]:
    """(key, upload id) of every multipart upload the service's store holds in progress."""

    async def run() -> list[tuple[str, str]]:
        storage = build_storage(service.settings)
        try:
            return [(u.key, u.upload_id) for u in await storage.list_multipart_uploads()]
        finally:
            await storage.close()

    return run_async(run())


# -- the API, as the uploader's owner -----------------------------------------------------------


def api(service: Service) -> httpx.Client:
    return httpx.Client(base_url=service.url, headers=service.auth, timeout=30, trust_env=False)


def list_records(service: Service) -> list[dict[str, Any]]:
    with api(service) as http:
        answer = http.get("/api/v1/files", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def find_record(service: Service, filename: str) -> dict[str, Any]:
    matches = [item for item in list_records(service) if item["filename"] == filename]
    assert len(matches) == 1, f"records named {filename!r}: {list_records(service)}"
    record: dict[str, Any] = matches[0]
    return record


def wait_for_record(service: Service, file_id: str, statuses: set[str]) -> dict[str, Any]:
    """Poll the record until its status is one of ``statuses`` or settled (bounded)."""
    deadline = time.monotonic() + 90
    with api(service) as http:
        while True:
            answer = http.get(f"/api/v1/files/{file_id}")
            assert answer.status_code == 200, answer.text
            record: dict[str, Any] = answer.json()
            if record["status"] in statuses | SETTLED or time.monotonic() > deadline:
                return record
            time.sleep(0.1)


def download_sha256(service: Service, file_id: str) -> tuple[str, int]:
    """Fetch the object through the API's download link; answer its SHA-256 and size."""
    with api(service) as http:
        link = http.get(f"/api/v1/files/{file_id}/download")
        assert link.status_code == 200, link.text
        digest = hashlib.sha256()
        size = 0
        with httpx.stream("GET", link.json()["url"], timeout=60, trust_env=False) as body:
            assert body.status_code == 200, body.read()[:500]
            for chunk in body.iter_bytes(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return digest.hexdigest(), size


# -- the page ------------------------------------------------------------------------------------


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def part_number(url: str) -> int | None:
    """The part number of a store part URL (S3 and the local store both sign
    ``?uploadId=..&partNumber=..``), else None."""
    query = _query(url)
    if "uploadId" in query and "partNumber" in query:
        return int(query["partNumber"][0])
    return None


class PartGate:
    """Holds the store PUTs of parts numbered ``first_held`` and up while closed, so the test
    can pause or cancel while those parts are in flight; part 1 goes through."""

    def __init__(self, page: Any, first_held: int = 2) -> None:
        self.first_held = first_held
        self.closed = True
        self.held: list[Any] = []
        page.route(lambda url: part_number(url) is not None, self._handle)

    def holds(self, request: Any) -> bool:
        number = part_number(request.url)
        return request.method == "PUT" and number is not None and number >= self.first_held

    def _handle(self, route: Any) -> None:
        if self.closed and self.holds(route.request):
            self.held.append(route)
        else:
            route.continue_()

    def open(self) -> None:
        """Let parts through again. The held requests never reach the store: the client has
        cancelled them (pause, cancel), and they are failed here in case it has not yet."""
        self.closed = False
        held, self.held = self.held, []
        for route in held:
            with suppress(Exception):  # Playwright refuses a request the page cancelled
                route.abort()


@dataclass
class Harness:
    page: Any
    service: Service
    generation: str
    requests: list[Any] = field(default_factory=list)

    # -- setting up -----------------------------------------------------------------------------

    @classmethod
    def open(cls, page: Any, service: Service, generation: str, *, sign_in: bool) -> Harness:
        harness = cls(page, service, generation)
        page.on("request", lambda request: harness.requests.append(request))
        page.route(f"{service.url}{HARNESS_PREFIX}**", harness._serve)
        if sign_in:
            answer = page.context.request.post(
                f"{service.url}/api/v1/session", data={"api_key": service.api_key}
            )
            assert answer.status == 200, answer.text()
        page.goto(f"{service.url}{HARNESS_PREFIX}{generation}/")
        page.wait_for_function("document.body.dataset.ready === 'true'")
        return harness

    def _serve(self, route: Any) -> None:
        path = urlsplit(route.request.url).path.removeprefix(HARNESS_PREFIX)
        gen, _, name = path.partition("/")
        if gen not in GENERATIONS:
            route.fulfill(status=404, body="no such harness")
        elif name in ("", "index.html"):
            route.fulfill(path=str(CLIENTS / "index.html"), content_type="text/html")
        elif name == "harness.js":
            route.fulfill(
                path=str(CLIENTS / gen / "dist" / "harness.js"),
                content_type="text/javascript",
            )
        else:
            route.fulfill(status=404, body="no such file")

    def start(self, **options: Any) -> dict[str, Any]:
        """``window.startUppy``: endpoint = the service; 5.x gets the bearer key unless given
        ``api_key``; ``shouldUseMultipart``, ``limit`` passed through when set."""
        api_key = options.pop("api_key", self.service.api_key)
        opts = {"endpoint": self.service.url, "apiKey": api_key, **options}
        info: dict[str, Any] = self.page.evaluate("opts => window.startUppy(opts)", opts)
        return info

    # -- acting ---------------------------------------------------------------------------------

    def add_bytes(self, name: str, data: bytes, content_type: str) -> str:
        import base64

        file_id: str = self.page.evaluate(
            "f => window.addBytes(f)",
            {"name": name, "type": content_type, "base64": base64.b64encode(data).decode()},
        )
        return file_id

    def add_path(self, path: Path) -> str:
        before = len(self.events("file-added"))
        self.page.set_input_files("#picker", str(path))
        self.page.wait_for_function(
            "n => window.events.filter(e => e.type === 'file-added').length > n", arg=before
        )
        file_id: str = self.events("file-added")[-1]["fileID"]
        return file_id

    def upload(self) -> None:
        self.page.evaluate("() => window.upload()")

    def pause_resume(self, file_id: str) -> bool:
        paused: bool = self.page.evaluate("id => window.pauseResume(id)", file_id)
        return paused

    def remove(self, file_id: str) -> None:
        self.page.evaluate("id => window.removeFile(id)", file_id)

    # -- observing ------------------------------------------------------------------------------

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.page.evaluate(
            "kind => window.events.filter(e => kind === null || e.type === kind)", kind
        )
        return found

    def wait_event(self, kind: str, **match: Any) -> dict[str, Any]:
        """Wait for an event of ``kind`` whose fields equal ``match``; stop early (and fail)
        on an upload error unless that is what is awaited."""
        self.page.wait_for_function(
            """([kind, match]) => window.events.some(e =>
                   (e.type === kind && Object.entries(match).every(([k, v]) => e[k] === v))
                   || (kind !== 'upload-error' && e.type === 'upload-error'))""",
            arg=[kind, match],
        )
        for event in self.events(kind):
            if all(event.get(k) == v for k, v in match.items()):
                return event
        raise AssertionError(f"no {kind} {match}; events: {self.summary()}")

    def summary(self) -> str:
        return json.dumps([e for e in self.events() if e["type"] != "upload-progress"])[:4000]

    def s3_requests(
        self, method: str | None = None, path: str = "", *, exact: bool = False
    ) -> list[Any]:
        """The page's requests to the /s3 routes (in order), optionally by method and path
        (a prefix, or with ``exact`` the whole path, query excluded)."""
        prefix = f"{self.service.url}/s3/{path}"
        return [
            r
            for r in self.requests
            if (r.url.split("?")[0] == prefix if exact else r.url.startswith(prefix))
            and (method is None or r.method == method)
        ]

    def created(self) -> dict[str, Any]:
        """The answer to the one create-multipart call: ``{key, uploadId, bucket}``."""
        (create,) = self.s3_requests("POST", "multipart", exact=True)
        assert create.response().status == 200, create.response().text()
        answer: dict[str, Any] = create.response().json()
        return answer

    def part_puts(self) -> list[Any]:
        return [r for r in self.requests if r.method == "PUT" and part_number(r.url) is not None]

    def store_posts(self) -> list[Any]:
        """Form POSTs straight to the store (a single upload)."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and not r.url.startswith((f"{self.service.url}/s3/", f"{self.service.url}/api/"))
        ]

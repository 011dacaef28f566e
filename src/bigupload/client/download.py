"""Fetching a file: streamed to a temporary file beside the destination, checked, renamed.

A failed attempt resumes where it stopped with a ``Range`` request when the store allows it;
an expired link is asked for again. The destination appears only once the bytes are whole and
checked against the registry's size and SHA-256, and never replaces an existing file unless
asked to.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import time
from pathlib import Path

import httpx

from bigupload.client import retry
from bigupload.client.api import Api, retryable, transport_error
from bigupload.client.errors import ConflictError, IntegrityError
from bigupload.client.models import DownloadLink, RemoteFile
from bigupload.client.progress import Meter, ProgressCallback
from bigupload.client.source import CHUNK_SIZE
from bigupload.client.transfer import REPORT_INTERVAL, refusal


def target_path(dest: Path, record: RemoteFile) -> Path:
    """``dest``, or the file's own name inside ``dest`` when that is a directory."""
    if not dest.is_dir():
        return dest
    name = Path(record.filename.replace("\\", "/")).name
    return dest / (name if name not in ("", ".", "..") else record.id)


class _Sink:
    """The temporary file and the SHA-256 of what it holds so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = path.open("xb")
        self.written = 0
        self.digest = hashlib.sha256()

    def restart(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.written = 0
        self.digest = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.digest.update(chunk)
        self.written += len(chunk)

    def finish(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def download(
    api: Api,
    http: httpx.Client,
    policy: retry.RetryPolicy,
    file_id: str,
    dest: Path,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    record = api.file(file_id)
    if not record.readable:
        raise ConflictError(
            f"the file is {record.status}; only uploaded files can be downloaded",
            status=409,
            code="file_not_ready",
        )
    target = target_path(dest, record)
    if target.exists() and not overwrite:
        raise FileExistsError(errno.EEXIST, "the destination exists (overwrite it?)", str(target))
    expected = record.stored_size if record.stored_size is not None else record.size
    meter = Meter(expected or 0)
    sink = _Sink(target.with_name(f".{target.name}.{secrets.token_hex(4)}.part"))
    link: list[DownloadLink] = []
    last_report = [0.0]

    def attempt() -> None:
        if not link:
            link.append(api.download_link(file_id))
        headers = {"Range": f"bytes={sink.written}-"} if sink.written else {}
        try:
            with http.stream("GET", link[0].url, headers=headers) as response:
                if response.status_code == 206 and not _continues(response, sink.written):
                    sink.restart()
                    raise retry.Retry(
                        IntegrityError("the store sent another range"), immediate=True
                    )
                if response.status_code == 200 and sink.written:
                    sink.restart()  # the store ignored the range: from the start again
                if response.status_code not in (200, 206):
                    response.read()
                    error, kind = refusal(response, "the download")
                    if kind == "expired":
                        link.clear()
                        raise retry.Retry(error, immediate=True)
                    if retryable(response):
                        wait = retry.retry_after(response.headers.get("retry-after"))
                        raise retry.Retry(error, retry_after=wait)
                    raise error
                for chunk in response.iter_bytes(CHUNK_SIZE):
                    sink.write(chunk)
                    now = time.monotonic()
                    if progress is not None and now - last_report[0] >= REPORT_INTERVAL:
                        last_report[0] = now
                        progress(meter.sample(sink.written, now))
        except httpx.TransportError as exc:
            raise retry.Retry(transport_error(exc, "the store")) from exc

    try:
        if progress is not None:
            progress(meter.sample(0))
        retry.call(policy, attempt, "download")
        sink.finish()
        if expected is not None and sink.written != expected:
            raise IntegrityError(f"received {sink.written} bytes; the file has {expected}")
        if record.checksum_sha256 and sink.digest.hexdigest() != record.checksum_sha256.lower():
            raise IntegrityError("the received bytes' SHA-256 differs from the file's")
        _place(sink.path, target, overwrite)
    except BaseException:
        sink.discard()
        raise
    if progress is not None:
        progress(meter.sample(sink.written))
    return target


def _continues(response: httpx.Response, offset: int) -> bool:
    content_range = str(response.headers.get("content-range", ""))
    return content_range.startswith(f"bytes {offset}-")


def _place(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic, and never replaces what appeared meanwhile
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "the destination exists", str(target)) from None
    except OSError:  # no hard links here: check, then rename
        if target.exists():
            raise FileExistsError(errno.EEXIST, "the destination exists", str(target)) from None
        os.replace(tmp, target)
        return
    tmp.unlink()

"""The bigupload client: upload, download, list, inspect and delete files.

from bigupload.client import Client

with Client("http://127.0.0.1:8000", api_key) as client:
    remote = client.upload("big.iso", progress=print)
    client.download(remote.id, "copy.iso")
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

import httpx

from bigupload import __version__
from bigupload.client import retry
from bigupload.client.api import Api, normalize_base_url
from bigupload.client.direct import DirectPut
from bigupload.client.download import download
from bigupload.client.errors import AmbiguousIdError, InvalidRequestError, NotFoundError
from bigupload.client.models import FilePage, RemoteFile
from bigupload.client.progress import ProgressCallback
from bigupload.client.resume import FileIdentity, StateStore
from bigupload.client.source import SourceFile
from bigupload.client.upload import Upload, UploadOptions

#: The most items the server answers in one page.
MAX_PAGE = 200


class Client:
    """A connection to one bigupload server with one API key.

    ``concurrency`` parts are sent at once; ``part_size`` is the part size to ask for (the
    server chooses within S3's limits when ``None``); ``timeout`` bounds each network wait in
    seconds; ``retries`` is how many times a failed request is tried again (or a full
    :class:`~bigupload.client.retry.RetryPolicy`); ``cache_dir`` holds the state of uploads in
    progress (default: ``$BIGUPLOAD_CACHE_DIR`` or the user's cache directory).

    One client may be used from several threads.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        concurrency: int = 8,
        part_size: int | None = None,
        timeout: float = 60.0,
        retries: int | retry.RetryPolicy = 8,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if part_size is not None and part_size <= 0:
            raise ValueError("part_size must be positive")
        if not api_key:
            raise ValueError("an API key is required")
        self.base_url = normalize_base_url(base_url)
        self.concurrency = concurrency
        self.part_size = part_size
        self.policy = (
            retries
            if isinstance(retries, retry.RetryPolicy)
            else retry.RetryPolicy(retries=retries)
        )
        self.states = StateStore(Path(cache_dir) if cache_dir is not None else None)
        connections = concurrency + 4
        user_agent = f"bigupload-client/{__version__}"
        self.http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"User-Agent": user_agent},
        )
        # Part bodies to plain-HTTP stores go by sendfile; TLS and proxied URLs by httpx.
        self.direct = DirectPut(
            timeout=timeout, connect_timeout=min(timeout, 15.0), user_agent=user_agent
        )
        self.api = Api(self.http, self.base_url, api_key, self.policy)

    def close(self) -> None:
        self.direct.close()
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- uploading -------------------------------------------------------------------------

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        content_type: str | None = None,
        filename: str | None = None,
        metadata: dict[str, str] | None = None,
        multipart: bool | None = None,
        progress: ProgressCallback | None = None,
        resume: bool = True,
    ) -> RemoteFile:
        """Upload the file at ``path`` and answer its record (status ``uploaded``).

        The server chooses one PUT or parts unless ``multipart`` says; the content type is
        guessed from the name unless given. With ``resume``, an upload of the same file that
        was interrupted (Ctrl-C, a crash, a reboot) goes on where it stopped, and another
        process uploading the same file at the same time is refused
        (:class:`~bigupload.client.errors.UploadInProgressError`).
        """
        source_path = Path(path)
        with SourceFile(source_path) as source:
            if source.size == 0:
                raise InvalidRequestError(
                    f"{source_path} is empty: there is nothing to upload", code="empty_file"
                )
            identity = FileIdentity(
                self.base_url, str(source_path.resolve()), source.size, source.mtime_ns
            )
            options = UploadOptions(
                content_type=content_type,
                filename=filename,
                metadata=metadata,
                multipart=multipart,
                part_size=self.part_size,
                resume=resume,
            )
            upload = Upload(
                api=self.api,
                http=self.http,
                policy=self.policy,
                states=self.states,
                concurrency=self.concurrency,
                source=source,
                identity=identity,
                options=options,
                progress=progress,
                direct=self.direct,
            )
            lock = self.states.lock(identity) if resume else contextlib.nullcontext()
            with lock:
                return upload.run()

    def abort(self, file_id: str) -> RemoteFile:
        """Abort an upload in progress: the store frees its parts; the file becomes
        ``aborted``."""
        return self.api.abort(file_id)

    # -- files -----------------------------------------------------------------------------

    def info(self, file_id: str) -> RemoteFile:
        return self.api.file(file_id)

    def resolve(self, id_or_prefix: str) -> str:
        """The id of your one file whose id begins with ``id_or_prefix`` (at least
        :data:`MIN_ID_PREFIX` hex digits, dashes ignored), as git takes a short commit id;
        anything else (a whole id, a typo) is answered as it is, for the server to judge.
        :class:`NotFoundError` if no id begins so, :class:`AmbiguousIdError` (its
        ``candidates``) if several do."""
        text = id_or_prefix.strip().lower()
        digits = text.replace("-", "")
        if not (MIN_ID_PREFIX <= len(digits) < 32 and _HEX.fullmatch(digits)):
            return id_or_prefix  # a whole id, or not an id at all: the server judges it
        page = self.api.files(limit=_CANDIDATES, cursor=None, status=None, id_prefix=digits)
        ids = [item.id for item in page.items]
        if not ids:
            raise NotFoundError(f"no file of yours has an id beginning {id_or_prefix}")
        if len(ids) > 1:
            more = ", ..." if page.next_cursor else ""
            raise AmbiguousIdError(
                f"{id_or_prefix} begins several ids: {', '.join(ids)}{more}", candidates=ids
            )
        return ids[0]

    def download(
        self,
        file_id: str,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Save the file at ``dest`` (or under its own name inside ``dest``, a directory) and
        answer where. Its size and SHA-256 are checked before it appears; an existing file is
        replaced only with ``overwrite`` (else :class:`FileExistsError`)."""
        return download(
            self.api,
            self.http,
            self.policy,
            file_id,
            Path(dest),
            overwrite=overwrite,
            progress=progress,
        )

    def delete(self, file_id: str) -> None:
        """Delete the file: its stored bytes and its record."""
        self.api.delete(file_id)

    def page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        status: str | Iterable[str] | None = None,
    ) -> FilePage:
        """One page of your files, newest first; pass its ``next_cursor`` to get the next."""
        return self.api.files(
            limit=max(1, min(limit, MAX_PAGE)), cursor=cursor, status=_statuses(status)
        )

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        page_size: int = 100,
    ) -> Iterator[RemoteFile]:
        """Your files, newest first, page after page (from ``cursor``), ``limit`` at most."""
        seen = 0
        while limit is None or seen < limit:
            size = page_size if limit is None else min(page_size, limit - seen)
            page = self.page(limit=size, cursor=cursor, status=status)
            for item in page.items:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if page.next_cursor is None or not page.items:
                return
            cursor = page.next_cursor


#: The fewest hex digits a short id may have.
MIN_ID_PREFIX = 4
#: Candidates listed for an ambiguous short id, at most.
_CANDIDATES = 10
_HEX = re.compile(r"[0-9a-f]+")


def _statuses(status: str | Iterable[str] | None) -> builtins.list[str] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return [s.strip() for s in status.split(",") if s.strip()]
    return builtins.list(status)

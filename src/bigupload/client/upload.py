"""One upload of one local file: start it, or resume the one in progress, then complete it.

The order makes every interruption resumable: the state is saved as soon as the server has
answered the ticket and before any byte is sent, parts are recorded as they land, and the state
is removed only once the server has confirmed the file.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bigupload.client import retry
from bigupload.client.api import Api
from bigupload.client.direct import DirectPut
from bigupload.client.errors import (
    BigUploadError,
    ConflictError,
    FileChangedError,
    IntegrityError,
    InvalidRequestError,
    NotFoundError,
)
from bigupload.client.models import MultipartTicket, RemoteFile, StoredPart, ticket_from_json
from bigupload.client.progress import Meter, ProgressCallback
from bigupload.client.resume import FileIdentity, StateStore, UploadState
from bigupload.client.source import SourceFile
from bigupload.client.transfer import PartsTransfer, part_length, send_single

log = logging.getLogger("bigupload.client")

#: Files up to this size are hashed whole before the upload starts, so that the store checks a
#: single PUT's bytes too (parts are always checked one by one). The checksum must be declared
#: before the server says whether it wants one PUT or parts; when it wants parts, it verifies
#: the joined object against it (on S3 by reading it back), which stays cheap at this size.
WHOLE_CHECKSUM_LIMIT = 128 * 1024 * 1024
#: State is written at most this often while parts land (seconds); the store remains the judge
#: of which parts it holds, so a state a little behind costs nothing.
_SAVE_INTERVAL = 0.5
#: Rounds of "complete, send what the server says is missing, complete again".
_COMPLETE_ROUNDS = 3

#: The server's answer when the store has no multipart upload of that id (any more).
_NOT_IN_STORE = "upload_not_in_store"

_COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


def guess_content_type(name: str) -> str:
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


@dataclass(frozen=True, slots=True)
class UploadOptions:
    content_type: str | None = None
    filename: str | None = None
    metadata: dict[str, str] | None = None
    multipart: bool | None = None
    part_size: int | None = None
    resume: bool = True


class Upload:
    def __init__(
        self,
        *,
        api: Api,
        http: httpx.Client,
        policy: retry.RetryPolicy,
        states: StateStore,
        concurrency: int,
        source: SourceFile,
        identity: FileIdentity,
        options: UploadOptions,
        progress: ProgressCallback | None,
        direct: DirectPut | None = None,
    ) -> None:
        self.api = api
        self.http = http
        self.direct = direct
        self.policy = policy
        self.states = states
        self.concurrency = concurrency
        self.source = source
        self.identity = identity
        self.options = options
        self.progress = progress
        self._saved_at = 0.0

    # -- the whole ------------------------------------------------------------------------------

    def run(self) -> RemoteFile:
        resume = self.options.resume
        if resume:
            self._forget_stale()
            state = self.states.load(self.identity)
            if state is not None:
                done = self._resume(state)
                if done is not None:
                    return done
        return self._fresh()

    def _fresh(self) -> RemoteFile:
        path = Path(self.identity.path)
        options = self.options
        body: dict[str, Any] = {
            "filename": options.filename or path.name,
            "content_type": options.content_type or guess_content_type(path.name),
            "size": self.source.size,
            "part_checksums": True,
        }
        if options.metadata:
            body["metadata"] = options.metadata
        if options.multipart is not None:
            body["multipart"] = options.multipart
        if options.part_size is not None:
            body["part_size"] = options.part_size
        if options.multipart is False or (
            options.multipart is None and self.source.size <= WHOLE_CHECKSUM_LIMIT
        ):
            body["checksum_sha256"] = self.source.sha256(0, self.source.size).hex()
        ticket = ticket_from_json(self._create(body))
        if isinstance(ticket, MultipartTicket):
            state = UploadState(
                *self._identity_fields(),
                file_id=ticket.id,
                method="multipart",
                upload_id=ticket.upload_id,
                part_size=ticket.part_size,
                part_count=ticket.part_count,
                part_checksums=ticket.part_checksums,
            )
            self._check_layout(state)
            self._save(state)
            self.states.forget_creation_key(self.identity)
            return self._multipart(state, stored={})
        state = UploadState(*self._identity_fields(), file_id=ticket.id, method="PUT")
        self._save(state)
        self.states.forget_creation_key(self.identity)
        try:
            send_single(
                self.http,
                self.policy,
                self.source,
                ticket.url,
                ticket.headers,
                self.progress,
                direct=self.direct,
            )
            return self._finish(state, self.api.complete(ticket.id))
        except BaseException:
            self._abandon(state)
            raise

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Begin the upload under an ``Idempotency-Key``: saved before it is sent when resuming
        is on, so that a run killed before it saved the answer is answered the same upload
        when it runs again (and, always, so that the create's own retries begin one upload)."""
        if not self.options.resume:
            return self.api.create_upload(body, idempotency_key=str(uuid.uuid4()))
        key = self.states.creation_key(self.identity)
        try:
            return self.api.create_upload(body, idempotency_key=key)
        except (ConflictError, InvalidRequestError) as exc:
            if exc.code not in ("idempotency_key_spent", "idempotency_key_mismatch"):
                raise
            # The upload an earlier run began under this key is over (expired, say) or was
            # begun with other options: leave it, and begin this one under a new key.
            details = exc.details if isinstance(exc.details, dict) else {}
            log.info("cannot go on with upload %s (%s): starting over", details.get("file_id"), exc)
            if exc.code == "idempotency_key_mismatch" and details.get("file_id"):
                self._abort_quietly(str(details["file_id"]))
            self.states.forget_creation_key(self.identity)
            key = self.states.creation_key(self.identity)
            return self.api.create_upload(body, idempotency_key=key)

    def _identity_fields(self) -> tuple[str, str, int, int]:
        i = self.identity
        return i.server, i.path, i.size, i.mtime_ns

    # -- resuming -------------------------------------------------------------------------------

    def _resume(self, state: UploadState) -> RemoteFile | None:
        """Finish the upload ``state`` describes; ``None`` when it cannot be (start over)."""
        try:
            record = self.api.file(state.file_id)
        except NotFoundError:
            self._start_over(state, "the server no longer knows it")
            return None
        if record.readable:
            log.info("upload of %s had finished already", state.path)
            return self._finish(state, record)
        if record.status != "pending":
            self._start_over(state, f"it is {record.status}")
            return None
        if state.method == "PUT":
            return self._resume_single(state)
        if record.checksum_sha256 and (
            self.source.sha256(0, self.source.size).hex() != record.checksum_sha256.lower()
        ):
            # Changed in place, its time put back: these are not the bytes it was begun with.
            self._abort_quietly(state.file_id)
            self._start_over(state, "the file's bytes changed")
            return None
        try:
            answer, stored = self.api.stored_parts(state.file_id)
        except (NotFoundError, ConflictError) as exc:
            if isinstance(exc, ConflictError) and exc.code == _NOT_IN_STORE:
                # The store's upload may be gone because it was completed (an earlier run
                # stopped during complete): the server judges the object it holds.
                done = self._complete_what_is_stored(state)
                if done is not None:
                    return done
            # E.g. the store expired its parts: free the record too, then begin again.
            self._abort_quietly(state.file_id)
            self._start_over(state, str(exc))
            return None
        layout = (answer.get("upload_id"), answer.get("part_size"), answer.get("part_count"))
        if layout != (state.upload_id, state.part_size, state.part_count):
            self._abort_quietly(state.file_id)
            self._start_over(state, "the server describes it differently")
            return None
        trusted = self._trusted(state, stored)
        log.info(
            "resuming upload %s: %d of %d parts held by the store",
            state.file_id,
            len(trusted),
            state.part_count,
        )
        state.parts = trusted
        return self._multipart(state, stored=trusted)

    def _complete_what_is_stored(self, state: UploadState) -> RemoteFile | None:
        """Ask the server to confirm what the store holds; the file if it is (or was already)
        uploaded, ``None`` if it is still pending with nothing to confirm."""
        try:
            return self._finish(state, self.api.complete(state.file_id))
        except (ConflictError, InvalidRequestError, NotFoundError):
            pass
        return self._settled(state)

    def _settled(self, state: UploadState) -> RemoteFile | None:
        """What became of the upload, from the server: the file when its bytes are whole,
        ``None`` while it is pending; a :class:`BigUploadError` naming its state when it was
        aborted, expired or failed (the resume state is dropped: nothing is left to resume)."""
        try:
            record = self.api.file(state.file_id)
        except NotFoundError:
            self.states.discard(self.identity)
            raise
        if record.readable:
            log.info("upload %s had been completed already", state.file_id)
            return self._finish(state, record)
        if record.status == "pending":
            return None
        self.states.discard(self.identity)
        reason = f": {record.error}" if record.error else ""
        raise BigUploadError(
            f"upload {state.file_id} of {state.path} is {record.status}{reason}",
            code=f"upload_{record.status}",
        )

    def _resume_single(self, state: UploadState) -> RemoteFile | None:
        # The PUT may have landed just before the process stopped: then complete confirms it.
        try:
            return self._finish(state, self.api.complete(state.file_id))
        except ConflictError as exc:
            if exc.code == "upload_incomplete":
                self._abort_quietly(state.file_id)
            self._start_over(state, str(exc))
            return None
        except InvalidRequestError as exc:  # the store holds other bytes: the file failed
            self._start_over(state, str(exc))
            return None

    def _trusted(self, state: UploadState, stored: list[StoredPart]) -> dict[int, str]:
        """The stored parts that hold exactly this file's bytes: of the right size, and of the
        same SHA-256 when the store reports one (else of the ETag this client recorded)."""
        candidates: list[tuple[StoredPart, int]] = []
        for part in stored:
            if not 1 <= part.part_number <= state.part_count:
                continue
            length = part_length(state.size, state.part_size, part.part_number)
            if part.size != length or not part.etag:
                continue
            recorded = state.parts.get(part.part_number)
            if part.checksum_sha256 is None and recorded not in (None, part.etag):
                continue
            candidates.append((part, length))

        def matches(item: tuple[StoredPart, int]) -> bool:
            part, length = item
            if part.checksum_sha256 is None:
                return True
            offset = (part.part_number - 1) * state.part_size
            return self.source.sha256(offset, length).hex() == part.checksum_sha256.lower()

        with ThreadPoolExecutor(max_workers=max(1, min(4, self.concurrency))) as pool:
            verdicts = list(pool.map(matches, candidates))
        return {
            part.part_number: part.etag
            for (part, _), ok in zip(candidates, verdicts, strict=True)
            if ok
        }

    def _start_over(self, state: UploadState, why: str) -> None:
        log.info("cannot resume upload %s (%s): starting over", state.file_id, why)
        self.states.discard(self.identity)

    def _forget_stale(self) -> None:
        """Abort uploads of earlier versions of this file: their bytes are gone."""
        self.states.forget_stale_keys(self.identity)
        for path, state in self.states.stale(self.identity):
            if state is not None:
                log.info("the file changed since upload %s began: aborting it", state.file_id)
                self._abort_quietly(state.file_id)
            with contextlib.suppress(OSError):
                path.unlink()

    def _abort_quietly(self, file_id: str) -> None:
        with contextlib.suppress(BigUploadError):
            self.api.abort(file_id)

    def _abandon(self, state: UploadState) -> None:
        """After a failure or an interruption: keep the state to resume from, or, when this
        upload is not to be resumed, abort it so the store frees its parts."""
        if self.options.resume:
            self._save(state, force=True)
        else:
            with contextlib.suppress(Exception):
                self._abort_quietly(state.file_id)

    # -- multipart -----------------------------------------------------------------------------

    def _check_layout(self, state: UploadState) -> None:
        expected = max(1, -(-state.size // state.part_size)) if state.part_size > 0 else -1
        if expected != state.part_count:
            raise BigUploadError(
                f"the server cut {state.size} bytes into {state.part_count} parts of "
                f"{state.part_size}: that does not add up",
                code="protocol_error",
            )

    def _multipart(self, state: UploadState, *, stored: dict[int, str]) -> RemoteFile:
        etags = dict(stored)
        meter = Meter(state.size)  # one meter for every round: the rate stays this run's

        def on_part(number: int, etag: str) -> None:
            etags[number] = etag
            state.parts[number] = etag
            self._save(state)

        try:
            for _ in range(_COMPLETE_ROUNDS):
                todo = [n for n in range(1, state.part_count + 1) if n not in etags]
                if todo:
                    done = sum(part_length(state.size, state.part_size, n) for n in etags)
                    PartsTransfer(
                        api=self.api,
                        http=self.http,
                        policy=self.policy,
                        source=self.source,
                        file_id=state.file_id,
                        part_size=state.part_size,
                        checksums=state.part_checksums,
                        todo=todo,
                        bytes_done=done,
                        concurrency=self.concurrency,
                        progress=self.progress,
                        meter=meter,
                        on_part=on_part,
                        direct=self.direct,
                    ).run()
                if self.source.changed():
                    raise FileChangedError(f"{state.path} changed while it was being uploaded")
                try:
                    record = self.api.complete(state.file_id, etags.items())
                except ConflictError as exc:
                    if exc.code == _NOT_IN_STORE:
                        # Completed meanwhile (a racing run), or truly lost: the server says.
                        settled = self._settled(state)
                        if settled is not None:
                            return settled
                    if exc.code != "upload_incomplete":
                        raise
                    # The store lacks parts this client thought sent: ask which it holds.
                    _, held = self.api.stored_parts(state.file_id)
                    etags = self._trusted(state, held)
                    state.parts = dict(etags)
                    continue
                return self._finish(state, record)
            raise BigUploadError(
                "the server kept finding parts missing; giving up", code="upload_incomplete"
            )
        except BaseException:
            self._abandon(state)
            raise

    # -- the end -------------------------------------------------------------------------------

    def _finish(self, state: UploadState, record: RemoteFile) -> RemoteFile:
        stored = record.stored_size if record.stored_size is not None else record.size
        if stored is not None and stored != state.size:
            raise IntegrityError(
                f"the server holds {stored} bytes of {state.path}; it has {state.size}"
            )
        self.states.discard(self.identity)
        return record

    def _save(self, state: UploadState, force: bool = False) -> None:
        if not self.options.resume:
            return
        now = time.monotonic()
        if (
            force
            or state.method == "PUT"
            or not state.parts
            or now - self._saved_at >= _SAVE_INTERVAL
        ):
            self.states.save(self.identity, state)
            self._saved_at = now

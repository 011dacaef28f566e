"""The ``process`` job: verify and process one landed file, ``uploaded -> processing ->
completed | failed``.

One job per file (``dedupe_key`` ``process:<file id>``), queued in the transaction that makes the
file ``uploaded``. The handler:

1. moves the file ``uploaded -> processing`` (a file already ``processing`` is a job run again
   after a crash: it carries on; a file in any other state ends the job untouched);
2. with no registry session open, asks the store: the object must still be there, of the size
   that was uploaded and, when checksums are wanted (``BIGUPLOAD_PROCESSING_CHECKSUM=always``,
   or the uploader declared one), of the declared SHA-256;
3. reads the first 64 KiB (a ranged GET) to detect the real content type, and judges it by
   ``BIGUPLOAD_CONTENT_TYPE_CHECK`` (:mod:`.policy`);
4. runs the configured steps (:mod:`.steps`);
5. records what it found, ``processing -> completed`` or ``-> failed`` with the reason, and ends
   the job in the same transaction, so the outcome is recorded exactly once.

What the uploader declared (type, size, checksum, name, metadata) is never overwritten: what
was found goes to ``detected_content_type``, ``stored_size``, ``etag``, ``results["detected"]``,
and to ``checksum_sha256`` only when none was declared. A store that cannot be reached, or a step
that fails other than by :class:`~.steps.ProcessingFailed`, makes the job try again later; when
its attempts run out the file fails with the last reason.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bigupload import clock
from bigupload.config import Settings
from bigupload.files import repository
from bigupload.files.models import FileRecord
from bigupload.files.schemas import FileOut
from bigupload.files.status import FileStatus
from bigupload.jobs import queue
from bigupload.jobs.kinds import JobContext, JobKind, Retry
from bigupload.jobs.runner import describe
from bigupload.processing import policy
from bigupload.processing.detect import SNIFF_BYTES, Detection, compatibility, sniff
from bigupload.processing.steps import ProcessingFailed, Step, StepContext, load_steps
from bigupload.storage.base import ObjectNotFound, Storage, StorageError, StoredObject

log = logging.getLogger("bigupload.processing")

PROCESS = "process"
#: How many of puremagic's candidate types ``results["detected"]`` keeps.
CANDIDATES_KEPT = 10
GONE = "the stored object is gone"


async def enqueue_processing(session: AsyncSession, record: FileRecord, settings: Settings) -> None:
    """Queue the processing of ``record`` in ``session``'s transaction (once per file)."""
    await queue.enqueue(
        session,
        PROCESS,
        {"file_id": str(record.id)},
        max_attempts=settings.job_max_attempts,
        file_id=record.id,
        owner=record.owner,
        dedupe_key=f"process:{record.id}",
    )


def process_kind(settings: Settings) -> JobKind:
    """The ``process`` job kind, with the configured steps imported (a
    :class:`~bigupload.config.ConfigError` if one cannot be)."""
    processor = Processor(load_steps(settings.processing_steps))
    return JobKind(name=PROCESS, run=processor.run, give_up=give_up)


@dataclass
class _Verdict:
    """What examining the stored object concluded."""

    reason: str | None = None  # why the file fails; None: it completes
    found: dict[str, Any] = field(default_factory=dict)  # results["detected"]
    steps: dict[str, Any] = field(default_factory=dict)  # results of the steps, by name
    values: dict[str, Any] = field(default_factory=dict)  # columns to record

    def fail(self, reason: str) -> _Verdict:
        self.reason = reason
        return self

    @property
    def results(self) -> dict[str, Any]:
        return {"detected": self.found, **self.steps}


class Processor:
    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.steps = steps

    async def run(self, ctx: JobContext) -> None:
        started = time.monotonic()
        file_id = _file_id(ctx)
        record = await _begin(ctx, file_id)
        if record is None:
            return
        verdict = _Verdict()
        try:
            await self._examine(ctx, record, verdict)
        except ObjectNotFound:
            verdict.fail(GONE)
        except StorageError as exc:  # unreachable, or failing: both may pass
            raise Retry(f"the store failed: {describe(exc)}") from exc
        outcome = await _conclude(ctx, file_id, verdict)
        log.info(
            "file %s processed: outcome=%s owner=%s bytes=%s detected=%s attempt=%d/%d "
            "took=%.3fs%s",
            file_id,
            outcome,
            record.owner,
            verdict.found.get("stored_size"),
            verdict.found.get("content_type"),
            ctx.attempt,
            ctx.max_attempts,
            time.monotonic() - started,
            f" reason={verdict.reason!r}" if verdict.reason else "",
        )

    async def _examine(self, ctx: JobContext, record: FileRecord, verdict: _Verdict) -> _Verdict:
        """Check the stored object against the record, detect its type, run the steps."""
        settings, storage = ctx.settings, ctx.storage
        want_checksum = (
            settings.processing_checksum == "always" or record.checksum_sha256 is not None
        )
        stored = await storage.stat(record.key, with_checksum=want_checksum)
        if stored is None:
            return verdict.fail(GONE)
        verdict.found.update(stored_size=stored.size, etag=stored.etag)
        if reason := _size_problem(record, stored):
            return verdict.fail(reason)
        verdict.values.update(stored_size=stored.size, etag=stored.etag)

        if want_checksum:
            digest, source = await _checksum(storage, stored)
            verdict.found.update(sha256=digest, sha256_source=source)
            declared = record.checksum_sha256
            if declared is not None and digest != declared.lower():
                return verdict.fail(
                    f"checksum_mismatch: the stored bytes' SHA-256 is {digest}, "
                    f"{declared} was declared"
                )
            if declared is None:
                verdict.values["checksum_sha256"] = digest

        head = await storage.read_range(record.key, 0, SNIFF_BYTES)
        detection = sniff(head, whole=len(head) >= stored.size)
        verdict.found.update(_detected(record, detection))
        verdict.values["detected_content_type"] = detection.content_type
        if reason := policy.check(settings, record.content_type, detection):
            return verdict.fail(reason)

        snapshot = FileOut.of(record)
        for step in self.steps:
            step_ctx = StepContext(
                file=snapshot,
                detected_content_type=detection.content_type,
                storage=storage,
                settings=settings,
                attempt=ctx.attempt,
                results={**verdict.results},
            )
            try:
                answer = await step.run(step_ctx)
            except ProcessingFailed as exc:
                return verdict.fail(exc.reason)
            except ObjectNotFound:
                return verdict.fail(GONE)
            except Exception as exc:
                raise Retry(f"processing step {step.name} failed: {describe(exc)}") from exc
            if answer is not None:
                verdict.steps[step.name] = answer
        return verdict


def _file_id(ctx: JobContext) -> uuid.UUID:
    if ctx.file_id is not None:
        return ctx.file_id
    return uuid.UUID(str(ctx.payload["file_id"]))


async def _begin(ctx: JobContext, file_id: uuid.UUID) -> FileRecord | None:
    """The file, moved to ``processing``; ``None`` (and the job done) if it is not to be
    processed: gone, or no longer ``uploaded`` nor ``processing``."""
    async with ctx.sessionmaker() as session:
        record = await session.get(FileRecord, file_id)
        if record is not None and record.status == FileStatus.UPLOADED.value:
            moved = await repository.transition(
                session, record, FileStatus.UPLOADED, FileStatus.PROCESSING
            )
            if not moved:  # someone else moved it first: see where to
                record = await session.get(FileRecord, file_id, populate_existing=True)
        if record is not None and record.status == FileStatus.PROCESSING.value:
            await session.commit()
            return record
        status = record.status if record is not None else "deleted"
        await ctx.finish(session, {"outcome": "skipped", "status": status})
        await session.commit()
    log.info("file %s not processed: it is %s", file_id, status)
    return None


async def _conclude(ctx: JobContext, file_id: uuid.UUID, verdict: _Verdict) -> str:
    """Record the verdict and end the job, in one transaction; answer the outcome."""
    async with ctx.sessionmaker() as session:
        record = await session.get(FileRecord, file_id)
        outcome = "skipped"
        if record is not None:
            results = {**(record.results or {}), **verdict.results}
            if verdict.reason is None:
                moved = await repository.transition(
                    session,
                    record,
                    FileStatus.PROCESSING,
                    FileStatus.COMPLETED,
                    completed_at=clock.now(),
                    results=results,
                    **verdict.values,
                )
                outcome = "completed"
            else:
                found = {k: v for k, v in verdict.values.items() if k == "detected_content_type"}
                moved = await repository.transition(
                    session,
                    record,
                    FileStatus.PROCESSING,
                    FileStatus.FAILED,
                    reason=verdict.reason,
                    error=verdict.reason,
                    results=results,
                    **found,
                )
                outcome = "failed"
            if not moved:  # expired, deleted or settled by someone else meanwhile
                record = await session.get(FileRecord, file_id, populate_existing=True)
                outcome = "skipped"
        result: dict[str, Any] = {"outcome": outcome}
        if outcome == "skipped":
            result["status"] = record.status if record is not None else "deleted"
        elif verdict.reason is not None:
            result["reason"] = verdict.reason
        await ctx.finish(session, result)
        await session.commit()
    return outcome if outcome != "skipped" else f"skipped ({result['status']})"


def _size_problem(record: FileRecord, stored: StoredObject) -> str | None:
    uploaded = record.stored_size if record.stored_size is not None else record.size
    declared = record.size if record.size is not None else uploaded
    if uploaded is None or (stored.size == uploaded and stored.size == declared):
        return None
    problem = "truncated" if stored.size < uploaded else "size_mismatch"
    return f"{problem}: the store holds {stored.size} bytes, {uploaded} were uploaded"


async def _checksum(storage: Storage, stored: StoredObject) -> tuple[str, str]:
    """The object's hex SHA-256, and where it came from: the store's record, or reading it."""
    if stored.checksum_sha256:
        return stored.checksum_sha256.lower(), "store"
    return (await storage.sha256(stored.key)).hex(), "computed"


def _detected(record: FileRecord, detection: Detection) -> dict[str, Any]:
    found = detection.as_dict()
    found["candidates"] = list(detection.candidates[:CANDIDATES_KEPT])
    found["declared_content_type"] = record.content_type
    found["compatible_by"] = compatibility(
        record.content_type, detection.content_type, detection.candidates
    )
    return found


async def give_up(ctx: JobContext, reason: str) -> None:
    """Out of attempts: the file fails with the last reason (if it is still being processed)."""
    file_id = _file_id(ctx)
    text = reason if reason.startswith("processing") else f"processing failed: {reason}"
    failed = False
    async with ctx.sessionmaker() as session:
        record = await session.get(FileRecord, file_id)
        for expected in (FileStatus.PROCESSING, FileStatus.UPLOADED):
            if record is not None and record.status == expected.value:
                failed = await repository.transition(
                    session,
                    record,
                    expected,
                    FileStatus.FAILED,
                    reason=text,
                    failure="gave_up",
                    error=text,
                )
                break
        await session.commit()
    if failed:
        log.error("file %s processed: outcome=failed owner=%s reason=%r", file_id, ctx.owner, text)

"""Claiming and running durable jobs, and doing periodic work, in any number of processes.

A runner claims due jobs (:func:`bigupload.jobs.repository.claim_due`: row locks on PostgreSQL,
one writer at a time on SQLite), leases each to itself for ``job_lease_seconds`` and runs its
handler while a heartbeat extends the lease. A job whose worker died or stalled is taken over
once its lease has passed. Every write about an attempt is conditional on the job still being
that attempt's, so a handler that commits its effect together with :meth:`JobContext.finish`
does it exactly once, and a worker that lost its job never overwrites the new owner's state.

Out of attempts, or on :class:`GiveUp`, a job goes ``dead`` after its kind's ``give_up`` hook
has run, the job still leased to this worker: if the worker dies in the hook, another calls it
again once the lease has passed. Hooks, like handlers, must be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bigupload import clock
from bigupload.config import Settings
from bigupload.db_errors import Problem, problem_of
from bigupload.jobs import leases, repository, wakeups
from bigupload.jobs.kinds import (
    GiveUp,
    JobContext,
    JobKind,
    LeaseLost,
    Periodic,
    PeriodicContext,
    Retry,
)
from bigupload.jobs.repository import Claimed
from bigupload.metrics.catalog import job_attempt_ended
from bigupload.storage.base import Storage

log = logging.getLogger("bigupload.jobs")

WORKER_ID_MAX = 64  # the width of jobs.locked_by and leases.holder
ERROR_MAX_BYTES = 2048
JITTER = 0.2  # retry delays are the backoff times a factor in [1 - JITTER, 1 + JITTER]


def default_worker_id() -> str:
    """``host:pid:random``, at most 64 characters."""
    suffix = f":{os.getpid()}:{secrets.token_hex(3)}"
    return socket.gethostname()[: WORKER_ID_MAX - len(suffix)] + suffix


def describe(exc: BaseException) -> str:
    """``Type: message``, cut to 2 KiB of UTF-8: what ``last_error`` records."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    raw = text.encode()
    if len(raw) <= ERROR_MAX_BYTES:
        return text
    return raw[: ERROR_MAX_BYTES - 3].decode(errors="ignore") + "..."


@dataclass
class RunnerStats:
    """What one runner did since it was made (for logs, metrics and tests)."""

    rounds: int = 0  # claim rounds of the background loop
    attempts: int = 0  # handler runs
    done: int = 0
    retried: int = 0
    dead: int = 0
    lease_lost: int = 0


@dataclass
class _Attempt:
    """What the runner and the heartbeat share about one running attempt."""

    finishing: bool = False  # ctx.finish was called: a lost lease is then expected
    finished: bool = False  # ctx.finish wrote the job done (in the handler's transaction)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


class JobRunner:
    """Claims and runs jobs of ``kinds``, and does ``periodics``, until stopped."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        storage: Storage,
        settings: Settings,
        kinds: Mapping[str, JobKind],
        periodics: Sequence[Periodic] = (),
        worker_id: str | None = None,
    ) -> None:
        self.worker_id = worker_id or default_worker_id()
        if len(self.worker_id) > WORKER_ID_MAX:
            raise ValueError(f"worker_id longer than {WORKER_ID_MAX} characters")
        names = [p.name for p in periodics]
        if len(set(names)) != len(names):
            raise ValueError("two periodics with the same name")
        self.sessionmaker = sessionmaker
        self.storage = storage
        self.settings = settings
        self.kinds = dict(kinds)
        self.periodics = {p.name: p for p in periodics}
        self.stats = RunnerStats()
        self._random = random.Random()  # noqa: S311 (jitter, not secrets)
        self._wake = asyncio.Event()
        self._stopping = False
        #: What is wrong with the registry, per loop ("claim" or a periodic's name), while it is.
        self._outages: dict[str, Problem] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._jobs: set[asyncio.Task[bool]] = set()
        self._periodic_tasks: dict[str, asyncio.Task[object]] = {}
        #: Periodics a wake-up made due now (``Periodic.notified_by``).
        self._notified: set[str] = set()
        #: When each periodic last started, on the loop's clock (for ``Periodic.gap``).
        self._started: dict[str, float] = {}
        #: Whether the loop must look for jobs when it wakes: jobs were queued, a slot was freed,
        #: or ``wake`` was called. A wake-up for periodics alone (new file events for the
        #: dispatcher, a periodic that ended) starts them without a claim, until the claim's
        #: own time comes (``_run``).
        self._claim_wanted = True
        self._listener: wakeups.Listener | None = None

    # -- the background loop -----------------------------------------------------------------

    async def start(self) -> None:
        """Start claiming jobs and doing periodic work in the background."""
        if self._loop_task is not None:
            return
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        wakeups.register(self)
        self._listener = self._make_listener()
        if self._listener is not None:
            self._listener.start()
        self._loop_task = asyncio.create_task(self._run(), name=f"jobs {self.worker_id}")
        log.info(
            "job runner %s started: kinds %s, periodics %s, %d at once",
            self.worker_id,
            ", ".join(sorted(self.kinds)) or "none",
            ", ".join(sorted(self.periodics)) or "none",
            self.settings.job_concurrency,
        )

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Stop claiming; give running jobs ``timeout`` seconds, then cancel them.

        A cancelled job is given back to the queue, due at once, for another worker (its
        attempt counts); if the registry cannot be reached then, it stays leased to this worker
        until its lease expires.
        """
        self._stopping = True
        wakeups.unregister(self)
        self._wake.set()
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()
        if self._loop_task is None:
            return
        task, self._loop_task = self._loop_task, None
        await _wait_or_cancel({task}, timeout)
        pending: set[asyncio.Task[Any]] = {*self._jobs, *self._periodic_tasks.values()}
        unfinished = await _wait_or_cancel(pending, timeout)
        log.log(
            logging.WARNING if unfinished else logging.INFO,
            "job runner %s stopped%s",
            self.worker_id,
            f"; {unfinished} unfinished tasks cancelled (their jobs are given back to the queue)"
            if unfinished
            else "",
        )

    def wake(self) -> None:
        """Look for due jobs now rather than after the poll interval."""
        self._claim_wanted = True
        self._wake.set()

    def notified(self, payload: str) -> None:
        """A wake-up (:mod:`bigupload.jobs.wakeups`): jobs were queued, or the periodics
        ``notified_by`` ``payload`` have work."""
        for_periodic = news = False
        for name, periodic in self.periodics.items():
            if periodic.notified_by == payload:
                for_periodic = True
                # Already notified, or running (its end wakes the loop): nothing new to wake for.
                news |= name not in self._notified and name not in self._periodic_tasks
                self._notified.add(name)
        if not for_periodic:  # jobs were queued (or a payload no periodic answers)
            self._claim_wanted = news = True
        if news:
            self._wake.set()

    def notified_from_any_thread(self, payload: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # (no loop runs in this thread)
            if asyncio.get_running_loop() is loop:  # no hand-off through the loop's self-pipe
                self.notified(payload)
                return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self.notified, payload)

    @property
    def listening(self) -> bool:
        """Whether this runner is woken by LISTEN/NOTIFY now (PostgreSQL)."""
        return self._listener is not None and self._listener.up

    def _make_listener(self) -> wakeups.Listener | None:
        engine = self.sessionmaker.kw.get("bind")
        if self.settings.job_notify == "off" or not isinstance(engine, AsyncEngine):
            return None
        if not wakeups.can_listen(engine):
            return None
        return wakeups.Listener(
            engine,
            self.notified,
            name=self.worker_id,
            check_interval=self.settings.job_notify_poll_interval,
        )

    async def _idle_wait(self, caught_up: bool) -> float:
        """How long to wait for a wake-up before looking for jobs again: the poll interval, or
        while listening the longer one, but no longer than until a known job becomes due."""
        if not self.listening:
            return self.settings.job_poll_interval
        wait = self.settings.job_notify_poll_interval
        if caught_up and self.kinds:
            try:
                async with self.sessionmaker() as session, session.begin():
                    due = await repository.next_due(session, self.kinds)
            except Exception:  # the claim's own failure is what is logged
                return self.settings.job_poll_interval
            if due is not None:
                wait = min(wait, max(0.0, (due - clock.now()).total_seconds()))
        return wait

    async def _run(self) -> None:
        now = clock.now()
        next_due = {name: now for name in self.periodics}
        loop = asyncio.get_running_loop()
        claim_at = loop.time()  # when to look for jobs even if nothing asks for it
        while not self._stopping:
            self._wake.clear()
            self._start_due_periodics(next_due)
            if not self._claim_wanted and loop.time() < claim_at:
                # Woken for periodics only: no job was queued, so no claim (and on PostgreSQL
                # no look for the next due one) until the wait the last claim chose is over.
                await self._wait(next_due, claim_at - loop.time())
                continue
            self._claim_wanted = False
            free = self.settings.job_concurrency - len(self._jobs)
            caught_up = free > 0  # then: unless a full batch came, every due job is claimed
            if free > 0:
                try:
                    claims = await self._claim(free)
                except Exception as exc:
                    self._loop_failed("claim", "could not claim jobs", exc, logging.WARNING)
                    claims = []
                else:
                    self._loop_recovered("claim")
                caught_up = len(claims) < free
                for claim in claims:
                    task = asyncio.create_task(self._execute(claim), name=f"job {claim.id}")
                    self._jobs.add(task)
                    task.add_done_callback(self._job_ended)
            self.stats.rounds += 1
            if self._stopping:
                break
            wait = await self._idle_wait(caught_up)
            claim_at = loop.time() + wait
            await self._wait(next_due, wait)

    async def _wait(self, next_due: dict[str, datetime], wait: float) -> None:
        """Wait for a wake-up, at most ``wait`` seconds and no longer than until a periodic
        that is not running is due."""
        waiting = [due for name, due in next_due.items() if name not in self._periodic_tasks]
        if waiting:  # (one still running wakes the loop when it ends)
            until_periodic = (min(waiting) - clock.now()).total_seconds()
            wait = max(0.0, min(wait, until_periodic))
        held = [self._gap_ends(n) for n in self._notified if n not in self._periodic_tasks]
        if held:  # notified, but within its gap
            wait = max(0.0, min(wait, min(held) - asyncio.get_running_loop().time()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, wait))

    def _job_ended(self, task: asyncio.Task[bool]) -> None:
        self._jobs.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("job task failed", exc_info=task.exception())
        self._claim_wanted = True  # a slot is free, and a job waiting on its ordering key
        self._wake.set()  # may be due

    def _gap_ends(self, name: str) -> float:
        """When a notified run of the periodic ``name`` may start, on the loop's clock."""
        gap = self.periodics[name].gap
        started = self._started.get(name)
        if gap is None or started is None:
            return 0.0
        return started + gap(self.settings)

    def _start_due_periodics(self, next_due: dict[str, datetime]) -> None:
        now = clock.now()
        loop_now = asyncio.get_running_loop().time()
        for name, periodic in self.periodics.items():
            if name in self._periodic_tasks:
                continue
            if now < next_due[name] and (
                name not in self._notified or loop_now < self._gap_ends(name)
            ):
                continue
            self._notified.discard(name)
            self._started[name] = loop_now
            interval = periodic.interval(self.settings)
            if periodic.notified_by is not None and self.listening:
                interval = max(interval, self.settings.job_notify_poll_interval)
            next_due[name] = now + timedelta(seconds=interval)
            task = asyncio.create_task(self._periodic_logged(periodic), name=f"periodic {name}")
            self._periodic_tasks[name] = task
            task.add_done_callback(self._periodic_ended)

    def _periodic_ended(self, task: asyncio.Task[object]) -> None:
        for name, running in list(self._periodic_tasks.items()):
            if running is task:
                del self._periodic_tasks[name]
        self._wake.set()

    async def _periodic_logged(self, periodic: Periodic) -> object:
        try:
            result = await self._run_periodic(periodic)
        except Exception as exc:
            self._loop_failed(periodic.name, f"periodic {periodic.name} failed", exc, logging.ERROR)
            return None
        self._loop_recovered(periodic.name)
        return result

    def _loop_failed(self, loop: str, what: str, exc: Exception, level: int) -> None:
        """Log a failure of ``loop``: a registry outage once, in one line, until it ends (the
        loop retries every poll); anything else at ``level`` with its traceback, every time."""
        problem = problem_of(exc)
        if problem is None:
            log.log(level, "job runner %s: %s", self.worker_id, what, exc_info=exc)
        elif self._outages.get(loop) != problem:
            log.warning(
                "job runner %s: %s: the registry is unavailable (%s); retrying",
                self.worker_id,
                what,
                problem,
            )
        if problem is not None:
            self._outages[loop] = problem
        else:
            self._outages.pop(loop, None)

    def _loop_recovered(self, loop: str) -> None:
        if self._outages.pop(loop, None) is not None:
            log.info("job runner %s: the registry answers again (%s)", self.worker_id, loop)

    # -- for tests and `bigupload sweep` -------------------------------------------------------

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        """Claim and run every due job (up to ``job_concurrency`` at once) until none is due.

        Jobs due only later are left alone. Answers how many attempts ran.
        """
        ran = 0
        for _ in range(max_rounds):
            claims = await self._claim(self.settings.job_concurrency)
            if not claims:
                break
            outcomes = await asyncio.gather(*(self._execute(claim) for claim in claims))
            ran += sum(outcomes)
        return ran

    async def run_periodic(self, name: str) -> object:
        """Do periodic ``name`` now (taking its lease if it is exclusive) and answer its result,
        or ``None`` if another process holds the lease."""
        return await self._run_periodic(self.periodics[name])

    # -- claiming ----------------------------------------------------------------------------

    async def _claim(self, limit: int) -> list[Claimed]:
        if limit <= 0 or not self.kinds:
            return []
        async with self.sessionmaker() as session, session.begin():
            return await repository.claim_due(
                session,
                kinds=self.kinds,
                worker_id=self.worker_id,
                limit=limit,
                lease_seconds=self.settings.job_lease_seconds,
            )

    # -- running -----------------------------------------------------------------------------

    async def _execute(self, claim: Claimed) -> bool:
        """Run one claimed job to an outcome; ``True`` if its handler ran."""
        kind = self.kinds[claim.kind]
        state = _Attempt()
        ctx = JobContext(
            job_id=claim.id,
            kind=claim.kind,
            payload=claim.payload,
            file_id=claim.file_id,
            owner=claim.owner,
            attempt=claim.attempt,
            max_attempts=claim.max_attempts,
            worker_id=self.worker_id,
            settings=self.settings,
            storage=self.storage,
            sessionmaker=self.sessionmaker,
            finish=self._finisher(claim, state),
        )
        heartbeat = asyncio.create_task(
            leases.keep_alive(
                state.stopped,
                self.settings.job_lease_seconds / 3,
                lambda: self._extend(claim),
                lambda: self._heartbeat_lost(claim, state),
                f"the lease of job {claim.id}",
            ),
            name=f"heartbeat {claim.id}",
        )
        try:
            ran = await self._attempt(kind, ctx, claim, state)
        except asyncio.CancelledError:
            heartbeat.cancel()
            if self._stopping and not state.finished:
                await asyncio.shield(self._release(claim))
            raise
        except BaseException:
            heartbeat.cancel()
            raise
        state.stopped.set()
        await heartbeat
        return ran

    async def _attempt(
        self, kind: JobKind, ctx: JobContext, claim: Claimed, state: _Attempt
    ) -> bool:
        if claim.give_up_reason is not None:
            _outcome(logging.ERROR, ctx, "dead", None, claim.give_up_reason)
            await self._bury(kind, ctx, claim.give_up_reason, last_error=claim.give_up_reason)
            return False
        self.stats.attempts += 1
        started = time.monotonic()
        try:
            await kind.run(ctx)
            if not state.finished:
                async with self.sessionmaker() as session, session.begin():
                    await ctx.finish(session, None)
        except LeaseLost:
            self._lease_lost(ctx, time.monotonic() - started)
            return True
        except Exception as exc:
            await self._failed(kind, ctx, exc, time.monotonic() - started)
            return True
        self.stats.done += 1
        _outcome(logging.INFO, ctx, "done", time.monotonic() - started)
        return True

    def _finisher(
        self, claim: Claimed, state: _Attempt
    ) -> Callable[[AsyncSession, dict[str, Any] | None], Awaitable[None]]:
        async def finish(session: AsyncSession, result: dict[str, Any] | None) -> None:
            state.finishing = True
            if not await repository.mark_done(
                session, claim.id, self.worker_id, claim.attempt, result
            ):
                raise LeaseLost(f"job {claim.id} is no longer attempt {claim.attempt}'s")
            state.finished = True

        return finish

    async def _failed(self, kind: JobKind, ctx: JobContext, exc: Exception, took: float) -> None:
        error = describe(exc)
        instruction = isinstance(exc, Retry | GiveUp)
        result = exc.result if isinstance(exc, Retry | GiveUp) else None
        # An instruction's traceback says nothing; an unexpected error's says where.
        exc_info = exc if not instruction or exc.__cause__ is not None else None
        if isinstance(exc, GiveUp) or ctx.attempt >= ctx.max_attempts:
            message = (str(exc) or type(exc).__name__) if instruction else error
            reason = message if isinstance(exc, GiveUp) else f"{message} ({ctx.attempt} attempts)"
            _outcome(logging.ERROR, ctx, "dead", took, error, exc_info)
            await self._bury(kind, ctx, reason, last_error=error, result=result)
            return
        after = exc.after if isinstance(exc, Retry) else None
        delay = (after if after is not None else kind.backoff(ctx.attempt)) * self._random.uniform(
            1 - JITTER, 1 + JITTER
        )
        try:
            async with self.sessionmaker() as session, session.begin():
                requeued = await repository.requeue(
                    session,
                    ctx.job_id,
                    self.worker_id,
                    ctx.attempt,
                    run_at=clock.now() + timedelta(seconds=delay),
                    last_error=error,
                    result=result,
                )
        except Exception:
            log.exception("job %d (%s): could not record its failure", ctx.job_id, ctx.kind)
            return
        if not requeued:
            self._lease_lost(ctx, took)
            return
        self.stats.retried += 1
        if isinstance(exc, Retry) and exc.waiting:
            _outcome(logging.DEBUG, ctx, f"waiting, again in {delay:.1f}s", took, error)
        else:
            _outcome(logging.WARNING, ctx, f"failed, retry in {delay:.1f}s", took, error, exc_info)

    async def _bury(
        self,
        kind: JobKind,
        ctx: JobContext,
        reason: str,
        *,
        last_error: str,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Call the give_up hook (the job still leased to us), then mark the job dead."""
        if kind.give_up is not None:
            try:
                await kind.give_up(ctx, reason)
            except Exception:
                log.exception("job %d (%s): its give_up hook failed", ctx.job_id, ctx.kind)
        try:
            async with self.sessionmaker() as session, session.begin():
                buried = await repository.mark_dead(
                    session,
                    ctx.job_id,
                    self.worker_id,
                    ctx.attempt,
                    last_error=last_error,
                    result=result,
                )
        except Exception:
            log.exception("job %d (%s): could not mark it dead", ctx.job_id, ctx.kind)
            return
        if not buried:
            self._lease_lost(ctx, None)
            return
        self.stats.dead += 1

    def _lease_lost(self, ctx: JobContext, took: float | None) -> None:
        self.stats.lease_lost += 1
        detail = "another worker took the job over; this attempt's writes were rolled back"
        _outcome(logging.WARNING, ctx, "lease lost", took, detail)

    async def _release(self, claim: Claimed) -> None:
        """Give a job cancelled by :meth:`stop` back to the queue, due now, rather than leave it
        leased until its lease passes; its handler's transaction was rolled back."""
        try:
            async with self.sessionmaker() as session, session.begin():
                released = await repository.requeue(
                    session,
                    claim.id,
                    self.worker_id,
                    claim.attempt,
                    run_at=clock.now(),
                    last_error=f"Stopped: worker {self.worker_id} stopped during the attempt",
                    result=None,
                )
        except Exception as exc:
            log.warning(
                "job %d (%s): could not release it (%s); it is retried after its lease",
                claim.id,
                claim.kind,
                describe(exc),
            )
            return
        if released:
            log.info("job %d (%s): released for another worker", claim.id, claim.kind)

    async def _extend(self, claim: Claimed) -> bool:
        async with self.sessionmaker() as session, session.begin():
            return await repository.extend(
                session, claim.id, self.worker_id, claim.attempt, self.settings.job_lease_seconds
            )

    def _heartbeat_lost(self, claim: Claimed, state: _Attempt) -> None:
        if not state.finishing and not state.stopped.is_set():
            log.warning(
                "job %d (%s): attempt %d lost its lease while running (the worker stalled "
                "longer than %.0fs); another worker may run it",
                claim.id,
                claim.kind,
                claim.attempt,
                self.settings.job_lease_seconds,
            )

    # -- periodics ---------------------------------------------------------------------------

    async def _run_periodic(self, periodic: Periodic) -> object:
        ctx = PeriodicContext(
            worker_id=self.worker_id,
            settings=self.settings,
            storage=self.storage,
            sessionmaker=self.sessionmaker,
        )

        async def work() -> object:
            started = time.monotonic()
            result = await periodic.run(ctx)
            shown = "" if result is None else ": " + repr(result)
            took = time.monotonic() - started
            # Work that found nothing to do (the dispatcher, every poll) is not worth a line.
            level = logging.DEBUG if result in (None, 0) else logging.INFO
            log.log(level, "periodic %s ran in %.3fs%s", periodic.name, took, _cut(shown, 200))
            return result

        if not periodic.exclusive:
            return await work()
        # The lease is kept to its end: nobody else does this work again within the interval.
        held, result = await leases.holding(
            self.sessionmaker,
            f"periodic:{periodic.name}"[:WORKER_ID_MAX],
            self.worker_id,
            periodic.interval(self.settings),
            work,
        )
        if not held:
            log.debug("periodic %s: another process holds its lease", periodic.name)
        return result


#: The metrics' name of each outcome :func:`_outcome` logs (by the words before a comma).
_OUTCOMES = {
    "done": "done",
    "dead": "dead",
    "failed": "retry",
    "waiting": "waiting",
    "lease lost": "lease_lost",
}


def _outcome(
    level: int,
    ctx: JobContext,
    outcome: str,
    took: float | None,
    detail: str = "",
    exc_info: BaseException | None = None,
) -> None:
    """One log line per attempt's outcome, with the kind, job id, attempt and duration; and
    the attempt counted in the metrics."""
    job_attempt_ended(ctx.kind, _OUTCOMES.get(outcome.split(",", 1)[0], "other"))
    log.log(
        level,
        "job %d (%s) %s: attempt %d/%d%s%s",
        ctx.job_id,
        ctx.kind,
        outcome,
        ctx.attempt,
        ctx.max_attempts,
        "" if took is None else f" in {took:.3f}s",
        f": {detail}" if detail else "",
        exc_info=exc_info,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


async def _wait_or_cancel(tasks: set[asyncio.Task[Any]], seconds: float) -> int:
    """Wait up to ``seconds`` for ``tasks``, then cancel the rest; answer how many were."""
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return len(pending)

"""What a kind of job is, what its handler is given, and how a handler reports failure.

A handler runs at least once per job and, when it commits its effect together with
:meth:`JobContext.finish`, that effect happens exactly once: ``finish`` succeeds only while the job
is still leased to this worker, so a worker that lost its lease (it stalled, another took the
job over) rolls its work back instead of doing it a second time.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bigupload.config import Settings
from bigupload.storage.base import Storage


class Retry(Exception):  # an instruction, not an error
    """Try the job again later (after ``after`` seconds, else the kind's backoff).

    ``result`` is recorded on the job (e.g. the webhook receiver's status and answer).
    """

    def __init__(
        self,
        message: str,
        *,
        after: float | None = None,
        result: dict[str, Any] | None = None,
        waiting: bool = False,
    ) -> None:
        super().__init__(message)
        self.after = after
        self.result = result
        #: Not a failure: the job polls for something that has not happened yet (logged at DEBUG).
        self.waiting = waiting


class GiveUp(Exception):
    """The job cannot succeed: stop retrying, mark it dead, and call the kind's ``give_up``."""

    def __init__(self, message: str, *, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.result = result


class LeaseLost(Exception):
    """Another worker took the job over: this worker's work must be rolled back."""


@dataclass(frozen=True, slots=True)
class JobContext:
    """One attempt at one job, as its handler sees it."""

    job_id: int
    kind: str
    payload: dict[str, Any]
    file_id: uuid.UUID | None
    owner: str | None
    attempt: int  # 1 for the first attempt
    max_attempts: int
    worker_id: str
    settings: Settings
    storage: Storage
    sessionmaker: async_sessionmaker[AsyncSession]
    #: Marks the job done in ``session`` (not committed), with ``result`` recorded; raises
    #: :class:`LeaseLost` if the job is no longer this attempt's. Commit right after it.
    finish: Callable[[AsyncSession, dict[str, Any] | None], Awaitable[None]] = field(repr=False)

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


Handler = Callable[[JobContext], Awaitable[None]]
#: Called once, in place of further attempts, with the reason the job gave up.
GiveUpHandler = Callable[[JobContext, str], Awaitable[None]]


def exponential_backoff(attempt: int, *, base: float = 2.0, cap: float = 3600.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (before jitter)."""
    return float(min(cap, base * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    run: Handler
    give_up: GiveUpHandler | None = None
    #: Seconds before the next attempt after failed attempt number ``n`` (jitter is added).
    backoff: Callable[[int], float] = exponential_backoff
    #: Default for jobs of this kind (``None``: the ``job_max_attempts`` setting).
    max_attempts: int | None = None


@dataclass(frozen=True, slots=True)
class PeriodicContext:
    worker_id: str
    settings: Settings
    storage: Storage
    sessionmaker: async_sessionmaker[AsyncSession]


@dataclass(frozen=True, slots=True)
class Periodic:
    """Work a runner does every ``interval`` seconds.

    ``exclusive`` work is done by one process at a time across all of them (a named lease in the
    registry); the rest must itself be safe to run in several processes at once.

    Work ``notified_by`` a wake-up payload (:mod:`bigupload.jobs.wakeups`) is done at once when
    one arrives; while the runner listens for them, its interval is at least
    ``job_notify_poll_interval``. With a ``gap``, a notified run starts no sooner than that many
    seconds after the previous run started, so a burst of wake-ups is served by one run.
    """

    name: str
    interval: Callable[[Settings], float]
    run: Callable[[PeriodicContext], Awaitable[object]]
    exclusive: bool = False
    notified_by: str | None = None
    gap: Callable[[Settings], float] | None = None

"""Bounded retries: exponential backoff with full jitter, ``Retry-After`` honoured.

An attempt raises :class:`Retry` for an outcome another attempt may fix (the network failed,
the server answered 5xx or 429, a part URL expired, the store refused a part's checksum); any
other exception ends the call at once. When the attempts run out, the last error is raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import tenacity

from bigupload.client.errors import BigUploadError

T = TypeVar("T")
log = logging.getLogger("bigupload.client")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to try again.

    The n-th wait is drawn uniformly from ``[0, min(max_backoff, backoff * 2**(n-1))]`` ("full
    jitter"), unless the server asked for a time with ``Retry-After`` (waited, up to
    ``max_retry_after``). ``sleep`` is how a wait is spent.
    """

    retries: int = 8
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 300.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be 0 or more")


class Retry(Exception):
    """This attempt failed with ``error``; another may succeed.

    ``retry_after`` is the server's wish in seconds; ``immediate`` skips the wait (the failure
    is already fixed, e.g. an expired URL that was just signed again).
    """

    def __init__(
        self, error: BigUploadError, *, retry_after: float | None = None, immediate: bool = False
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.immediate = immediate


def _wait(policy: RetryPolicy) -> Callable[[tenacity.RetryCallState], float]:
    jitter = tenacity.wait_random_exponential(multiplier=policy.backoff, max=policy.max_backoff)

    def wait(state: tenacity.RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        if isinstance(failure, Retry):
            if failure.immediate:
                return 0.0
            if failure.retry_after is not None:
                return max(0.0, min(failure.retry_after, policy.max_retry_after))
        return float(jitter(state))

    return wait


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.info("%s: %s; attempt %d in %.1f s", what, failure, state.attempt_number + 1, delay)

    return before_sleep


def call(policy: RetryPolicy, attempt: Callable[[], T], what: str = "request") -> T:
    """``attempt()``, tried again on :class:`Retry` until it succeeds or the attempts run out."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.retries + 1),
        wait=_wait(policy),
        retry=tenacity.retry_if_exception_type(Retry),
        sleep=policy.sleep,
        before_sleep=_log_retry(what),
        reraise=True,
    )
    try:
        return retrying(attempt)
    except Retry as last:
        raise last.error from last.error.__cause__


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; ``None`` if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

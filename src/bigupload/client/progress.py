"""What a progress callback receives, and the meter that measures the rate."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Progress:
    """``bytes_done`` of ``total`` are sent (resumed parts count at once); ``rate`` is this
    run's recent speed in bytes per second. Reported from the thread that called ``upload`` or
    ``download``, at most every 0.1 s and whenever a part lands; an exception raised by the
    callback (``KeyboardInterrupt`` included) stops the transfer, leaving it resumable."""

    bytes_done: int
    total: int
    rate: float


ProgressCallback = Callable[[Progress], None]


class Meter:
    """A rate over the last ``window`` seconds of samples; bytes counted before the first
    sample (resumed ones) never count towards it."""

    def __init__(self, total: int, window: float = 5.0) -> None:
        self.total = total
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, bytes_done: int, now: float | None = None) -> Progress:
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, bytes_done))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        first_time, first_bytes = samples[0]
        elapsed = now - first_time
        rate = (bytes_done - first_bytes) / elapsed if elapsed > 0 else 0.0
        return Progress(bytes_done=bytes_done, total=self.total, rate=max(rate, 0.0))

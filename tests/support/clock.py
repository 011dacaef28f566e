"""A clock the test moves: ``bigupload.clock``'s source while a test runs."""

from __future__ import annotations

from datetime import datetime, timedelta


class Clock:
    """Time moves only when the test says; it starts at the real time, so signed URLs and the
    stores' own clocks stay plausible."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        """Move on by ``seconds`` and/or ``timedelta`` keywords (``hours=2``)."""
        self.current += timedelta(seconds=seconds, **delta)
        return self.current

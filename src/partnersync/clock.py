"""Injectable time: wall clock for timestamps, monotonic clock and sleep for pacing.

Collaborators that wait or stamp take a :class:`Clock`, so tests can use :class:`FakeClock`
instead of sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio


class Clock(Protocol):
    """What partnersync needs from time."""

    def now(self) -> datetime:
        """Current wall-clock time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the event loop."""
        await anyio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when slept on; records every sleep for assertions.

    >>> import anyio
    >>> clock = FakeClock()
    >>> anyio.run(clock.sleep, 2.5)
    >>> clock.sleeps
    [2.5]
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        """Start time plus everything slept so far."""
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        """Seconds slept so far."""
        return self._elapsed

    async def sleep(self, seconds: float) -> None:
        """Advance time without waiting."""
        self.sleeps.append(seconds)
        self._elapsed += max(0.0, seconds)

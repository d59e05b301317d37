"""Client-side rate limiting: a token bucket that platforms' throttle reports keep honest.

The bucket starts from the platform's published limit (capacity and refill rate), spends tokens
before each request (``acquire(cost)``), and is corrected from what the platform reports after
each response (``observe``) — Shopify's ``extensions.cost.throttleStatus``, a REST call-limit
header, SP-API's ``x-amzn-RateLimit-Limit``. So a sync paces itself to the real bucket instead of
discovering it through 429s.
"""

from __future__ import annotations

import logging
from typing import Protocol

import anyio

from partnersync.clock import Clock, SystemClock

log = logging.getLogger("partnersync.http")
NOTABLE_WAIT = 0.5
"""Waits at least this long (seconds) are said, not only done."""


class RateBudget(Protocol):
    """What a connector spends from before each request: this process's :class:`TokenBucket`,
    or a budget shared through the hub by every process (the sync layer provides it)."""

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` may be spent, then spend it."""

    def observe(
        self,
        available: float,
        capacity: float | None = None,
        refill_rate: float | None = None,
        *,
        refund: float = 0.0,
    ) -> None:
        """Adopt the platform's report of the bucket; ``refund``: how much less the answered
        request was charged than it reserved."""

    def observe_used(self, used: float, capacity: float) -> None:
        """Adopt a ``used/capacity`` report."""

    async def pause(self, seconds: float) -> None:
        """The platform said to come back in ``seconds``: nobody spends before then."""


class TokenBucket:
    """A leaky/token bucket: ``capacity`` tokens, refilled at ``refill_rate`` tokens per second."""

    def __init__(self, capacity: float, refill_rate: float, clock: Clock | None = None) -> None:
        if capacity <= 0 or refill_rate <= 0:
            raise ValueError("capacity and refill_rate must be positive")
        self.capacity = float(capacity)
        self.refill_rate = float(refill_rate)
        self._clock = clock or SystemClock()
        self._available = float(capacity)
        self._stamp = self._clock.monotonic()
        self._lock = anyio.Lock()
        self._paused_until = 0.0
        self.waited = 0.0

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = max(0.0, now - self._stamp)
        self._available = min(self.capacity, self._available + elapsed * self.refill_rate)
        self._stamp = now

    @property
    def available(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._available

    def wait_time(self, cost: float) -> float:
        """Seconds until ``cost`` tokens are available (above capacity: a full bucket)."""
        self._refill()
        needed = min(cost, self.capacity)
        return max(0.0, (needed - self._available) / self.refill_rate)

    async def acquire(self, cost: float = 1.0) -> None:
        """Wait until ``cost`` tokens are available, then spend them."""
        async with self._lock:
            delay = max(self.wait_time(cost), self._paused_until - self._clock.monotonic())
            if delay > 0:
                if delay >= NOTABLE_WAIT:
                    log.info("waiting %.1f s for the rate limit", delay)
                self.waited += delay
                await self._clock.sleep(delay)
                self._refill()
            self._available -= min(cost, self.capacity)

    def observe(
        self,
        available: float,
        capacity: float | None = None,
        refill_rate: float | None = None,
        *,
        refund: float = 0.0,
    ) -> None:
        """Adopt the platform's own report of the bucket (it knows better than our estimate;
        for this one process it already includes any ``refund``)."""
        if capacity and capacity > 0:
            self.capacity = float(capacity)
        if refill_rate and refill_rate > 0:
            self.refill_rate = float(refill_rate)
        self._available = max(0.0, min(self.capacity, float(available)))
        self._stamp = self._clock.monotonic()

    def observe_used(self, used: float, capacity: float) -> None:
        """Adopt a ``used/capacity`` report such as ``X-Shopify-Shop-Api-Call-Limit: 32/40``."""
        self.observe(available=capacity - used, capacity=capacity)

    async def pause(self, seconds: float) -> None:
        """Spend nothing for ``seconds`` (a 429's ``Retry-After``)."""
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)


def own_bucket(key: str, capacity: float, refill_rate: float) -> RateBudget:
    """A budget for this connector alone (the default when no shared budgets are given)."""
    return TokenBucket(capacity, refill_rate)

"""The client-side bucket waits exactly as long as the deficit needs and adopts server reports."""

from __future__ import annotations

import pytest

from partnersync.clock import FakeClock
from partnersync.connectors.http.ratelimit import TokenBucket

pytestmark = pytest.mark.anyio


async def test_acquire_waits_for_the_deficit_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=100, refill_rate=10, clock=clock)
    await bucket.acquire(100)
    assert clock.sleeps == []
    await bucket.acquire(30)
    assert clock.sleeps == [pytest.approx(3.0)]


async def test_observe_adopts_the_platforms_numbers() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=1000, refill_rate=100, clock=clock)
    bucket.observe(available=50, capacity=2000, refill_rate=50)
    assert bucket.capacity == 2000
    await bucket.acquire(150)
    assert clock.sleeps == [pytest.approx(2.0)]  # (150 - 50) / 50


async def test_cost_above_capacity_waits_for_a_full_bucket_not_forever() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=10, refill_rate=5, clock=clock)
    bucket.observe(available=0)
    await bucket.acquire(50)
    assert clock.sleeps == [pytest.approx(2.0)]


def test_observe_used_reads_call_limit_header_numbers() -> None:
    bucket = TokenBucket(capacity=40, refill_rate=2, clock=FakeClock())
    bucket.observe_used(used=32, capacity=40)
    assert bucket.available == pytest.approx(8)


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(capacity=0, refill_rate=1)

"""The shared HTTP client: retry table, Retry-After, typed errors (respx at the HTTP layer)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from partnersync.clock import FakeClock
from partnersync.connectors.http.client import HttpClient, RetryPolicy, parse_retry_after
from partnersync.errors import (
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    NotFoundError,
    PermissionDeniedError,
    PlatformUnavailableError,
    RateLimitedError,
    TransportError,
)

BASE = "https://api.example"

pytestmark = pytest.mark.anyio


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=True) as router:
        yield router


def client(clock: FakeClock, **retry: float) -> HttpClient:
    return HttpClient(BASE, clock=clock, retry=RetryPolicy(**retry))  # type: ignore[arg-type]


async def test_5xx_is_retried_then_succeeds(mock: respx.MockRouter) -> None:
    route = mock.get("/items").mock(
        side_effect=[httpx.Response(502), httpx.Response(503), httpx.Response(200, json={"ok": 1})]
    )
    clock = FakeClock()
    http = client(clock)
    _, body = await http.request_json("GET", "/items")
    assert body == {"ok": 1}
    assert route.call_count == 3
    assert len(clock.sleeps) == 2
    assert all(s >= 0 for s in clock.sleeps)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (422, BadRequestError),
    ],
)
async def test_4xx_fails_at_once_with_its_typed_error(
    mock: respx.MockRouter, status: int, error: type[Exception]
) -> None:
    route = mock.get("/items").mock(return_value=httpx.Response(status, json={"errors": "no"}))
    clock = FakeClock()
    with pytest.raises(error):
        await client(clock).request_json("GET", "/items")
    assert route.call_count == 1
    assert clock.sleeps == []


async def test_429_honours_fractional_retry_after(mock: respx.MockRouter) -> None:
    mock.get("/items").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2.0"}),
            httpx.Response(200, json=[]),
        ]
    )
    clock = FakeClock()
    await client(clock).request_json("GET", "/items")
    assert len(clock.sleeps) == 1
    # Never before the advertised instant; after it by this client's own jitter (50 ms to a
    # tenth of the wait more).
    assert 2.05 <= clock.sleeps[0] <= 2.25


async def test_waiters_after_one_throttle_answer_come_back_spread_out(
    mock: respx.MockRouter,
) -> None:
    """Twenty clients told "Retry-After: 2" do not all retry in the same millisecond."""
    answers = [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200, json=[])]
    mock.get("/items").mock(side_effect=answers * 20)
    waits = []
    for _ in range(20):
        clock = FakeClock()
        await client(clock).request_json("GET", "/items")
        waits.extend(clock.sleeps)
    assert min(waits) >= 2.05
    assert max(waits) - min(waits) >= 0.05
    assert len({round(w, 3) for w in waits}) >= 15


async def test_retry_after_above_the_cap_is_not_slept_on(mock: respx.MockRouter) -> None:
    route = mock.get("/items").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "3600"})
    )
    clock = FakeClock()
    with pytest.raises(RateLimitedError) as caught:
        await client(clock, retry_after_cap=300).request_json("GET", "/items")
    assert caught.value.retry_after == 3600
    assert route.call_count == 1
    assert clock.sleeps == []


async def test_malformed_body_is_a_bad_response(mock: respx.MockRouter) -> None:
    mock.get("/items").mock(return_value=httpx.Response(200, content=b"{not json"))
    with pytest.raises(BadResponseError, match="invalid JSON"):
        await client(FakeClock()).request_json("GET", "/items")


async def test_connection_errors_are_retried_up_to_the_attempt_limit(
    mock: respx.MockRouter,
) -> None:
    route = mock.get("/items").mock(side_effect=httpx.ConnectError("refused"))
    clock = FakeClock()
    with pytest.raises(TransportError):
        await client(clock, max_attempts=3).request_json("GET", "/items")
    assert route.call_count == 3


async def test_non_idempotent_writes_are_not_repeated_after_a_timeout(
    mock: respx.MockRouter,
) -> None:
    route = mock.post("/orders").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransportError):
        await client(FakeClock()).request_json("POST", "/orders", json={}, idempotent=False)
    assert route.call_count == 1


async def test_persistent_5xx_gives_platform_unavailable(mock: respx.MockRouter) -> None:
    mock.get("/items").mock(return_value=httpx.Response(500))
    with pytest.raises(PlatformUnavailableError):
        await client(FakeClock(), max_attempts=2).request_json("GET", "/items")


def test_retry_after_formats() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("2.0") == 2.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=5), usegmt=True), now) == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


async def test_an_answer_over_the_size_limit_is_refused_before_it_fills_memory(
    mock: respx.MockRouter,
) -> None:
    big = b"[" + b'"x",' * 300_000 + b'"x"]'  # ~1.2 MB
    mock.get("/items").mock(return_value=httpx.Response(200, content=big))
    http = HttpClient(BASE, clock=FakeClock(), max_response_bytes=1024 * 1024)
    with pytest.raises(BadResponseError, match="over 1 MiB"):
        await http.request_json("GET", "/items")
    await http.aclose()


async def test_a_gzipped_answer_is_read_once_and_json_nested_too_deep_is_refused(
    mock: respx.MockRouter,
) -> None:
    import gzip

    mock.get("/gz").mock(
        return_value=httpx.Response(
            200,
            content=gzip.compress(b'{"ok": true}'),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    )
    mock.get("/deep").mock(return_value=httpx.Response(200, content=b"[" * 2000 + b"]" * 2000))
    http = HttpClient(BASE, clock=FakeClock())
    _, body = await http.request_json("GET", "/gz")
    assert body == {"ok": True}
    with pytest.raises(BadResponseError, match="invalid JSON"):
        await http.request_json("GET", "/deep")
    await http.aclose()

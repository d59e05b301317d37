"""The one HTTP client every connector uses.

It wraps ``httpx.AsyncClient`` and adds, in this order for each attempt: pacing through the
connector's :class:`~partnersync.connectors.http.ratelimit.TokenBucket`, the request, translation
of httpx errors and HTTP statuses into our error tree (the status table below, STYLE habits 1-2),
an optional per-call ``check`` of the parsed body (for platforms that signal errors in a 200),
and tenacity retries for errors whose action is ``retry`` — exponential backoff with full jitter,
``Retry-After`` honoured up to a cap, bounded by attempts and total delay (habit 4).
"""

from __future__ import annotations

import email.utils
import functools
import logging
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from partnersync import metrics
from partnersync.clock import Clock, SystemClock
from partnersync.connectors.http.ratelimit import RateBudget
from partnersync.errors import (
    Action,
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    ConnectorError,
    NotFoundError,
    PermissionDeniedError,
    PlatformUnavailableError,
    RateLimitedError,
    TransportError,
)

log = logging.getLogger("partnersync.http")

STATUS_ERRORS: Mapping[int, type[ConnectorError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitedError,
}
"""HTTP status → error class; 5xx map to PlatformUnavailableError, other 4xx to BadRequestError."""

BodyCheck = Callable[[httpx.Response, Any], None]


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """One TLS context (the CA bundle, certificates verified) for every client in the process.
    Building one loads the CA bundle, ~25 ms of CPU: one per connector made half the CPU of a
    cycle over 200 shops (bench/many_accounts.py)."""
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry: attempts, total time, backoff shape and the ``Retry-After`` cap."""

    max_attempts: int = 5
    max_total_delay: float = 300.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 300.0


def throttle_jitter(wait: float) -> float:
    """A waiter's own delay on top of an advertised retry instant (50 ms up to a tenth of the
    wait, at most 1 s more), so clients sharing a shop do not all come back in the same
    millisecond."""
    return random.uniform(0.05, 0.05 + min(1.0, 0.1 * max(0.0, wait)))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Parse ``Retry-After`` as seconds (``2``, ``2.0``) or an HTTP date; ``None`` if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_for_status(response: httpx.Response, clock_now: datetime | None = None) -> None:
    """Raise the error the status table names for a non-2xx response."""
    status = response.status_code
    if status < 400:
        return
    snippet = response.text[:300] if response.content else ""
    message = f"HTTP {status} from {response.request.method} {response.request.url.path}"
    if snippet:
        message += f": {snippet}"
    if status == 429:
        raise RateLimitedError(
            message,
            status_code=status,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), clock_now),
        )
    if status >= 500:
        raise PlatformUnavailableError(message, status_code=status)
    raise STATUS_ERRORS.get(status, BadRequestError)(message, status_code=status)


MAX_RESPONSE_BYTES = 32 * 1024 * 1024
"""Largest answer read into memory (a page of 250 large orders is a few MiB). JSON nested
deeper than 1,024 levels is refused by the parser (orjson's limit)."""


class HttpClient:
    """Async HTTP with pacing, retries and typed errors; one per connector instance."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
        limiter: RateBudget | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.max_response_bytes = max_response_bytes
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.clock = clock or SystemClock()
        self.requests_sent = 0
        self.retries = 0
        self._client = httpx.AsyncClient(
            base_url=base_url,
            auth=auth,
            transport=transport,
            verify=shared_tls_context(),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": "partnersync", **(headers or {})},
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._client.aclose()

    def _should_retry(self, exc: BaseException, idempotent: bool) -> bool:
        if not isinstance(exc, ConnectorError) or exc.action is not Action.RETRY:
            return False
        if isinstance(exc, RateLimitedError):
            # Beyond the cap we give up with the typed error, so a scheduler can reschedule
            # instead of a worker sleeping for an hour.
            return exc.retry_after is None or exc.retry_after <= self.retry.retry_after_cap
        # A write that may have reached the server is only repeated when it is idempotent.
        return idempotent

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            wait = min(exc.retry_after, self.retry.retry_after_cap) + throttle_jitter(
                exc.retry_after
            )
        else:
            backoff = wait_random_exponential(
                multiplier=self.retry.backoff_initial, max=self.retry.backoff_max
            )
            wait = float(backoff(state))
        # Said at INFO (and on the progress line): a run that waits is never silent.
        status = getattr(exc, "status_code", None)
        if isinstance(exc, RateLimitedError) and status == 200:
            reason = "a throttle answer"
        elif status:
            reason = f"HTTP {status}"
        else:
            reason = str(exc).split(":", 1)[0] if exc else "an error"
        log.info(
            "retry %d/%d after %s from %s in %.1f s",
            state.attempt_number,
            self.retry.max_attempts - 1,
            reason,
            self.host,
            wait,
        )
        return wait

    async def _bounded(self, request: httpx.Request) -> httpx.Response:
        """Send and read the answer, refusing one larger than ``max_response_bytes`` (by its
        Content-Length, or as it streams in) before it fills memory."""
        response = await self._client.send(request, stream=True)
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_response_bytes:
                raise self._too_large(request)
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_response_bytes:
                    raise self._too_large(request)
        finally:
            await response.aclose()
        # The body is decoded already: the new response must not decode it again.
        kept = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=kept,
            content=bytes(body),
            request=request,
            extensions=response.extensions,
        )

    def _too_large(self, request: httpx.Request) -> BadResponseError:
        return BadResponseError(
            f"answer to {request.method} {request.url.path} is over "
            f"{self.max_response_bytes // (1024 * 1024)} MiB: refused"
        )

    @property
    def host(self) -> str:
        """The host this client talks to (named in messages)."""
        return self._client.base_url.host or str(self._client.base_url)

    async def request_json(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        cost: float = 1.0,
        check: BodyCheck | None = None,
        idempotent: bool = True,
    ) -> tuple[httpx.Response, Any]:
        """Send a request (a JSON or a form body) and parse its JSON answer, retrying per
        policy; returns (response, body)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.max_attempts)
            | stop_after_delay(self.retry.max_total_delay),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: self._should_retry(exc, idempotent)),
            sleep=self.clock.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.retries += 1
                return await self._attempt(method, url, json, params, form, cost, check)
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _attempt(
        self,
        method: str,
        url: str,
        json_body: Any,
        params: Mapping[str, Any] | None,
        form: Mapping[str, str] | None,
        cost: float,
        check: BodyCheck | None,
    ) -> tuple[httpx.Response, Any]:
        if self.limiter is not None:
            await self.limiter.acquire(cost)
        content: bytes | None = None
        headers: dict[str, str] | None = None
        if json_body is not None:
            content, headers = orjson.dumps(json_body), {"Content-Type": "application/json"}
        elif form is not None:
            content = urlencode(form).encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
        self.requests_sent += 1
        try:
            response = await self._bounded(
                self._client.build_request(
                    method, url, content=content, params=params, headers=headers
                )
            )
        except httpx.TimeoutException as exc:
            metrics.ERRORS.labels(self.host, "timeout").inc()
            raise TransportError(f"timed out: {method} {self.host}{url}") from exc
        except httpx.TransportError as exc:
            metrics.ERRORS.labels(self.host, "connection").inc()
            raise TransportError(
                f"connection failed: {method} {self.host}{url}: {type(exc).__name__}"
            ) from exc
        metrics.HTTP_REQUESTS.labels(self.host, str(response.status_code)).inc()
        try:
            body: Any = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError as exc:
            if response.status_code >= 400:
                error_for_status(response, self.clock.now())
            raise BadResponseError(
                f"invalid JSON from {method} {url} (HTTP {response.status_code})",
                status_code=response.status_code,
            ) from exc
        try:
            if check is not None:
                check(response, body)
            error_for_status(response, self.clock.now())
        except RateLimitedError as exc:
            metrics.THROTTLED.labels(self.host).inc()
            if self.limiter is not None and exc.retry_after:
                # Everyone spending this budget (other jobs, other processes) waits too.
                await self.limiter.pause(min(exc.retry_after, self.retry.retry_after_cap))
            raise
        return response, body

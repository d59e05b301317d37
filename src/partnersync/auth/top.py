"""Taobao/Tmall Open Platform (TOP) request signing, as an ``httpx.Auth`` flow.

From TOP's "API调用方法详解" (notes and sources in ``shared/platforms/taobao.md``): every call
carries the public parameters ``method``, ``app_key``, ``session`` (the seller's session key),
``timestamp`` (``yyyy-MM-dd HH:mm:ss`` in GMT+8, accepted within ±10 minutes), ``v=2.0``,
``format``, ``sign_method`` and ``sign``. The signature covers every parameter but ``sign``
(and file bytes): sorted by name, concatenated as ``name+value`` with no separators, UTF-8;
``md5`` = ``MD5(secret + s + secret)``, ``hmac`` = ``HMAC-MD5(secret, s)``, ``hmac-sha256`` =
``HMAC-SHA256(secret, s)``; upper-case hex.

The flow signs the parameters of a form-encoded POST body (or the query string of a GET), so
the connector builds requests with its business parameters only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson

from partnersync.auth.oauth2 import TokenKeeper

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
SIGN_METHODS = ("md5", "hmac", "hmac-sha256")


def top_sign(params: Mapping[str, str], secret: str, method: str = "hmac-sha256") -> str:
    """The ``sign`` of a parameter set (``sign`` itself excluded)."""
    text = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign")
    if method == "md5":
        return hashlib.md5(f"{secret}{text}{secret}".encode()).hexdigest().upper()
    if method == "hmac":
        return hmac.new(secret.encode(), text.encode(), hashlib.md5).hexdigest().upper()
    if method == "hmac-sha256":
        return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    raise ValueError(f"sign_method must be one of {SIGN_METHODS}, not {method!r}")


def top_timestamp(moment: datetime) -> str:
    """A time as TOP writes it: GMT+8, ``yyyy-MM-dd HH:mm:ss``."""
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class TopSignAuth(httpx.Auth):
    """Adds TOP's public parameters and ``sign`` to a form POST (or a GET's query)."""

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        session: str | None = None,
        *,
        sign_method: str = "hmac-sha256",
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if sign_method not in SIGN_METHODS:
            raise ValueError(f"sign_method must be one of {SIGN_METHODS}")
        self._app_key = app_key
        self._secret = app_secret
        self._session = session
        self._sign_method = sign_method
        self._now = now or (lambda: datetime.now(UTC))

    @property
    def app_key(self) -> str:
        """The app's key (a public parameter of every call, not a secret): TOP counts its
        limits per app."""
        return self._app_key

    def __repr__(self) -> str:
        return f"TopSignAuth(app_key={self._app_key!r}, secret=<redacted>, session=<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Sign and send."""
        self._sign(request, self._session)
        yield request

    def _sign(self, request: httpx.Request, session: str | None) -> None:
        """Add the public parameters (``session`` among them) and the signature."""
        is_form = request.method == "POST"
        raw = request.read().decode() if is_form else request.url.query.decode()
        params = dict(parse_qsl(raw, keep_blank_values=True))
        params.update(
            app_key=self._app_key,
            timestamp=top_timestamp(self._now()),
            v="2.0",
            format="json",
            sign_method=self._sign_method,
        )
        params.pop("sign", None)  # signed again after a refreshed session
        if session:
            params["session"] = session
        params["sign"] = top_sign(params, self._secret, self._sign_method)
        if is_form:
            body = urlencode(params).encode()
            request.headers["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8"
            request.headers["Content-Length"] = str(len(body))
            request.stream = httpx.ByteStream(body)
            request._content = body
        else:
            request.url = request.url.copy_with(params=params)


INVALID_SESSION = 27
"""TOP's error code for a session key that expired or was revoked (answered in a 200 body)."""


class RefreshingTopSignAuth(TopSignAuth):
    """TOP signing with the session key of an OAuth-connected seller: taken from the token
    keeper (refreshed ahead of expiry), and on TOP's "Invalid session" (code 27) a fresh one
    and the call signed and sent once more."""

    requires_response_body = True

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        keeper: TokenKeeper,
        *,
        sign_method: str = "hmac-sha256",
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(app_key, app_secret, None, sign_method=sign_method, now=now)
        self.keeper = keeper

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Not supported: connectors are async."""
        raise RuntimeError("RefreshingTopSignAuth is for async clients")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Session key in, signed; on "Invalid session" a fresh key and one more try."""
        session = await self.keeper.access_token()
        await request.aread()
        self._sign(request, session)
        response = yield request
        await response.aread()  # an overridden async flow reads what it needs itself
        if _error_code(response) == INVALID_SESSION:
            self._sign(request, await self.keeper.after_rejection(session))
            yield request


def _error_code(response: httpx.Response) -> int | None:
    """The ``error_response.code`` of a TOP answer, if it is one."""
    if response.status_code != 200 or b"error_response" not in response.content[:64]:
        return None
    try:
        code = orjson.loads(response.content)["error_response"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return int(code) if isinstance(code, int | str) and str(code).isdigit() else None

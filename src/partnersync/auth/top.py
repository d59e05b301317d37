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
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

import httpx

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
        if self._session:
            params["session"] = self._session
        params["sign"] = top_sign(params, self._secret, self._sign_method)
        if is_form:
            body = urlencode(params).encode()
            request.headers["Content-Type"] = "application/x-www-form-urlencoded;charset=utf-8"
            request.headers["Content-Length"] = str(len(body))
            request.stream = httpx.ByteStream(body)
            request._content = body
        else:
            request.url = request.url.copy_with(params=params)
        yield request

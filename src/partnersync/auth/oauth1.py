"""OAuth 1.0a "one-legged" request signing, as WooCommerce takes it over plain HTTP.

From WooCommerce's REST API docs ("Authentication over HTTP"; ``shared/platforms/woocommerce.md``):
every request carries ``oauth_consumer_key``, ``oauth_timestamp``, ``oauth_nonce``,
``oauth_signature_method`` (HMAC-SHA1 or HMAC-SHA256) and ``oauth_signature``; there is no token
and ``oauth_version`` is left out. The signature is ``base64(HMAC(consumer_secret + "&",
base))`` with ``base = METHOD & pct(url) & pct(params)``, where ``params`` are all query
parameters, percent-encoded (RFC 3986), sorted and joined as ``k=v&…``; the body is not signed.
The server refuses a timestamp more than 15 minutes off and a reused nonce.

Hand-written because it is a dozen lines and the common OAuth 1 clients add ``oauth_version``
and a token, which this flow does not have.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable, Generator, Mapping
from urllib.parse import quote

import httpx

DIGESTS: Mapping[str, Callable[..., object]] = {
    "HMAC-SHA1": hashlib.sha1,
    "HMAC-SHA256": hashlib.sha256,
}


def percent(value: str) -> str:
    """RFC 3986 percent-encoding: everything but unreserved characters."""
    return quote(value, safe="-._~")


def signature_base(method: str, url: str, params: Mapping[str, str]) -> str:
    """``METHOD&pct(url)&pct(sorted encoded params)``."""
    pairs = sorted((percent(k), percent(v)) for k, v in params.items())
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join([method.upper(), percent(url), percent(normalized)])


def sign(base: str, consumer_secret: str, method: str = "HMAC-SHA256") -> str:
    """The base64 HMAC of a signature base string, keyed by ``consumer_secret&``."""
    digest = DIGESTS[method]
    key = f"{consumer_secret}&".encode()
    return base64.b64encode(hmac.new(key, base.encode(), digest).digest()).decode()  # type: ignore[arg-type]


class OAuth1OneLeggedAuth(httpx.Auth):
    """Signs each request with the consumer key pair (query-string parameters)."""

    def __init__(
        self,
        consumer_key: str,
        consumer_secret: str,
        *,
        method: str = "HMAC-SHA256",
        now: Callable[[], float] | None = None,
    ) -> None:
        if method not in DIGESTS:
            raise ValueError(f"signature method must be one of {sorted(DIGESTS)}")
        self._key = consumer_key
        self._secret = consumer_secret
        self._method = method
        self._now = now

    def __repr__(self) -> str:
        return f"OAuth1OneLeggedAuth(key={self._key[:6]}…, secret=<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the ``oauth_*`` parameters and the signature to the query string, then send."""
        import time

        stamp = int(self._now() if self._now else time.time())
        params = dict(request.url.params.multi_items())
        params.update(
            oauth_consumer_key=self._key,
            oauth_timestamp=str(stamp),
            oauth_nonce=secrets.token_hex(16),
            oauth_signature_method=self._method,
        )
        plain = str(request.url.copy_with(query=None))
        params["oauth_signature"] = sign(
            signature_base(request.method, plain, params), self._secret, self._method
        )
        request.url = request.url.copy_with(params=params)
        yield request


class ConsumerKeyAuth(httpx.Auth):
    """WooCommerce's consumer key pair, as its docs ask for each transport: HTTP Basic over
    HTTPS, OAuth 1.0a one-legged signatures over plain HTTP (where Basic is refused)."""

    def __init__(self, consumer_key: str, consumer_secret: str) -> None:
        self._basic = httpx.BasicAuth(consumer_key, consumer_secret)
        self._signed = OAuth1OneLeggedAuth(consumer_key, consumer_secret)

    def __repr__(self) -> str:
        return "ConsumerKeyAuth(<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Basic or signed, by the request's scheme."""
        chosen = self._basic if request.url.scheme == "https" else self._signed
        yield from chosen.auth_flow(request)

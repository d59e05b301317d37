"""Shopify's OAuth, as the sandbox shop serves it (written from Shopify's documentation, never
from our connector): the authorization-code grant with an HMAC-signed callback, and expiring
offline access tokens with refresh-token rotation.

* ``GET /admin/oauth/authorize?client_id&scope&redirect_uri&state`` — the merchant approves (the
  sandbox approves at once) and is sent to ``redirect_uri`` with ``code``, ``hmac``, ``host``,
  ``shop``, ``state`` and ``timestamp``; ``hmac`` is the hex HMAC-SHA256, keyed with the app's
  client secret, of the other parameters sorted by name and joined as ``k=v&k=v``.
* ``POST /admin/oauth/access_token`` (JSON or form) with ``client_id``, ``client_secret`` and
  ``code`` (``expiring=1`` for an expiring offline token) → ``access_token``, ``scope``, and for
  expiring tokens ``expires_in`` (3,600 s), ``refresh_token``, ``refresh_token_expires_in``;
  with ``grant_type=refresh_token`` and ``refresh_token`` → a new pair. Since 2026-08-28 the
  refresh token used stays valid until the replacement access token is first used, so a client
  that lost the answer can refresh again with the same one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from partnersync.sandbox.framework import DROP, Reply, json_reply

ACCESS_TOKEN_TTL = 3600
REFRESH_TOKEN_TTL = 90 * 86400


def callback_hmac(params: dict[str, str], secret: str) -> str:
    """Shopify's callback signature of ``params`` (without ``hmac``)."""
    message = "&".join(f"{key}={params[key]}" for key in sorted(params) if key != "hmac")
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass
class _Grant:
    """One rotation of an expiring token pair."""

    access_token: str
    refresh_token: str
    expires_at: float
    previous_refresh: str | None = None
    used: bool = False


@dataclass
class ShopifyOAuthServer:
    """The app installs of one sandbox shop."""

    shop_domain: str
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"
    scopes: str = "read_products,write_products,read_inventory,write_inventory,read_orders"
    access_ttl: float = ACCESS_TOKEN_TTL
    refreshes: int = 0
    exchanges: int = 0
    drop_refresh_answers: int = 0
    _codes: dict[str, str] = field(default_factory=dict)
    _grants: dict[str, _Grant] = field(default_factory=dict)  # by access token
    _static: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- what the shop's API asks ------------------------------------------------------------
    def accepts(self, access_token: str | None) -> bool:
        """True for a live access token (marking an expiring one as used)."""
        if not access_token:
            return False
        with self._lock:
            if access_token in self._static:
                return True
            grant = self._grants.get(access_token)
            if grant is None or grant.expires_at < time.time():
                return False
            if not grant.used:
                grant.used = True
                grant.previous_refresh = None  # the replacement is in use: the old one dies
            return True

    def expire_all(self) -> None:
        """Every expiring access token ends now (their refresh tokens stay good)."""
        with self._lock:
            for grant in self._grants.values():
                grant.expires_at = 0.0

    # -- the endpoints --------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Serve ``/admin/oauth/authorize`` and ``/admin/oauth/access_token``."""
        route, _, query = path.partition("?")
        if route == "/admin/oauth/authorize" and method == "GET":
            return self._authorize(dict(parse_qsl(query)))
        if route == "/admin/oauth/access_token" and method == "POST":
            content_type = headers.get("content-type", "")
            try:
                if "json" in content_type:
                    form = {k: str(v) for k, v in orjson.loads(body or b"{}").items()}
                else:
                    form = dict(parse_qsl(body.decode()))
            except (ValueError, AttributeError):
                return json_reply(400, {"error": "invalid_request"})
            return self._token(form)
        return json_reply(404, {"errors": "Not Found"})

    def _authorize(self, params: dict[str, str]) -> Reply:
        if params.get("client_id") != self.client_id:
            return json_reply(400, {"errors": "Invalid client_id"})
        redirect = params.get("redirect_uri", "")
        if urlsplit(redirect).scheme not in ("http", "https"):
            return json_reply(400, {"errors": "Invalid redirect_uri"})
        code = secrets.token_hex(16)
        with self._lock:
            self._codes[code] = params.get("scope", self.scopes)
        answer = {
            "code": code,
            "host": "c2FuZGJveA",
            "shop": self.shop_domain,
            "state": params.get("state", ""),
            "timestamp": str(int(time.time())),
        }
        answer["hmac"] = callback_hmac(answer, self.client_secret)
        separator = "&" if "?" in redirect else "?"
        return 302, {"Location": f"{redirect}{separator}{urlencode(answer)}"}, b""

    def _token(self, form: dict[str, str]) -> Reply:
        if form.get("client_id") != self.client_id or not hmac.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            return json_reply(401, {"error": "invalid_client"})
        if form.get("grant_type") == "refresh_token":
            return self._refresh(form.get("refresh_token", ""))
        with self._lock:
            scope = self._codes.pop(form.get("code", ""), None)
            if scope is None:
                return json_reply(400, {"error": "invalid_grant"})
            self.exchanges += 1
            if form.get("expiring") not in ("1", "true", "True"):
                token = "shpat_" + secrets.token_hex(16)
                self._static.add(token)
                return json_reply(200, {"access_token": token, "scope": scope})
            return json_reply(200, self._new_grant(scope))

    def _refresh(self, refresh_token: str) -> Reply:
        with self._lock:
            current = next(
                (
                    g
                    for g in self._grants.values()
                    if g.refresh_token == refresh_token
                    or (g.previous_refresh == refresh_token and not g.used)
                ),
                None,
            )
            if current is None:
                return json_reply(400, {"error": "invalid_grant"})
            # With the previous refresh token (the client lost our last answer, and the
            # replacement was never used) the unused pair is replaced like the current one.
            self.refreshes += 1
            del self._grants[current.access_token]
            answer = self._new_grant(self.scopes, previous=refresh_token)
            dropped = self.drop_refresh_answers > 0
            if dropped:
                self.drop_refresh_answers -= 1
        return DROP if dropped else json_reply(200, answer)

    def _new_grant(self, scope: str, previous: str | None = None) -> dict[str, Any]:
        grant = _Grant(
            access_token="shpat_" + secrets.token_hex(16),
            refresh_token="shprt_" + secrets.token_hex(16),
            expires_at=time.time() + self.access_ttl,
            previous_refresh=previous,
        )
        self._grants[grant.access_token] = grant
        return {
            "access_token": grant.access_token,
            "scope": scope,
            "expires_in": int(self.access_ttl),
            "refresh_token": grant.refresh_token,
            "refresh_token_expires_in": REFRESH_TOKEN_TTL,
        }

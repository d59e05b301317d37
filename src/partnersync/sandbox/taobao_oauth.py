"""Taobao/Tmall Open Platform's OAuth 2 server-side flow, as the sandbox gateway serves it
(written from the platform's "用户授权介绍" documentation, never from our connector):

* ``GET /authorize?response_type=code&client_id=APPKEY&redirect_uri=…&state=…&view=web`` — the
  seller signs in and approves (the sandbox approves at once, or refuses when ``deny`` is set:
  then ``error=access_denied&error_description=authorize%20reject``) and is sent to
  ``redirect_uri`` with ``code`` and ``state``. A code lives 30 minutes and is used once.
* ``POST /token`` (form) with ``grant_type=authorization_code``, ``code``, ``client_id``,
  ``client_secret``, ``redirect_uri`` → ``access_token`` (the session key TOP calls carry),
  ``token_type``, ``expires_in``, ``refresh_token``, ``re_expires_in``, ``r1_expires_in`` …
  ``w2_expires_in``, ``taobao_user_id``, ``taobao_user_nick``; ``grant_type=refresh_token`` with
  ``refresh_token`` → a new session key (the refresh token used is spent). Errors are OAuth's
  JSON ``{"error", "error_description"}`` with HTTP 400/401.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from partnersync.sandbox.framework import Reply, json_reply

CODE_TTL = 30 * 60
SESSION_TTL = 24 * 3600
REFRESH_TTL = 30 * 86400


@dataclass
class _Session:
    refresh_token: str
    expires_at: float


@dataclass
class TaobaoOAuthServer:
    """The seller authorisations of one app at the sandbox gateway."""

    app_key: str
    app_secret: str
    seller_nick: str = "sandbox_seller"
    seller_id: str = "706388888"
    session_ttl: float = SESSION_TTL
    deny: bool = False
    exchanges: int = 0
    refreshes: int = 0
    _codes: dict[str, tuple[str, float]] = field(default_factory=dict)  # code → redirect, expiry
    _sessions: dict[str, _Session] = field(default_factory=dict)  # by session key
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accepts(self, session: str | None) -> bool:
        """True for a live session key this server issued."""
        with self._lock:
            issued = self._sessions.get(session or "")
            return issued is not None and issued.expires_at > time.time()

    def expire_all(self) -> None:
        """Every session key issued ends now (their refresh tokens stay good)."""
        with self._lock:
            for issued in self._sessions.values():
                issued.expires_at = 0.0

    def handle(self, method: str, route: str, query: str, body: bytes) -> Reply | None:
        """``/authorize`` and ``/token``; None for any other path."""
        if route == "/authorize" and method == "GET":
            return self._authorize(dict(parse_qsl(query)))
        if route == "/token" and method == "POST":
            return self._token(dict(parse_qsl(body.decode(errors="replace"))))
        return None

    def _authorize(self, params: dict[str, str]) -> Reply:
        if params.get("response_type") != "code":
            return json_reply(400, {"error": "unsupported_response_type"})
        if params.get("client_id") != self.app_key:
            return json_reply(400, {"error": "invalid_client"})
        redirect = params.get("redirect_uri", "")
        if urlsplit(redirect).scheme not in ("http", "https"):
            return json_reply(
                400, {"error": "invalid_request", "error_description": "redirect_uri"}
            )
        answer = {"state": params.get("state", "")}
        if self.deny:
            answer = {"error": "access_denied", "error_description": "authorize reject", **answer}
        else:
            code = secrets.token_hex(16)
            with self._lock:
                self._codes[code] = (redirect, time.time() + CODE_TTL)
            answer = {"code": code, **answer}
        separator = "&" if "?" in redirect else "?"
        return 302, {"Location": f"{redirect}{separator}{urlencode(answer)}"}, b""

    def _token(self, form: dict[str, str]) -> Reply:
        if form.get("client_id") != self.app_key or not hmac.compare_digest(
            form.get("client_secret", ""), self.app_secret
        ):
            return json_reply(401, {"error": "invalid_client"})
        grant = form.get("grant_type")
        with self._lock:
            if grant == "authorization_code":
                redirect, expires = self._codes.pop(form.get("code", ""), ("", 0.0))
                if expires < time.time() or form.get("redirect_uri", redirect) != redirect:
                    return json_reply(400, {"error": "invalid_grant"})
                self.exchanges += 1
                return json_reply(200, self._issue())
            if grant == "refresh_token":
                spent = form.get("refresh_token", "")
                current = next(
                    (k for k, s in self._sessions.items() if s.refresh_token == spent), None
                )
                if current is None:
                    return json_reply(400, {"error": "invalid_grant"})
                del self._sessions[current]
                self.refreshes += 1
                return json_reply(200, self._issue())
        return json_reply(400, {"error": "unsupported_grant_type"})

    def _issue(self) -> dict[str, object]:
        session = "6" + secrets.token_hex(20)
        refresh = "6" + secrets.token_hex(20)
        self._sessions[session] = _Session(refresh, time.time() + self.session_ttl)
        ttl = int(self.session_ttl)
        return {
            "access_token": session,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
            "re_expires_in": REFRESH_TTL,
            "r1_expires_in": ttl,
            "r2_expires_in": ttl,
            "w1_expires_in": ttl,
            "w2_expires_in": ttl,
            "taobao_user_id": self.seller_id,
            "taobao_user_nick": self.seller_nick,
        }

"""OAuth 2 with authlib's httpx client (no hand-written OAuth): Shopify's authorization-code
grant with its HMAC-signed callback, expiring offline tokens, and refreshing them once however
many tasks and processes need a fresh one.

:class:`TokenKeeper` is the single flight: in a process one lock per account; across processes a
lock the caller provides (the hub's lease on ``token:ACCOUNT``); after taking each lock it
re-reads the stored pair — a sibling may have rotated it — and refreshes only if that one is
stale too. The rotated pair is saved before it is used. After ``invalid_grant`` the store is read
again (a sibling's rotation beats ours); only if nothing newer is there does the account need a
human (``accounts connect`` again).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import warnings
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from partnersync.errors import AuthenticationError, ConnectorError, TransportError

log = logging.getLogger("partnersync.auth")

REFRESH_AHEAD = 300.0
"""Refresh this many seconds before the access token expires."""
CALLBACK_MAX_AGE = 24 * 3600


@dataclass(frozen=True)
class TokenSet:
    """An access token, and for expiring tokens the refresh token and when it expires."""

    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    scope: str | None = None

    def fresh(self, now: float, ahead: float = REFRESH_AHEAD) -> bool:
        """Usable for at least ``ahead`` more seconds."""
        return self.expires_at is None or self.expires_at - ahead > now

    def as_secrets(self, token_field: str = "access_token") -> dict[str, str]:
        """The pair as account secret fields (encrypted at rest by the vault); the access token
        under ``token_field`` (the name the platform's auth reads it by)."""
        fields = {token_field: self.access_token}
        if self.refresh_token:
            fields["refresh_token"] = self.refresh_token
        if self.expires_at is not None:
            fields["expires_at"] = repr(self.expires_at)
        if self.scope:
            fields["scope"] = self.scope
        return fields

    @classmethod
    def from_secrets(cls, fields: Mapping[str, str], token_field: str = "access_token") -> TokenSet:
        """The pair stored with an account."""
        expires = fields.get("expires_at")
        return cls(
            access_token=fields[token_field],
            refresh_token=fields.get("refresh_token"),
            expires_at=float(expires) if expires else None,
            scope=fields.get("scope"),
        )

    @classmethod
    def from_response(cls, token: Mapping[str, Any], now: float) -> TokenSet:
        """A token endpoint's answer (``expires_in`` made absolute)."""
        expires_in = token.get("expires_in")
        return cls(
            access_token=str(token["access_token"]),
            refresh_token=token.get("refresh_token"),
            expires_at=now + float(expires_in) if expires_in else None,
            scope=token.get("scope"),
        )


def shopify_callback_hmac(params: Mapping[str, str], client_secret: str) -> str:
    """Shopify's HMAC of an OAuth callback: hex HMAC-SHA256 of the other parameters, sorted by
    name, joined as ``k=v&k=v``, keyed with the app's client secret."""
    message = "&".join(f"{key}={params[key]}" for key in sorted(params) if key != "hmac")
    return hmac.new(client_secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class AuthorizationCodeFlow:
    """OAuth 2's authorization-code grant for one account and one app, through authlib: the
    authorize URL with a fresh ``state``, the code exchanged and tokens refreshed at the
    platform's token endpoint (client credentials in the form body)."""

    authorize_path = "/oauth/authorize"
    token_path = "/oauth/token"
    extra_authorize: Mapping[str, str] = {}
    extra_token: Mapping[str, str] = {}
    takes_oauth_url = True
    """Whether the endpoints may live on another host than the account's (``oauth_url``)."""

    def __init__(
        self,
        shop_url: str,
        client_id: str,
        client_secret: str,
        *,
        scopes: str,
        redirect_uri: str = "",
        oauth_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.shop_url = shop_url.rstrip("/")
        self.oauth_url = ((self.takes_oauth_url and oauth_url) or self.shop_url).rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.scopes = scopes
        self.redirect_uri = redirect_uri
        self.transport = transport

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.oauth_url!r}, client_id={self.client_id!r}, "
            "secret=<redacted>)"
        )

    @property
    def token_endpoint(self) -> str:
        """Where codes and refresh tokens are exchanged."""
        return f"{self.oauth_url}{self.token_path}"

    def _client(self) -> Any:
        # Imported here: authlib costs start-up time that commands without OAuth never need.
        with warnings.catch_warnings():
            # authlib 1.9 announces that its httpx integration will move (it works as it is);
            # its module puts an "always" filter first, so ours goes in after importing it.
            from authlib.deprecate import AuthlibDeprecationWarning

            warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
            from authlib.integrations.httpx_client import AsyncOAuth2Client

            return AsyncOAuth2Client(
                client_id=self.client_id,
                client_secret=self._secret,
                token_endpoint_auth_method="client_secret_post",
                scope=self.scopes,
                redirect_uri=self.redirect_uri or None,
                transport=self.transport,
                timeout=30.0,
            )

    def authorization_url(self) -> tuple[str, str]:
        """Where to send the merchant, and the ``state`` to expect back."""
        state = secrets.token_urlsafe(24)
        query = urlencode(
            {
                **self.extra_authorize,
                "client_id": self.client_id,
                **({"scope": self.scopes} if self.scopes else {}),
                "redirect_uri": self.redirect_uri,
                "state": state,
            }
        )
        return f"{self.oauth_url}{self.authorize_path}?{query}", state

    def verify_callback(self, params: Mapping[str, str], state: str, now: float) -> str:
        """The ``code`` of a callback carrying our ``state`` (AuthenticationError otherwise)."""
        if params.get("error"):
            raise AuthenticationError(
                f"the platform did not authorise the connection: {params['error']}"
            )
        if not hmac.compare_digest(params.get("state", ""), state):
            raise AuthenticationError("the OAuth callback's state is not the one we sent")
        code = params.get("code")
        if not code:
            raise AuthenticationError("the OAuth callback carries no code")
        return code

    async def exchange(self, code: str, now: float) -> TokenSet:
        """The code for a token pair."""
        async with self._client() as client:
            token = await _token_call(
                client.fetch_token(self.token_endpoint, code=code, **self.extra_token)
            )
        return TokenSet.from_response(token, now)

    async def refresh(self, refresh_token: str, now: float) -> TokenSet:
        """A new pair for ``refresh_token``."""
        async with self._client() as client:
            token = await _token_call(
                client.refresh_token(self.token_endpoint, refresh_token=refresh_token)
            )
        return TokenSet.from_response(token, now)


class ShopifyOAuth(AuthorizationCodeFlow):
    """Shopify's authorization-code grant for one shop and one app: the endpoints live on the
    shop itself, the callback is HMAC-signed and time-stamped, and ``expiring=1`` asks for an
    expiring offline token whose refresh token rotates."""

    authorize_path = "/admin/oauth/authorize"
    token_path = "/admin/oauth/access_token"
    extra_token: Mapping[str, str] = {"expiring": "1"}
    takes_oauth_url = False  # the endpoints are the shop's own

    def verify_callback(self, params: Mapping[str, str], state: str, now: float) -> str:
        """The ``code`` of a genuine callback; AuthenticationError for a forged, replayed or
        stale one (HMAC compared in constant time)."""
        expected = shopify_callback_hmac(params, self._secret)
        if not hmac.compare_digest(expected, params.get("hmac", "")):
            raise AuthenticationError("the OAuth callback's hmac does not match: not from Shopify")
        code = super().verify_callback(params, state, now)
        try:
            age = now - float(params.get("timestamp", "0"))
        except ValueError:
            age = CALLBACK_MAX_AGE + 1
        if age > CALLBACK_MAX_AGE:
            raise AuthenticationError("the OAuth callback is more than a day old")
        return code


class TaobaoOAuth(AuthorizationCodeFlow):
    """Taobao/Tmall Open Platform's server-side flow for a seller's session key: the seller
    approves at ``https://oauth.taobao.com/authorize`` (``response_type=code``, ``view=web``)
    and comes back with ``code`` and ``state`` (or ``error=access_denied``); the code is
    exchanged at ``/token`` (``grant_type=authorization_code`` with the app key and secret as
    client id and secret) for ``access_token`` — the session key every TOP call carries —
    ``expires_in``, ``refresh_token``, ``re_expires_in`` and ``taobao_user_nick``; refreshed
    with ``grant_type=refresh_token``. Sources: the open platform's "用户授权介绍" pages (the
    fliggy mirror, ``open.fliggy.com/docs/doc.htm?articleId=102687``)."""

    authorize_path = "/authorize"
    token_path = "/token"
    extra_authorize: Mapping[str, str] = {"response_type": "code", "view": "web"}
    extra_token: Mapping[str, str] = {"view": "web"}


TAOBAO_OAUTH_URL = "https://oauth.taobao.com"


class InvalidGrantError(AuthenticationError):
    """The token endpoint refused the grant (code or refresh token used up or revoked)."""


async def _token_call(call: Awaitable[Any]) -> Mapping[str, Any]:
    """Run an authlib token call; its errors become ours."""
    from authlib.integrations.base_client.errors import OAuthError

    try:
        token: Mapping[str, Any] = await call
    except OAuthError as exc:
        if exc.error == "invalid_grant":
            raise InvalidGrantError(f"token endpoint: invalid_grant ({exc.description})") from exc
        raise AuthenticationError(f"token endpoint: {exc.error}: {exc.description}") from exc
    except httpx.TransportError as exc:
        raise TransportError(f"token endpoint: {type(exc).__name__}") from exc
    except httpx.HTTPStatusError as exc:
        raise ConnectorError(
            f"token endpoint answered HTTP {exc.response.status_code}",
            status_code=exc.response.status_code,
        ) from exc
    if "access_token" not in token:
        raise AuthenticationError("token endpoint answered without an access_token")
    return token


CrossProcessLock = Callable[[], AbstractAsyncContextManager[None]]


class TokenKeeper:
    """The current token pair of one account, refreshed once per expiry (see module doc)."""

    def __init__(
        self,
        account: str,
        *,
        load: Callable[[], TokenSet],
        save: Callable[[TokenSet], None],
        refresh: Callable[[str, float], Awaitable[TokenSet]],
        lock: CrossProcessLock,
        clock: Callable[[], float] = time.time,
        ahead: float = REFRESH_AHEAD,
    ) -> None:
        self.account = account
        self._load = load
        self._save = save
        self._refresh = refresh
        self._lock = lock
        self._clock = clock
        self._ahead = ahead
        self._local = anyio.Lock()
        self._current: TokenSet | None = None

    async def access_token(self) -> str:
        """A token good for at least the refresh margin."""
        current = self._current
        if current is not None and current.fresh(self._clock(), self._ahead):
            return current.access_token
        return (await self._fresh(stale=current.access_token if current else None)).access_token

    async def after_rejection(self, rejected: str) -> str:
        """The platform refused ``rejected``: a token other than it (refreshing if needed)."""
        return (await self._fresh(stale=rejected, force=True)).access_token

    async def _fresh(self, *, stale: str | None, force: bool = False) -> TokenSet:
        async with self._local:
            stored = await anyio.to_thread.run_sync(self._load)
            if self._usable(stored, stale, force):
                self._current = stored
                return stored
            async with self._lock():
                stored = await anyio.to_thread.run_sync(self._load)  # a sibling may have rotated
                if self._usable(stored, stale, force):
                    self._current = stored
                    return stored
                fresh = await self._rotate(stored)
            self._current = fresh
            return fresh

    def _usable(self, token: TokenSet, stale: str | None, force: bool) -> bool:
        if force and token.access_token == stale:
            return False
        return token.fresh(self._clock(), self._ahead) or (force and token.access_token != stale)

    async def _rotate(self, stored: TokenSet) -> TokenSet:
        if not stored.refresh_token:
            raise AuthenticationError(
                f"{self.account}: the access token was refused and there is no refresh token: "
                f"connect the account again (partnersync accounts connect)"
            )
        try:
            fresh = await self._refresh(stored.refresh_token, self._clock())
        except InvalidGrantError:
            again = await anyio.to_thread.run_sync(self._load)
            if again.refresh_token != stored.refresh_token:
                return again  # a sibling rotated it between our reads
            raise AuthenticationError(
                f"{self.account}: the refresh token was refused (revoked or expired): connect "
                "the account again (partnersync accounts connect)"
            ) from None
        # Stored before first use: a crash now loses nothing (the old refresh token also
        # stays valid until the new access token is used).
        await anyio.to_thread.run_sync(self._save, fresh)
        log.info(
            "%s: access token refreshed (valid for %.0f s)",
            self.account,
            (fresh.expires_at or 0) - self._clock(),
        )
        return fresh


class RefreshingTokenAuth(httpx.Auth):
    """Sends the keeper's current token in ``header``; on a 401 gets another one and sends the
    request once more."""

    requires_request_body = True

    def __init__(self, header: str, keeper: TokenKeeper) -> None:
        self.header = header
        self.keeper = keeper

    def __repr__(self) -> str:
        return f"RefreshingTokenAuth({self.header!r}, account={self.keeper.account!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Not supported: connectors are async."""
        raise RuntimeError("RefreshingTokenAuth is for async clients")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Token in; on 401 a fresh one and one more try."""
        token = await self.keeper.access_token()
        request.headers[self.header] = token
        response = yield request
        if response.status_code == 401:
            request.headers[self.header] = await self.keeper.after_rejection(token)
            yield request

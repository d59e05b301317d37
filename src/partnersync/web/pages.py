"""The connect page for brands: sign in, pick a platform, connect an account through its OAuth
(or its key handover, or by pasting keys), land back here, and see every account's health.

Security, in the order a request meets it:

* every answer carries the security headers (:class:`SecurityHeaders`): a CSP that allows only
  our own stylesheet (there are no scripts at all), no framing, no referrer sent to other
  sites (the platforms never see our URLs), no caching of pages;
* sessions live in the hub, found by the SHA-256 of an opaque cookie (``HttpOnly``,
  ``SameSite=Lax`` — the platforms' redirects back are top-level GETs — ``Secure`` behind https);
  signing in replaces the anonymous session (no fixation), signing out deletes it;
* every POST carries the session's CSRF token (compared in constant time) and, when the browser
  sends one, an ``Origin`` equal to ours;
* passwords are checked against scrypt hashes; five failures from one address in 15 minutes
  lock that address out for the rest of the window;
* an OAuth connection is bound to the session that started it and claimed once within the hour;
* no secret is ever rendered: forms take keys as password fields and pages show only expiry,
  scopes and health; error texts pass through the log redactor first.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from partnersync.errors import PartnersyncError
from partnersync.operations import account_health
from partnersync.service import Partnersync
from partnersync.sync.offload import blocking

log = logging.getLogger("partnersync.web")

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
LABELS = {"shopify": "Shopify", "woocommerce": "WooCommerce", "taobao": "Taobao/Tmall"}
LOGIN_FAILURES = 5
LOGIN_WINDOW = 15 * 60.0

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


def readable_time(value: str | None) -> str:
    """An ISO timestamp as ``2026-11-22 15:36 UTC``."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


class SecurityHeaders:
    """ASGI middleware adding the security headers to every answer (pages, webhooks, static)."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.headers = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if https:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass through, adding headers to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                if b"cache-control" not in present:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def signed_in(
    handler: Callable[[ConnectPages, Request, dict[str, Any]], Awaitable[Response]],
) -> Callable[[ConnectPages, Request], Awaitable[Response]]:
    """A page only for a signed-in admin (others go to the sign-in page); the handler gets the
    session."""

    @functools.wraps(handler)
    async def guarded(pages: ConnectPages, request: Request) -> Response:
        session = await pages.admin(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        return await handler(pages, request, session)

    return guarded


class LoginThrottle:
    """Failed sign-ins per client address, over a sliding window."""

    def __init__(self, limit: int = LOGIN_FAILURES, window: float = LOGIN_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures[client]
        while failures and failures[0] < time.monotonic() - self.window:
            failures.popleft()
        return failures

    def locked(self, client: str) -> bool:
        """True while ``client`` has used up its attempts."""
        return len(self._recent(client)) >= self.limit

    def failed(self, client: str) -> None:
        """Count a failure."""
        self._recent(client).append(time.monotonic())


class ConnectPages:
    """The pages and their handlers (see module doc)."""

    def __init__(
        self,
        service: Partnersync,
        *,
        public_url: str | None = None,
        allow_loopback: bool = False,
    ) -> None:
        self.service = service
        self.public_url = public_url.rstrip("/") if public_url else None
        self.allow_loopback = allow_loopback
        self.session_hours = service.project.config.web.session_hours
        self.https = bool(self.public_url and self.public_url.startswith("https://"))
        self.cookie = "__Host-partnersync" if self.https else "partnersync_session"
        self.throttle = LoginThrottle()
        self.templates = Environment(
            loader=PackageLoader("partnersync.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters["when"] = readable_time

    def routes(self) -> list[Route | Mount]:
        """Routes of the connect page."""
        return [
            Route("/", self.accounts_page),
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/accounts/{name}/check", self.check, methods=["POST"]),
            Route("/connect", self.connect_page),
            Route("/connect/{platform}", self.platform_page, methods=["GET"]),
            Route("/connect/{platform}", self.start, methods=["POST"]),
            Route("/connect/{platform}/oauth/callback", self.oauth_callback),
            Mount("/static", StaticFiles(packages=[("partnersync.web", "static")])),
        ]

    # -- helpers ------------------------------------------------------------------------------
    def origin(self, request: Request) -> str:
        """Our own origin: the public URL's, else the address the request came to."""
        base = self.public_url or f"{request.url.scheme}://{request.url.netloc}"
        parts = urlsplit(base)
        return f"{parts.scheme}://{parts.netloc}"

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        """A template rendered with autoescaping."""
        html = self.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status)

    async def session(self, request: Request) -> dict[str, Any] | None:
        """The live session of the request's cookie."""
        token = request.cookies.get(self.cookie)
        if not token:
            return None
        return await blocking(self.service.store.web.session, token)

    def with_cookie(self, response: Response, token: str) -> Response:
        """Set the session cookie."""
        response.set_cookie(
            self.cookie,
            token,
            max_age=int(self.session_hours * 3600),
            path="/",
            secure=self.https,
            httponly=True,
            samesite="lax",
        )
        return response

    async def admin(self, request: Request) -> dict[str, Any] | None:
        """The signed-in session, or None."""
        session = await self.session(request)
        return session if session is not None and session["username"] else None

    async def checked_form(self, request: Request, session: Mapping[str, Any]) -> FormData | None:
        """The POSTed form when its CSRF token and origin are right, else None."""
        origin = request.headers.get("origin")
        if origin is not None and origin != self.origin(request):
            return None
        form = await request.form()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, session["csrf_token"]):
            return None
        return form

    def refused(self) -> HTMLResponse:
        """The answer to a POST without a valid CSRF token."""
        return self.render(
            "message.html",
            403,
            heading="Refused",
            kind="error",
            text="This form has expired or was not sent from this page. Reload and try again.",
        )

    def problem(self, text: str, status: int = 400, **context: Any) -> HTMLResponse:
        """An error page (the text redacted first)."""
        redactor = self.service.redactor
        shown = redactor.redact(text) if redactor is not None else text
        return self.render(
            "message.html", status, heading="Not connected", kind="error", text=shown, **context
        )

    @staticmethod
    def client(request: Request) -> str:
        """The client's address (for the sign-in throttle)."""
        return request.client.host if request.client else "?"

    # -- sign in and out ----------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        """The sign-in form (an anonymous session carries its CSRF token)."""
        session = await self.session(request)
        if session is not None and session["username"]:
            return RedirectResponse("/", status_code=303)
        no_admins = not await blocking(self.service.store.web.admins)
        if session is None:
            token, csrf = await blocking(self.service.store.web.open_session, 1.0)
            page = self.render("login.html", csrf=csrf, no_admins=no_admins)
            return self.with_cookie(page, token)
        return self.render("login.html", csrf=session["csrf_token"], no_admins=no_admins)

    async def login(self, request: Request) -> Response:
        """Check the password; on success a new signed-in session replaces the anonymous one."""
        session = await self.session(request)
        if session is None:
            return RedirectResponse("/login", status_code=303)
        form = await self.checked_form(request, session)
        if form is None:
            return self.refused()
        client = self.client(request)
        if self.throttle.locked(client):
            return self.render(
                "login.html",
                429,
                csrf=session["csrf_token"],
                error="Too many failed sign-ins: wait 15 minutes.",
            )
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        ok = await blocking(self.service.store.web.check_password, username, password)
        if not ok:
            self.throttle.failed(client)
            log.warning("connect page: failed sign-in for %r from %s", username[:64], client)
            return self.render(
                "login.html", 401, csrf=session["csrf_token"], error="Wrong user name or password."
            )
        await blocking(self.service.store.web.end_session, request.cookies[self.cookie])
        token, _ = await blocking(self.service.store.web.open_session, self.session_hours, username)
        log.info("connect page: %s signed in from %s", username, client)
        return self.with_cookie(RedirectResponse("/", status_code=303), token)

    async def logout(self, request: Request) -> Response:
        """End the session."""
        session = await self.session(request)
        if session is not None:
            if await self.checked_form(request, session) is None:
                return self.refused()
            await blocking(self.service.store.web.end_session, request.cookies[self.cookie])
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(self.cookie, path="/", secure=self.https, httponly=True)
        return response

    # -- accounts -------------------------------------------------------------------------
    @signed_in
    async def accounts_page(self, request: Request, session: dict[str, Any]) -> Response:
        """Every account with its health."""
        rows = await blocking(account_health, self.service)
        connected = request.query_params.get("connected")
        if connected not in {row["name"] for row in rows}:
            connected = None
        return self.render(
            "accounts.html",
            user=session["username"],
            csrf=session["csrf_token"],
            accounts=rows,
            connected=connected,
        )

    @signed_in
    async def check(self, request: Request, session: dict[str, Any]) -> Response:
        """One cheap authenticated call to the account; the page then shows the outcome."""
        if await self.checked_form(request, session) is None:
            return self.refused()
        name = request.path_params["name"]
        try:
            await self.service.test_account(name)
        except PartnersyncError as exc:
            log.info("connect page: check of %s failed: %s", name, type(exc).__name__)
        return RedirectResponse("/", status_code=303)

    # -- connecting -----------------------------------------------------------------------
    def methods(self, platform: str) -> list[dict[str, Any]]:
        """How an account of ``platform`` can be connected here."""
        spec = self.service.registry.get(platform)
        label = LABELS.get(platform, platform.title())
        found = []
        if spec.oauth is not None and platform in self.service.project.config.apps:
            found.append(
                {
                    "kind": "oauth",
                    "title": f"Sign in with {label}",
                    "explain": f"You approve partnersync's access at {label}; no keys to copy.",
                    "url_label": f"{label} store URL",
                    "fields": [],
                    "button": f"Continue to {label}",
                }
            )
        if spec.key_handover_path is not None:
            found.append(
                {
                    "kind": "handover",
                    "title": f"Approve in your {label} admin",
                    "explain": "Your store creates API keys for partnersync and hands them over.",
                    "url_label": f"{label} store URL",
                    "fields": [],
                    "button": f"Continue to {label}",
                }
            )
        found.append(
            {
                "kind": "keys",
                "title": "Paste API keys",
                "explain": "Keys are stored encrypted and never shown again.",
                "url_label": "API base URL",
                "fields": list(spec.secret_fields),
                "button": "Connect",
            }
        )
        return found

    @signed_in
    async def connect_page(self, request: Request, session: dict[str, Any]) -> Response:
        """Pick a platform."""
        platforms = []
        for spec in self.service.registry:
            if spec.location != "http":
                continue  # a directory on this server is not something a brand connects
            kinds = [m["kind"] for m in self.methods(spec.platform)]
            how = "OAuth" if "oauth" in kinds else "key handover" if "handover" in kinds else "keys"
            platforms.append(
                {
                    "platform": spec.platform,
                    "label": LABELS.get(spec.platform, spec.platform),
                    "how": how,
                }
            )
        return self.render(
            "connect.html",
            user=session["username"],
            csrf=session["csrf_token"],
            platforms=platforms,
        )

    @signed_in
    async def platform_page(self, request: Request, session: dict[str, Any]) -> Response:
        """The forms for one platform."""
        return self.platform_form(request, session)

    def platform_form(
        self, request: Request, session: Mapping[str, Any], error: str | None = None
    ) -> Response:
        """The forms for the request's platform (with an error above them)."""
        platform = request.path_params["platform"]
        try:
            spec = self.service.registry.get(platform)
        except PartnersyncError:
            return self.problem(f"no platform named {platform!r}", 404)
        if spec.location != "http":
            return self.problem(f"{platform} accounts are not connected from this page", 404)
        note = None
        if spec.oauth is not None and platform not in self.service.project.config.apps:
            note = (
                f"Sign-in with {LABELS.get(platform, platform)} needs our app's credentials: "
                f"add [apps.{platform}] to partnersync.toml on the server."
            )
        return self.render(
            "connect_platform.html",
            400 if error else 200,
            user=session["username"],
            csrf=session["csrf_token"],
            platform=platform,
            label=LABELS.get(platform, platform),
            methods=self.methods(platform),
            error=error,
            note=note,
        )

    @signed_in
    async def start(self, request: Request, session: dict[str, Any]) -> Response:
        """Start connecting: OAuth and key handover send the brand to the platform; pasted keys
        are stored and checked at once."""
        form = await self.checked_form(request, session)
        if form is None:
            return self.refused()
        platform = request.path_params["platform"]
        name = str(form.get("name", "")).strip()
        url = str(form.get("url", "")).strip()
        kind = str(form.get("method", ""))
        if not ACCOUNT_NAME.match(name):
            return self.platform_form(
                request, session, "An account name is 1–63 letters, digits, - or _."
            )
        if kind not in {m["kind"] for m in self.methods(platform)}:
            return self.platform_form(request, session, "Pick one of the ways offered.")
        public = self.public_url or self.origin(request)
        try:
            if kind == "oauth":
                authorize_url = await blocking(
                    lambda: self.service.start_oauth_connect(
                        name=name,
                        platform=platform,
                        base_url=url,
                        redirect_uri=f"{public}/connect/{platform}/oauth/callback",
                        bound_to=session["token_hash"],
                        allow_loopback=self.allow_loopback,
                    )
                )
                _, _, scopes, _ = self.service.oauth_app(platform)
                return self._continue(session, platform, name, scopes, authorize_url)
            if kind == "handover":
                handover_url, _ = await blocking(
                    lambda: self.service.start_key_handover(
                        name=name,
                        platform=platform,
                        base_url=url,
                        public_url=public,
                        allow_loopback=self.allow_loopback,
                    )
                )
                return self._continue(session, platform, name, "read_write", handover_url)
            spec = self.service.registry.get(platform)
            fields = {f: str(form.get(f"secret_{f}", "")) for f in spec.secret_fields}
            if self.service.redactor is not None:
                self.service.redactor.register(*fields.values())
            await blocking(
                lambda: self.service.add_account(
                    name=name,
                    platform=platform,
                    base_url=url,
                    secrets=fields,
                    allow_loopback=self.allow_loopback,
                )
            )
        except PartnersyncError as exc:
            redactor = self.service.redactor
            text = redactor.redact(str(exc)) if redactor is not None else str(exc)
            return self.platform_form(request, session, text)
        log.info("connect page: account %s (%s) added with pasted keys", name, platform)
        await self._first_check(name)
        return RedirectResponse(f"/?connected={name}", status_code=303)

    def _continue(
        self, session: Mapping[str, Any], platform: str, name: str, scopes: str, url: str
    ) -> Response:
        """The page sending the brand to the platform to approve (no redirect: a form may
        only lead back here)."""
        return self.render(
            "continue.html",
            user=session["username"],
            csrf=session["csrf_token"],
            label=LABELS.get(platform, platform),
            name=name,
            scopes=scopes,
            url=url,
            host=urlsplit(url).netloc,
        )

    async def oauth_callback(self, request: Request) -> Response:
        """The platform sends the brand back: verify, exchange, store, check."""
        session = await self.admin(request)
        if session is None:
            return self.problem(
                "Sign in first: this connection was started by a signed-in user.", 401
            )
        platform = request.path_params["platform"]
        params = dict(request.query_params)
        try:
            name = await self.service.complete_oauth_connect(
                platform, params, session["token_hash"]
            )
        except PartnersyncError as exc:
            log.warning("connect page: OAuth callback for %s refused: %s", platform, exc)
            return self.problem(str(exc), 400, user=session["username"], csrf=session["csrf_token"])
        await self._first_check(name)
        return RedirectResponse(f"/?connected={name}", status_code=303)

    async def _first_check(self, name: str) -> None:
        try:
            await self.service.test_account(name)
        except PartnersyncError as exc:
            log.info("connect page: first check of %s failed: %s", name, type(exc).__name__)

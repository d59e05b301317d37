"""``partnersync serve``: one ASGI app (starlette + uvicorn): the connect page for brands
(:mod:`partnersync.web.pages`), the platforms' webhooks, and the API keys stores hand over
(``POST /connect/{platform}/callback/{state}``: accepted once, for a connection started by
``accounts connect`` or the connect page in the last hour, the keys stored encrypted).

``POST /webhooks/{platform}/{account}``: the raw body's signature is checked in constant time
before anything is parsed (401 and no side effect when it is missing, wrong, made with another
secret, or the delivery is older than the replay window); a delivery id seen before is answered
200 and not applied again; an accepted delivery asks for a pull of the account × entity its
topic names — coalesced, so a burst of deliveries makes one incremental pull, run here under the
same leases as every other run — so stock and orders move within seconds. The periodic
incremental pull stays the safety net.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from partnersync.auth.webhooks import signature_matches
from partnersync.errors import AlreadyRunningError, ConfigError, PartnersyncError
from partnersync.service import Partnersync
from partnersync.sync.offload import blocking
from partnersync.web.pages import ConnectPages, SecurityHeaders

log = logging.getLogger("partnersync.web")

MAX_BODY = 2 * 1024 * 1024
REPLAY_WINDOW = timedelta(hours=24)
"""Deliveries sent longer ago than this are refused (a platform's own retries come sooner)."""


class PullRequests:
    """Pulls asked for by webhooks: one pending request per account × entity, run one at a
    time in the background; a pull that finds its scope busy is asked again a moment later."""

    def __init__(self, service: Partnersync) -> None:
        self.service = service
        self.pending: set[tuple[str, str]] = set()
        self._wake = anyio.Event()

    def ask(self, account: str, entity: str) -> None:
        """Ask for a pull (coalesced with one already asked for)."""
        self.pending.add((account, entity))
        self._wake.set()

    async def run(self) -> None:
        """Serve requests until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self.pending:
                account, entity = self.pending.pop()
                try:
                    await self.service.pull(account, entity)
                except AlreadyRunningError:
                    await anyio.sleep(0.5)
                    self.pending.add((account, entity))
                except PartnersyncError as exc:
                    log.warning("pull after webhook %s/%s failed: %s", account, entity, exc)


class QueuedPulls(PullRequests):
    """Pulls asked for by webhooks, handed to the worker queue (``serve --executor workers``):
    the workers run them under the same leases; a pull queued and not started yet takes the
    next delivery's change too (procrastinate's queueing lock)."""

    async def run(self) -> None:
        """Queue requests until cancelled."""
        from partnersync.operations import ensure_queue_schema
        from partnersync.scheduling.workers import JobQueue

        await blocking(ensure_queue_schema, self.service)
        queue = JobQueue(self.service.project.database_url)
        async with queue.app.open_async():
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self.pending:
                    account, entity = self.pending.pop()
                    try:
                        await queue.defer_pull(account, entity)
                    except Exception:
                        log.warning(
                            "could not queue a pull of %s/%s", account, entity, exc_info=True
                        )
                        self.pending.add((account, entity))
                        await anyio.sleep(1.0)


def create_app(
    service: Partnersync,
    *,
    replay_window: timedelta = REPLAY_WINDOW,
    public_url: str | None = None,
    allow_loopback: bool = False,
    executor: str = "local",
) -> Starlette:
    """The app: the connect page, webhooks and key handovers, behind the security headers.
    ``public_url`` is where brands and platforms reach it (redirects and callbacks point
    there); ``allow_loopback`` lets accounts on this machine be connected (sandboxes, tests);
    ``executor`` says where the pulls webhooks ask for run: ``local`` (here) or ``workers``
    (queued for ``partnersync worker``, PostgreSQL hub)."""
    if executor not in ("local", "workers"):
        raise ConfigError("executor must be local or workers")
    if executor == "workers":
        from partnersync.scheduling.workers import libpq_url

        libpq_url(service.project.database_url)  # a clear error now for a SQLite hub
    pulls = (QueuedPulls if executor == "workers" else PullRequests)(service)
    public_url = public_url or service.project.config.web.public_url
    pages = ConnectPages(service, public_url=public_url, allow_loopback=allow_loopback)

    async def webhook(request: Request) -> JSONResponse:
        platform = request.path_params["platform"]
        account_name = request.path_params["account"]
        try:
            account = await blocking(service.account, account_name)
        except ConfigError:
            return JSONResponse({"error": "unknown account"}, status_code=404)
        spec = service.registry.get(account["platform"])
        if account["platform"] != platform or spec.webhooks is None:
            return JSONResponse({"error": "unknown account"}, status_code=404)
        hooks = spec.webhooks
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return JSONResponse({"error": "too large"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY:
            return JSONResponse({"error": "too large"}, status_code=413)
        fields = await blocking(service.store.accounts.secrets, account_name)
        keys = [fields[name] for name in hooks.secret_fields if fields.get(name)]
        if not signature_matches(body, request.headers.get(hooks.signature_header), keys):
            log.warning("webhook for %s refused: bad or missing signature", account_name)
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        sent = request.headers.get(hooks.timestamp_header) if hooks.timestamp_header else None
        if sent is not None and _too_old(sent, replay_window):
            log.warning("webhook for %s refused: sent at %s, too old", account_name, sent)
            return JSONResponse({"error": "stale delivery"}, status_code=401)
        delivery = next(
            (request.headers[h] for h in hooks.id_headers if request.headers.get(h)), None
        )
        if delivery is None:
            return JSONResponse({"error": "no delivery id"}, status_code=400)
        topic = request.headers.get(hooks.topic_header, "")
        entity = hooks.topics.get(topic)
        first = await blocking(
            service.store.webhooks.accept,
            account_name,
            delivery,
            topic=topic,
            entity=entity,
            triggered_at=sent,
        )
        if not first:
            return JSONResponse({"duplicate": True})
        if entity is not None:
            pulls.ask(account_name, entity)
        return JSONResponse({"accepted": True, "entity": entity})

    async def key_callback(request: Request) -> JSONResponse:
        platform, state = request.path_params["platform"], request.path_params["state"]
        body = await request.body()
        if len(body) > 64 * 1024:
            return JSONResponse({"error": "too large"}, status_code=413)
        try:
            keys = orjson.loads(body)
            if not isinstance(keys, dict):
                raise ValueError("not an object")
            name = await blocking(service.complete_key_handover, platform, state, keys)
        except (ValueError, PartnersyncError) as exc:
            log.warning("key handover refused: %s", exc)
            return JSONResponse({"error": "refused"}, status_code=401)
        log.info("account %s connected (%s keys handed over)", name, platform)
        return JSONResponse({"ok": True})

    async def key_return(request: Request) -> HTMLResponse:
        ok = request.query_params.get("success") == "1"
        return pages.render(
            "message.html",
            200 if ok else 400,
            heading="Connected" if ok else "Not connected",
            kind="notice" if ok else "error",
            text="The store handed its keys over; the account is on the accounts page."
            if ok
            else "The store did not hand keys over.",
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "pending_pulls": len(pulls.pending)})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as group:
            group.start_soon(pulls.run)
            yield
            group.cancel_scope.cancel()

    app = Starlette(
        routes=[
            Route("/webhooks/{platform}/{account}", webhook, methods=["POST"]),
            Route("/connect/{platform}/callback/{state}", key_callback, methods=["POST"]),
            Route("/connect/{platform}/return", key_return),
            Route("/healthz", health),
            *pages.routes(),
        ],
        middleware=[Middleware(SecurityHeaders, https=pages.https)],
        lifespan=lifespan,
    )
    return app


def _too_old(sent: str, window: timedelta) -> bool:
    try:
        moment = datetime.fromisoformat(sent.replace("Z", "+00:00"))
    except ValueError:
        return True
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.now(UTC) - moment > window


def serve(
    service: Partnersync,
    host: str,
    port: int,
    *,
    public_url: str | None = None,
    allow_loopback: bool = False,
    executor: str = "local",
) -> None:
    """Run the app with uvicorn until SIGTERM/SIGINT."""
    import uvicorn

    app = create_app(
        service, public_url=public_url, allow_loopback=allow_loopback, executor=executor
    )
    # Behind a TLS-terminating proxy, uvicorn trusts X-Forwarded-* from loopback only.
    uvicorn.run(app, host=host, port=port, log_level="warning")

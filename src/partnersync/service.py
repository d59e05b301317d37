"""The application facade the CLI (and embedding code) calls: wires project, vault, store,
registry, connectors and the engine together. No business rules live in ``cli.py``."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

from partnersync.auth.oauth2 import TokenKeeper, TokenSet
from partnersync.auth.vault import FOLLOW_INTERVAL, KEYS_ENV, Vault
from partnersync.clock import Clock, SystemClock
from partnersync.config import JobConfig, Project, validate_base_url, validate_directory
from partnersync.connectors.base import AccountInfo, Connector, ConnectorSpec
from partnersync.connectors.registry import ConnectorRegistry
from partnersync.errors import (
    AuthenticationError,
    ConfigError,
    ConnectorError,
    MappingError,
    PartnersyncError,
    VaultError,
)
from partnersync.logs import RedactingFilter
from partnersync.mapping.mapper import MapContext
from partnersync.sync.budgets import HubBudgets
from partnersync.sync.engine import PullEngine, PullOptions, PullProgress, RunSummary, parse_cursor
from partnersync.sync.offload import blocking
from partnersync.sync.push import TARGET_STATE, PushEngine, PushOptions, PushSummary
from partnersync.sync.runner import LeaseKeeper, StopRequest
from partnersync.sync.store import HubStore, MappedRecord, content_hash
from partnersync.sync.store.leases import job_scope

log = logging.getLogger("partnersync")

TOKEN_LOCK_WAIT = 60.0
"""Seconds a process waits for a sibling refreshing the same account's token."""

ROTATION_GRACE = 0.5
"""Seconds after a running process has surely seen a new key file before ``keys rotate``'s last
sweep (the page it was sealing commits meanwhile)."""
ROTATION_SWEEP_LIMIT = 10.0
"""Seconds ``keys rotate`` keeps sweeping past that before it gives up and says so."""

STATUS_ORDER = ("failed", "interrupted", "abandoned", "partial", "succeeded")
"""Worst first: a job run's status is the worst of its runs'."""


def _guarded(
    transport: httpx.AsyncBaseTransport | None, allow_loopback: bool
) -> httpx.AsyncBaseTransport | None:
    """``transport`` checking every connection's address (unless loopback is allowed)."""
    if allow_loopback:
        return transport
    from partnersync.connectors.http.guard import AddressGuardTransport

    return AddressGuardTransport(transport)


def worst_status(statuses: Sequence[str]) -> str:
    """The worst of ``statuses`` (``succeeded`` for none)."""
    for status in STATUS_ORDER:
        if status in statuses:
            return status
    return "succeeded"


class KeyAdmin:
    """The project's encryption keys: which the hub needs, making, checking, rotating, retiring.

    Works without the key (it reads key ids, never data), so it can say which key a hub needs
    when the key file is missing — and refuse to make a new key over data it could not read.
    """

    def __init__(self, project: Project) -> None:
        self.project = project

    def _hub(self, vault: Vault) -> HubStore | None:
        url = self.project.database_url
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            return None
        return HubStore.open(url, vault)

    def in_use(self) -> dict[str, int]:
        """Key id → how many values the hub holds under it."""
        hub = self._hub(Vault.ephemeral())
        if hub is None:
            return {}
        try:
            return dict(hub.keys.key_ids())
        finally:
            hub.close()

    def init(self) -> str:
        """Make the project's first key; refused when a key exists or the hub holds data."""
        if os.environ.get(KEYS_ENV):
            raise ConfigError(f"keys come from {KEYS_ENV}; no key file is made")
        key_file = self.project.key_file
        if key_file.exists():
            raise ConfigError(f"{key_file} already holds keys; see 'partnersync keys check'")
        used = self.in_use()
        if used:
            held = ", ".join(f"{k} ({n} values)" for k, n in sorted(used.items()))
            raise ConfigError(
                f"the hub's data is under key {held}: restore the key file it was made with "
                f"(to {key_file}); a new key could not read that data"
            )
        Vault.create_key_file(key_file)
        return "k1"

    def check(self) -> dict[str, Any]:
        """The key ring against the hub: values per key id, keys missing, values unreadable."""
        vault = Vault.load(self.project.key_file)
        hub = self._hub(vault)
        used: dict[str, int] = {}
        unreadable = 0
        if hub is not None:
            try:
                for value in hub.keys.sealed():
                    used[value.key_id] = used.get(value.key_id, 0) + 1
                    try:
                        vault.decrypt(value.token, value.aad)
                    except VaultError:
                        unreadable += 1
            finally:
                hub.close()
        return {
            "ring": vault.key_ids,
            "primary": vault.primary,
            "in_use": used,
            "missing": sorted(k for k in used if k not in vault.key_ids),
            "unreadable": unreadable,
        }

    def rotate(self) -> tuple[str, int]:
        """A new primary key (in the key file, the old ones kept to read), then every value
        re-encrypted under it; returns (new key id, values re-encrypted)."""
        if os.environ.get(KEYS_ENV):
            vault = Vault.parse(os.environ[KEYS_ENV])  # the operator put the new key first
        else:
            current = Vault.load(self.project.key_file)
            numbers = [int(k[1:]) for k in current.key_ids if k[1:].isdigit()]
            new_id = f"k{max(numbers, default=0) + 1}"
            lines = [
                line.strip()
                for line in self.project.key_file.read_text().splitlines()
                if line.strip() and not line.startswith("#")
            ]
            Vault.write_key_file(self.project.key_file, [Vault.new_key_entry(new_id), *lines])
            vault = Vault.load(self.project.key_file)
        written = time.monotonic()
        hub = self._hub(vault)
        if hub is None:
            return vault.primary, 0
        try:
            moved = hub.keys.reencrypt()
            # A sync running meanwhile looks at the key file once per FOLLOW_INTERVAL, so until
            # that has passed (and the page it was sealing has committed) it may still seal
            # under the old key: sweep until then, and until a sweep finds nothing.
            settled = written + FOLLOW_INTERVAL + ROTATION_GRACE
            while True:
                again = hub.keys.reencrypt()
                moved += again
                if not again and time.monotonic() > settled:
                    break
                if time.monotonic() > settled + ROTATION_SWEEP_LIMIT:
                    log.warning("values are still being sealed under the old key: run again")
                    break
                time.sleep(0.2)
            return vault.primary, moved
        finally:
            hub.close()

    def retire(self, key_id: str) -> None:
        """Remove a key from the key file, once no value is under it."""
        vault = Vault.load(self.project.key_file)
        if key_id == vault.primary:
            raise ConfigError(f"{key_id} is the primary key; rotate to a new one first")
        if key_id not in vault.key_ids:
            raise ConfigError(f"no key {key_id!r} in the ring ({', '.join(vault.key_ids)})")
        left = self.in_use().get(key_id, 0)
        if left:
            raise ConfigError(
                f"{left} values are still under {key_id}: run 'partnersync keys rotate' first"
            )
        lines = [
            line.strip()
            for line in self.project.key_file.read_text().splitlines()
            if line.strip() and not line.strip().startswith(f"{key_id}:")
        ]
        Vault.write_key_file(self.project.key_file, lines)


def installed_connectors() -> list[ConnectorSpec]:
    """The connectors installed (entry points ``partnersync.connectors``), by platform name;
    no project needed."""
    return sorted(ConnectorRegistry.from_entry_points(), key=lambda spec: spec.platform)


class Partnersync:
    """One project's hub, accounts and sync operations."""

    def __init__(
        self,
        project: Project,
        *,
        registry: ConnectorRegistry | None = None,
        vault: Vault | None = None,
        clock: Clock | None = None,
        redactor: RedactingFilter | None = None,
    ) -> None:
        self.project = project
        self.registry = registry or ConnectorRegistry.from_entry_points()
        self.vault = vault or Vault.load(project.key_file)
        self.clock = clock or SystemClock()
        self.redactor = redactor
        self.store = HubStore.open(project.database_url, self.vault)
        self.leases = LeaseKeeper(self.store, ttl=project.config.sync.lease_seconds)
        self._keepers: dict[str, TokenKeeper] = {}
        self.budgets = HubBudgets(self.store, clock=self.clock)
        self.stop = StopRequest()

    def close(self) -> None:
        """Release the database."""
        self.store.close()

    # -- accounts ------------------------------------------------------------------------
    def add_account(
        self,
        *,
        name: str,
        platform: str,
        base_url: str,
        secrets: Mapping[str, str],
        api_version: str | None = None,
        options: Mapping[str, Any] | None = None,
        allow_loopback: bool = False,
    ) -> None:
        """Validate and store an account; its secrets are encrypted."""
        spec = self.registry.get(platform)
        missing = [field for field in spec.secret_fields if not secrets.get(field)]
        if missing:
            raise ConfigError(f"account {name!r} needs secret(s) {missing}")
        url = self._validate_location(spec, base_url, allow_loopback=allow_loopback)
        stored_options = {**(options or {}), "allow_loopback": allow_loopback}
        self.store.accounts.save(
            name=name,
            platform=platform,
            base_url=url,
            api_version=api_version or spec.default_api_version,
            options=stored_options,
            secrets=dict(secrets),
        )
        log.info("account %s added (%s at %s)", name, platform, url)

    def accounts(self) -> list[dict[str, Any]]:
        """Every wired account (no secrets)."""
        return self.store.accounts.every()

    def remove_account(self, name: str) -> bool:
        """Forget an account and its secrets; False if there was none."""
        return self.store.accounts.remove(name)

    def runs(self, *, account: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        return self.store.runs.recent(account=account, limit=limit)

    def run(self, run_id: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One run and its conflicts; ConfigError if there is no such run."""
        run = self.store.runs.get(run_id)
        if run is None:
            raise ConfigError(f"no run {run_id}")
        return run, self.store.conflicts.of_run(run_id)

    def record(self, account: str, entity: str, external_id: str) -> dict[str, Any]:
        """A stored canonical record by the account's id; ConfigError if there is none."""
        record = self.store.records.find(account, entity, external_id)
        if record is None:
            raise ConfigError(f"no {entity} record {external_id!r} from {account}")
        return record

    def cursors(self) -> list[dict[str, Any]]:
        """Every stored cursor."""
        return self.store.cursors.every()

    def reset_cursor(self, account: str, entity: str) -> None:
        """Forget a cursor so the next pull reads everything; ConfigError if there is none."""
        self.account(account)
        if not self.store.cursors.reset(account, entity):
            raise ConfigError(f"{account} has no {entity} cursor")

    def account_details(self, name: str) -> dict[str, Any]:
        """An account's settings and the names (never the values) of its secrets."""
        account = self.account(name)
        spec = self.registry.get(account["platform"])
        return {**account, "secret_fields": list(spec.secret_fields)}

    def config(self) -> dict[str, Any]:
        """The project's settings as loaded (the database URL's password masked)."""
        data = self.project.config.model_dump(mode="json")
        url = self.project.database_url
        if "@" in url and ":" in url.split("@", 1)[0].split("//", 1)[-1]:
            scheme, rest = url.split("//", 1)
            user = rest.split("@", 1)[0].split(":", 1)[0]
            url = f"{scheme}//{user}:***@{rest.split('@', 1)[1]}"
        return {
            "project": str(self.project.root),
            "database": url,
            "key_file": str(self.project.key_file),
            "log_file": str(self.project.log_file),
            **data,
        }

    def list_records(
        self, account: str, entity: str, *, search: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """An account's records of ``entity``: id and a summary, optionally matching text."""
        self.account(account)
        found = []
        needle = search.lower() if search else None
        for record in self.store.records.of(account, entity):
            data = record.data
            summary = " ".join(
                str(data.get(k))
                for k in ("sku", "location_name", "number", "title", "handle", "order_ref")
                if data.get(k) not in (None, "")
            )
            if needle and needle not in f"{record.external_id} {summary}".lower():
                continue
            found.append({"external_id": record.external_id, "summary": summary})
            if len(found) >= limit:
                break
        return found

    async def preview_mapping(
        self, account: str, entity: str, external_id: str | None = None
    ) -> dict[str, Any]:
        """A real record from the platform before and after mapping, with the account's
        overrides applied and the source of each canonical field."""
        connector, spec = self.connector(account)
        connector.capabilities.require_pull(entity)
        mapper_class = spec.mappers[entity]
        async with connector:
            raw: dict[str, Any] | None = None
            async for page in connector.pull(entity):
                for candidate in page.records:
                    mapper = mapper_class(
                        MapContext(account, connector.platform, connector.mapping_settings())
                    )
                    if external_id is None or mapper.external_id(candidate) == external_id:
                        raw = candidate
                        break
                if raw is not None:
                    break
            if raw is None:
                raise ConfigError(f"{account} has no {entity} record {external_id or ''}".strip())
            context = MapContext(account, connector.platform, connector.mapping_settings())
        overrides = self.project.account(account).mapping.get(entity)
        result: dict[str, Any] = {"raw": raw, "sources": mapper_class.source_fields()}
        try:
            mapped = mapper_class(context, overrides).map(raw)
            result["canonical"] = mapped.model_dump(mode="json")
        except MappingError as exc:
            result["error"] = {"field": exc.field, "reason": exc.reason}
        return result

    def dismiss_dead_letter(self, letter_id: int) -> None:
        """Close a dead letter without retrying it (StoreError if there is none)."""
        self.store.dead_letters.get(letter_id)
        self.store.dead_letters.resolve(letter_id)

    def jobs(self) -> dict[str, dict[str, Any]]:
        """The project file's jobs, as data."""
        return {name: job.model_dump(mode="json") for name, job in self.project.config.jobs.items()}

    def validate_job(self, name: str) -> JobConfig:
        """Everything a job will touch, checked before its first request or write: the job,
        its accounts, that each source can be pulled and each target can receive the entity,
        and the sources' mapping overrides."""
        job = self.project.config.jobs.get(name)
        if job is None:
            raise ConfigError(f"no job {name!r}; jobs: {sorted(self.project.config.jobs)}")
        for account in [*job.sources, *job.targets]:
            self.account(account)
        for source in job.sources:
            spec = self.registry.get(self.account(source)["platform"])
            spec.connector.capabilities.require_pull(job.entity)
            mapper = spec.mappers.get(job.entity)
            overrides = self.project.account(source).mapping.get(job.entity)
            if mapper is not None and overrides:
                mapper(MapContext(source, spec.platform), overrides)  # refuses unknown fields
        for target in job.targets:
            spec = self.registry.get(self.account(target)["platform"])
            capability = spec.connector.capabilities.entities.get(job.entity)
            if capability is None or capability.writer is None:
                raise ConfigError(
                    f"job {name!r}: {target} ({spec.platform}) cannot receive {job.entity}"
                )
        return job

    def dead_letters(
        self, *, account: str | None = None, entity: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Open dead letters, newest first."""
        return self.store.dead_letters.unresolved(account=account, entity=entity, limit=limit)

    @staticmethod
    def _validate_location(spec: ConnectorSpec, url: str, *, allow_loopback: bool) -> str:
        if spec.location == "directory":
            return validate_directory(url)
        return validate_base_url(url, allow_loopback=allow_loopback)

    def account(self, name: str) -> dict[str, Any]:
        """Stored account settings (no secrets); ConfigError if unknown."""
        account = self.store.accounts.get(name)
        if account is None:
            known = [a["name"] for a in self.store.accounts.every()]
            raise ConfigError(f"no account named {name!r}; accounts: {known}")
        return account

    def connector(
        self, name: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> tuple[Connector, ConnectorSpec]:
        """A ready connector for an account (use it as an async context manager)."""
        account = self.account(name)
        spec = self.registry.get(account["platform"])
        options = dict(account["options"])
        self._validate_location(
            spec, account["base_url"], allow_loopback=bool(options.get("allow_loopback"))
        )
        secrets = self.store.accounts.secrets(name)
        if self.redactor is not None:
            self.redactor.register(*secrets.values())
        if spec.location == "http" and not options.get("allow_loopback"):
            # Checked again at every connection (DNS rebinding), not only when it was added.
            options["guard_addresses"] = True
        info = AccountInfo(
            name=name,
            platform=account["platform"],
            base_url=account["base_url"],
            api_version=account["api_version"],
            options=options,
        )
        auth = (
            spec.oauth.refreshing_auth(secrets, self._keeper(name, spec, account, transport))
            if spec.oauth is not None and "refresh_token" in secrets
            else spec.auth(secrets)
        )
        connector = spec.connector(
            info,
            auth=auth,
            transport=transport,
            clock=self.clock,
            budgets=self.budgets,
        )
        return connector, spec

    # -- OAuth ----------------------------------------------------------------------------------
    def _keeper(
        self,
        name: str,
        spec: ConnectorSpec,
        account: Mapping[str, Any],
        transport: httpx.AsyncBaseTransport | None,
    ) -> TokenKeeper:
        """The one token keeper of an OAuth account in this process (its single flight)."""
        keeper = self._keepers.get(name)
        if keeper is None:
            oauth = spec.oauth
            assert oauth is not None
            fields = self.store.accounts.secrets(name)
            flow, _ = self._oauth_flow(
                account["platform"],
                account["base_url"],
                fields[oauth.field("client_id")],
                fields[oauth.field("client_secret")],
                scopes=fields.get("scope", ""),
                oauth_url=account["options"].get("oauth_url"),
                allow_loopback=bool(account["options"].get("allow_loopback")),
                transport=transport,
            )
            token_field = oauth.field("access_token")
            keeper = TokenKeeper(
                name,
                load=lambda: TokenSet.from_secrets(self.store.accounts.secrets(name), token_field),
                save=lambda token: self.store.accounts.update_secrets(
                    name, token.as_secrets(token_field)
                ),
                refresh=flow.refresh,
                lock=lambda: self._token_lock(name),
            )
            self._keepers[name] = keeper
        return keeper

    @asynccontextmanager
    async def _token_lock(self, name: str) -> AsyncIterator[None]:
        """The hub-wide lock on refreshing ``name``'s token: waits while another process holds
        it (it is refreshing; we then read what it stored)."""
        async with self.leases.hold(f"token:{name}", fence=False, wait=TOKEN_LOCK_WAIT):
            yield

    def _oauth_flow(
        self,
        platform: str,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        scopes: str,
        redirect_uri: str = "",
        oauth_url: str | None = None,
        allow_loopback: bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> tuple[Any, str]:
        """The platform's OAuth flow for one account (its token calls guarded like the API's),
        and the account's checked URL; ConfigError for a platform without OAuth."""
        spec = self.registry.get(platform)
        if spec.oauth is None:
            raise ConfigError(f"{platform} has no OAuth flow here; use accounts add")
        url = self._validate_location(spec, base_url, allow_loopback=allow_loopback)
        oauth_url = oauth_url or spec.oauth.oauth_url
        if oauth_url:
            oauth_url = validate_base_url(oauth_url, allow_loopback=allow_loopback)
        flow = spec.oauth.flow(
            url,
            client_id,
            client_secret,
            scopes=scopes,
            redirect_uri=redirect_uri,
            oauth_url=oauth_url,
            transport=_guarded(transport, allow_loopback),
        )
        return flow, url

    async def connect_account(
        self,
        *,
        name: str,
        platform: str,
        base_url: str,
        client_id: str,
        client_secret: str,
        scopes: str,
        redirect_uri: str,
        receive: Callable[[str], Awaitable[Mapping[str, str] | None]],
        options: Mapping[str, Any] | None = None,
        allow_loopback: bool = False,
        oauth_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> TokenSet:
        """Wire an account through the platform's OAuth: ``receive(authorize_url)`` gets the
        merchant there and returns the callback's parameters; the callback is verified (state,
        HMAC, age), the code exchanged, and the token pair stored encrypted with the app's
        credentials."""
        flow, url = self._oauth_flow(
            platform,
            base_url,
            client_id,
            client_secret,
            scopes=scopes,
            redirect_uri=redirect_uri,
            oauth_url=oauth_url,
            allow_loopback=allow_loopback,
            transport=transport,
        )
        authorize_url, state = flow.authorization_url()
        params = await receive(authorize_url)
        if not params:
            raise AuthenticationError("no OAuth callback arrived: nothing was stored")
        return await self._finish_oauth(
            flow,
            params,
            state,
            client_id=client_id,
            client_secret=client_secret,
            name=name,
            platform=platform,
            base_url=url,
            scopes=scopes,
            options={**(options or {}), **({"oauth_url": oauth_url} if oauth_url else {})},
            allow_loopback=allow_loopback,
        )

    async def _finish_oauth(
        self,
        flow: Any,
        params: Mapping[str, str],
        state: str,
        *,
        client_id: str,
        client_secret: str,
        name: str,
        platform: str,
        base_url: str,
        scopes: str,
        options: Mapping[str, Any] | None,
        allow_loopback: bool,
    ) -> TokenSet:
        """Verify a callback, exchange its code and store the account with its token pair."""
        now = self.clock.now().timestamp()
        code = flow.verify_callback(params, state, now)
        token: TokenSet = await flow.exchange(code, now)
        if self.redactor is not None:
            self.redactor.register(client_secret, token.access_token, token.refresh_token or "")
        oauth = self.registry.get(platform).oauth
        assert oauth is not None
        self.add_account(
            name=name,
            platform=platform,
            base_url=base_url,
            secrets={
                oauth.field("client_id"): client_id,
                oauth.field("client_secret"): client_secret,
                **token.as_secrets(oauth.field("access_token")),
                "scope": token.scope or scopes,
            },
            options=options,
            allow_loopback=allow_loopback,
        )
        self._keepers.pop(name, None)
        log.info("account %s connected through %s's OAuth", name, platform)
        return token

    def oauth_app(self, platform: str) -> tuple[str, str, str, str | None]:
        """Our OAuth app on ``platform`` from ``[apps.PLATFORM]``: client id, client secret (from
        the environment variable named there), scopes and the OAuth URL; ConfigError naming
        what is missing."""
        app = self.project.config.apps.get(platform)
        if app is None:
            raise ConfigError(
                f"no [apps.{platform}] in partnersync.toml: add the app's client_id and "
                "client_secret_env to connect accounts through OAuth"
            )
        secret = os.environ.get(app.client_secret_env)
        if not secret:
            raise ConfigError(
                f"[apps.{platform}] client_secret_env names {app.client_secret_env}, "
                "which is not set"
            )
        if self.redactor is not None:
            self.redactor.register(secret)
        return app.client_id, secret, app.scopes, app.oauth_url

    def start_oauth_connect(
        self,
        *,
        name: str,
        platform: str,
        base_url: str,
        redirect_uri: str,
        bound_to: str,
        allow_loopback: bool = False,
    ) -> str:
        """Start an OAuth connection from the connect page: the URL to send the brand to. The
        callback must come back within the hour, to the same signed-in session (``bound_to``)."""
        client_id, client_secret, scopes, oauth_url = self.oauth_app(platform)
        flow, url = self._oauth_flow(
            platform,
            base_url,
            client_id,
            client_secret,
            scopes=scopes,
            redirect_uri=redirect_uri,
            oauth_url=oauth_url,
            allow_loopback=allow_loopback,
        )
        authorize_url, state = flow.authorization_url()
        self.store.pending_connects.open(
            state,
            name=name,
            platform=platform,
            base_url=url,
            options={
                "allow_loopback": allow_loopback,
                "session": bound_to,
                "redirect_uri": redirect_uri,
            },
        )
        return str(authorize_url)

    async def complete_oauth_connect(
        self, platform: str, params: Mapping[str, str], bound_to: str
    ) -> str:
        """The platform's redirect back to the connect page: the connection its ``state``
        names is claimed (once), the callback verified, the code exchanged and the account
        stored. Returns the account's name."""
        state = params.get("state", "")
        pending = await blocking(self.store.pending_connects.claim, state) if state else None
        if pending is None or pending["platform"] != platform:
            raise AuthenticationError("no connection is waiting for this callback (or it expired)")
        options = dict(pending["options"])
        if not secrets.compare_digest(str(options.pop("session", "")), bound_to):
            raise AuthenticationError("this connection was started in another session")
        redirect_uri = str(options.pop("redirect_uri", ""))
        allow_loopback = bool(options.pop("allow_loopback", False))
        client_id, client_secret, scopes, oauth_url = self.oauth_app(platform)
        flow, _ = self._oauth_flow(
            platform,
            pending["base_url"],
            client_id,
            client_secret,
            scopes=scopes,
            redirect_uri=redirect_uri,
            oauth_url=oauth_url,
            allow_loopback=allow_loopback,
        )
        await self._finish_oauth(
            flow,
            params,
            state,
            client_id=client_id,
            client_secret=client_secret,
            name=pending["name"],
            platform=platform,
            base_url=pending["base_url"],
            scopes=scopes,
            options={**options, **({"oauth_url": oauth_url} if oauth_url else {})},
            allow_loopback=allow_loopback,
        )
        return str(pending["name"])

    def start_key_handover(
        self,
        *,
        name: str,
        platform: str,
        base_url: str,
        public_url: str,
        options: Mapping[str, Any] | None = None,
        allow_loopback: bool = False,
    ) -> tuple[str, str]:
        """Start a key handover (WooCommerce's app authorisation): returns the URL the store
        owner opens and the state naming this connection. The store POSTs the keys to
        ``public_url``'s ``/connect/PLATFORM/callback/STATE``, which ``partnersync serve``
        answers; nothing is stored until then."""
        spec = self.registry.get(platform)
        if spec.key_handover_path is None:
            raise ConfigError(f"{platform} hands over no keys; use accounts add")
        url = self._validate_location(spec, base_url, allow_loopback=allow_loopback)
        public = public_url.rstrip("/")
        state = secrets.token_urlsafe(24)
        self.store.pending_connects.open(
            state,
            name=name,
            platform=platform,
            base_url=url,
            options={**(options or {}), "allow_loopback": allow_loopback},
        )
        query = urlencode(
            {
                "app_name": "partnersync",
                "scope": "read_write",
                "user_id": state,
                "return_url": f"{public}/connect/{platform}/return",
                "callback_url": f"{public}/connect/{platform}/callback/{state}",
            }
        )
        return f"{url}{spec.key_handover_path}?{query}", state

    def complete_key_handover(self, platform: str, state: str, keys: Mapping[str, Any]) -> str:
        """The store's POST of the keys: stored encrypted for the connection ``state`` started
        (once; an unknown, used or hour-old state is refused). Returns the account name."""
        if str(keys.get("user_id")) != state:
            raise AuthenticationError("the keys were posted for another connection")
        pending = self.store.pending_connects.claim(state)
        if pending is None or pending["platform"] != platform:
            raise AuthenticationError("no connection is waiting for these keys")
        spec = self.registry.get(platform)
        fields = {name: str(keys.get(name) or "") for name in spec.secret_fields}
        options = dict(pending["options"])
        allow_loopback = bool(options.pop("allow_loopback", False))
        self.add_account(
            name=pending["name"],
            platform=platform,
            base_url=pending["base_url"],
            secrets=fields,
            options=options,
            allow_loopback=allow_loopback,
        )
        return str(pending["name"])

    async def test_account(self, name: str) -> str:
        """One cheap authenticated call; returns what the platform says about the account. The
        outcome is remembered (the connect page shows it as the account's health)."""
        connector, _ = self.connector(name)
        try:
            async with connector:
                answer = await connector.check()
        except PartnersyncError as exc:
            await blocking(self.store.accounts.record_check, name, f"{type(exc).__name__}: {exc}")
            raise
        await blocking(self.store.accounts.record_check, name, None)
        return answer

    # -- sync ----------------------------------------------------------------------------
    def entities(self, name: str) -> list[str]:
        """Entities the account's connector can pull."""
        spec = self.registry.get(self.account(name)["platform"])
        return [e for e, cap in spec.connector.capabilities.entities.items() if cap.pull]

    async def pull(
        self,
        name: str,
        entity: str,
        *,
        full: bool = False,
        since: Any = None,
        on_page: Callable[[PullProgress], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> RunSummary:
        """Pull one entity of one account into the hub."""
        connector, spec = self.connector(name, transport=transport)
        connector.capabilities.require_pull(entity)
        mapper = spec.mappers.get(entity)
        if mapper is None:
            raise ConfigError(f"{spec.platform} has no import mapper for {entity!r}")
        overrides = self.project.account(name).mapping.get(entity)
        options = PullOptions(
            full=full,
            since=since,
            overlap=timedelta(seconds=self.project.overlap_seconds(name)),
        )
        engine = PullEngine(self.store, clock=self.clock, leases=self.leases, stop=self.stop)
        async with connector:
            summary = await engine.pull(
                connector, mapper, entity, options=options, overrides=overrides, on_page=on_page
            )
        log.info(
            "run %s %s/%s %s: %s", summary.run_id, name, entity, summary.status, summary.progress
        )
        return summary

    # -- push and jobs ---------------------------------------------------------------------
    def _job_for(
        self, target: str, entity: str, sources: Sequence[str]
    ) -> tuple[str, JobConfig] | None:
        """The one job pushing ``entity`` to ``target`` (from ``sources``, when named)."""
        matching = [
            (name, job)
            for name, job in self.project.config.jobs.items()
            if job.entity == entity
            and target in job.targets
            and (not sources or set(job.sources) == set(sources))
        ]
        if len(matching) > 1:
            names = ", ".join(name for name, _ in matching)
            raise ConfigError(
                f"jobs {names} all push {entity} to {target}, each with its own settings: run "
                "one with `partnersync sync run JOB`, or name the sources with --from"
            )
        return matching[0] if matching else None

    def push_options(
        self,
        target: str,
        entity: str,
        *,
        job: str | None = None,
        sources: Sequence[str] = (),
        dry_run: bool = False,
        force: bool = False,
        buffer: int | None = None,
        allocation: Decimal | None = None,
    ) -> PushOptions:
        """Options for pushing ``entity`` to ``target``: from the job named (or the one job
        that does it), then flags. Never another job's settings."""
        if job is not None:
            config = self.project.config.jobs.get(job)
            if config is None:
                raise ConfigError(f"no job {job!r}; jobs: {sorted(self.project.config.jobs)}")
            found: tuple[str, JobConfig] | None = (job, config)
        else:
            found = self._job_for(target, entity, sources)
        name, config = found if found else (None, None)
        chosen = tuple(sources) or (tuple(config.sources) if config else ())
        if not chosen:
            raise ConfigError(
                f"no source for {entity} to {target}: pass --from ACCOUNT or define a job"
            )
        for account in chosen:
            self.account(account)
        return PushOptions(
            sources=chosen,
            dry_run=dry_run,
            force=force,
            buffer=buffer if buffer is not None else (config.buffer if config else 0),
            allocation=allocation
            if allocation is not None
            else (
                config.allocation_by_target.get(target, config.allocation) if config else Decimal(1)
            ),
            locations=dict(config.locations) if config else {},
            max_drastic_share=config.max_drastic_share if config else 0.2,
            ownership=dict(config.ownership) if config else {},
            default_owner=config.default_owner if config else "hub",
            job=name,
            targets=tuple(config.targets) if config else (target,),
        )

    async def push(
        self,
        target: str,
        entity: str,
        options: PushOptions,
        *,
        refresh: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> PushSummary:
        """Push hub state of ``entity`` to ``target``.

        ``refresh`` first pulls what the target holds (incrementally), so the plan compares
        against the platform as it is now; a push never writes over what it has not read.
        """
        state = TARGET_STATE.get(entity)
        if refresh and state is not None:
            await self._refresh(target, state, transport)
        connector, spec = self.connector(target, transport=transport)
        engine = PushEngine(self.store, clock=self.clock, leases=self.leases, stop=self.stop)
        async with connector:
            summary = await engine.push(
                connector,
                entity,
                options,
                target_mapper=spec.mappers.get("inventory"),
                export_mapper=spec.export_mappers.get(entity),
            )
        log.info("push run %s %s/%s %s", summary.run_id, target, entity, summary.status)
        return summary

    async def _refresh(
        self, target: str, entity: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> RunSummary:
        summary = await self.pull(target, entity, transport=transport)
        if summary.status == "failed":
            raise ConnectorError(
                f"could not read {target}'s {entity} before pushing, so nothing was written: "
                f"{summary.error}"
            )
        return summary

    async def run_job(
        self, name: str, *, dry_run: bool = False, force: bool = False, trigger: str = "manual"
    ) -> list[RunSummary | PushSummary]:
        """Pull the job's sources, refresh its targets, push to each target with the job's
        own settings. The job's lease is held throughout: AlreadyRunningError at once while the
        job runs anywhere else (cron mode)."""
        job = self.validate_job(name)  # before anything runs
        async with self.leases.hold(job_scope(name), fence=False):
            job_run = await blocking(
                self.store.job_runs.start, name, holder=self.leases.holder, trigger=trigger
            )
            results: list[RunSummary | PushSummary] = []
            status, error = "failed", None
            try:
                await self._run_job(name, job, results, dry_run=dry_run, force=force)
                status = worst_status([r.status for r in results])
                error = next((r.error for r in results if r.error), None)
            except PartnersyncError as exc:
                error = f"{type(exc).__name__}: {exc}"
                raise
            except BaseException as exc:
                status, error = "interrupted", f"{type(exc).__name__}"
                raise
            finally:
                self.store.job_runs.finish(
                    job_run, status=status, run_ids=[r.run_id for r in results], error=error
                )
            return results

    async def _run_job(
        self,
        name: str,
        job: JobConfig,
        results: list[RunSummary | PushSummary],
        *,
        dry_run: bool,
        force: bool,
    ) -> None:
        if job.pull_sources:
            await self._pull_sources(job, results)
            if self.stop.requested:
                return
        state = TARGET_STATE[job.entity]
        for target in job.targets:
            if self.stop.requested:
                return
            if job.refresh_targets and state is not None:
                results.append(await self._refresh(target, state))
            options = self.push_options(target, job.entity, job=name, dry_run=dry_run, force=force)
            results.append(await self.push(target, job.entity, options, refresh=False))

    async def _pull_sources(self, job: JobConfig, results: list[RunSummary | PushSummary]) -> None:
        """Pull every source of ``job``, ``sync.concurrent_pulls`` at a time, adding their
        summaries to ``results`` in the sources' order. A source that raises stops the job:
        pulls under way finish (each commits its own pages), none starts after it, and the
        error is raised once they have."""
        limiter = anyio.CapacityLimiter(self.project.config.sync.concurrent_pulls)
        summaries: dict[str, RunSummary] = {}
        errors: list[Exception] = []

        async def pull_one(source: str) -> None:
            async with limiter:
                if self.stop.requested or errors:
                    return
                try:
                    summaries[source] = await self.pull(source, job.entity)
                except Exception as exc:  # raised once the pulls under way have finished
                    errors.append(exc)

        async with anyio.create_task_group() as group:
            for source in job.sources:
                group.start_soon(pull_one, source)
        results.extend(summaries[s] for s in job.sources if s in summaries)
        if errors:
            raise errors[0]

    async def replay(self, letter_ids: Sequence[int]) -> list[tuple[int, str]]:
        """Retry dead letters from the current state; returns (id, what happened) for each.

        Pull letters: only the newest letter of a record is mapped again, and it is stored only
        if the hub holds nothing newer. Push letters: the write is planned again from the
        current hub and platform state (never its old snapshot re-sent).
        """
        letters = sorted(
            (self.store.dead_letters.get(i) for i in letter_ids), key=lambda d: d["id"]
        )
        newest: dict[tuple[str, str, str | None], int] = {}
        for letter in letters:
            if letter["direction"] != "push" and not letter["resolved_at"]:
                newest[(letter["account"], letter["entity"], letter["external_id"])] = letter["id"]
        outcomes: list[tuple[int, str]] = []
        replans: dict[tuple[str, str, str | None, tuple[str, ...]], None] = {}
        for letter in letters:
            letter_id = int(letter["id"])
            record = (letter["account"], letter["entity"], letter["external_id"])
            if letter["resolved_at"]:
                outcomes.append((letter_id, "already resolved"))
            elif letter["direction"] == "push":
                if letter["outbox_id"]:
                    _, _, entry = self.store.outbox.entry(int(letter["outbox_id"]))
                    if entry.open:
                        self.store.outbox.mark([entry.id], "superseded")
                    payload = entry.payload
                else:  # a record the push could not place
                    payload = self.store.dead_letters.payload(letter_id)
                described = (payload.get("_options") if isinstance(payload, dict) else None) or {}
                if described.get("sources"):
                    job, sources = described.get("job"), tuple(described["sources"])
                    replans[(letter["account"], letter["entity"], job, sources)] = None
                    outcomes.append((letter_id, "planned again from the current state"))
                else:
                    outcomes.append((letter_id, "dismissed: the next push plans it again"))
                self.store.dead_letters.resolve(letter_id)
            elif newest[record] != letter_id:
                self.store.dead_letters.resolve(letter_id)
                outcomes.append(
                    (letter_id, f"dismissed: dead letter {newest[record]} holds a newer version")
                )
            else:
                outcomes.append((letter_id, await self._replay_pull(letter)))
        for target, entity, job, sources in replans:
            known_job = job if job in self.project.config.jobs else None
            options = self.push_options(target, entity, job=known_job, sources=sources)
            summary = await self.push(target, entity, options)
            outcomes.append((0, f"{target}/{entity} push run {summary.run_id}: {summary.status}"))
        return outcomes

    async def _replay_pull(self, letter: dict[str, Any]) -> str:
        account, entity = letter["account"], letter["entity"]
        connector, spec = self.connector(account)
        async with connector:
            await connector.prepare()
            context = MapContext(account, connector.platform, connector.mapping_settings())
        mapper = spec.mappers[entity](context, self.project.account(account).mapping.get(entity))
        raw = self.store.dead_letters.payload(int(letter["id"]))
        try:
            record = mapper.map(raw)
        except MappingError as exc:
            return f"still fails: field {exc.field!r}: {exc.reason}"
        data = record.model_dump_json().encode()
        stamp = getattr(record, "updated_at", None)
        held = self.store.records.find(account, entity, record.origin.external_id)
        held_stamp = parse_cursor(held["source_updated_at"]) if held else None
        if stamp is not None and held_stamp is not None and held_stamp > stamp:
            self.store.dead_letters.resolve(int(letter["id"]))
            return f"dismissed: the hub already holds a newer version (updated {held_stamp})"
        run_id = self.store.runs.start(
            account=account,
            entity=entity,
            direction="pull",
            mode="replay",
            since=None,
            cursor_before=None,
        )
        self.store.records.commit_page(
            run_id=run_id,
            account=account,
            entity=entity,
            page=0,
            requests=0,
            records=[
                MappedRecord(
                    record.origin.external_id,
                    data,
                    content_hash(data),
                    stamp.isoformat() if stamp else None,
                    letter["source_ref"],
                )
            ],
            dead_letters=[],
            out_of_window=0,
            cursor=None,
        )
        self.store.runs.finish(run_id, status="succeeded", cursor_after=None)
        self.store.dead_letters.resolve(int(letter["id"]))
        return f"mapped and stored (run {run_id})"

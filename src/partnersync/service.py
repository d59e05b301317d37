"""The application facade the CLI (and embedding code) calls: wires project, vault, store,
registry, connectors and the engine together. No business rules live in ``cli.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import httpx

from partnersync.auth.vault import Vault
from partnersync.clock import Clock, SystemClock
from partnersync.config import Project, validate_base_url, validate_directory
from partnersync.connectors.base import AccountInfo, Connector, ConnectorSpec
from partnersync.connectors.registry import ConnectorRegistry
from partnersync.errors import ConfigError
from partnersync.logs import RedactingFilter
from partnersync.sync.engine import PullEngine, PullOptions, PullProgress, RunSummary
from partnersync.sync.store import HubStore

log = logging.getLogger("partnersync")


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
        self.store.save_account(
            name=name,
            platform=platform,
            base_url=url,
            api_version=api_version or spec.default_api_version,
            options=stored_options,
            secrets=dict(secrets),
        )
        log.info("account %s added (%s at %s)", name, platform, url)

    @staticmethod
    def _validate_location(spec: ConnectorSpec, url: str, *, allow_loopback: bool) -> str:
        if spec.location == "directory":
            return validate_directory(url)
        return validate_base_url(url, allow_loopback=allow_loopback)

    def account(self, name: str) -> dict[str, Any]:
        """Stored account settings (no secrets); ConfigError if unknown."""
        account = self.store.get_account(name)
        if account is None:
            known = [a["name"] for a in self.store.list_accounts()]
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
        secrets = self.store.account_secrets(name)
        if self.redactor is not None:
            self.redactor.register(*secrets.values())
        info = AccountInfo(
            name=name,
            platform=account["platform"],
            base_url=account["base_url"],
            api_version=account["api_version"],
            options=options,
        )
        connector = spec.connector(
            info, auth=spec.auth(secrets), transport=transport, clock=self.clock
        )
        return connector, spec

    async def test_account(self, name: str) -> str:
        """One cheap authenticated call; returns what the platform says about the account."""
        connector, _ = self.connector(name)
        async with connector:
            return await connector.check()

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
        engine = PullEngine(self.store, clock=self.clock)
        async with connector:
            summary = await engine.pull(
                connector, mapper, entity, options=options, overrides=overrides, on_page=on_page
            )
        log.info(
            "run %s %s/%s %s: %s", summary.run_id, name, entity, summary.status, summary.progress
        )
        return summary

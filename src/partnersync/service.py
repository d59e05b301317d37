"""The application facade the CLI (and embedding code) calls: wires project, vault, store,
registry, connectors and the engine together. No business rules live in ``cli.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from partnersync.auth.vault import Vault
from partnersync.clock import Clock, SystemClock
from partnersync.config import Project, validate_base_url, validate_directory
from partnersync.connectors.base import AccountInfo, Connector, ConnectorSpec
from partnersync.connectors.registry import ConnectorRegistry
from partnersync.errors import ConfigError, MappingError
from partnersync.logs import RedactingFilter
from partnersync.mapping.mapper import MapContext
from partnersync.sync.engine import PullEngine, PullOptions, PullProgress, RunSummary
from partnersync.sync.push import TARGET_STATE, PushEngine, PushOptions, PushSummary
from partnersync.sync.store import HubStore, MappedRecord, content_hash

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

    # -- push and jobs ---------------------------------------------------------------------
    def push_options(
        self,
        target: str,
        entity: str,
        *,
        sources: Sequence[str] = (),
        dry_run: bool = False,
        force: bool = False,
        buffer: int | None = None,
        allocation: Decimal | None = None,
    ) -> PushOptions:
        """Options for pushing ``entity`` to ``target``: from the job that does it, then flags."""
        job = next(
            (
                j
                for j in self.project.config.jobs.values()
                if j.entity == entity and target in j.targets
            ),
            None,
        )
        chosen = tuple(sources) or (tuple(job.sources) if job else ())
        if not chosen:
            raise ConfigError(
                f"no source for {entity} to {target}: pass --from ACCOUNT or define a job"
            )
        for name in chosen:
            self.account(name)
        return PushOptions(
            sources=chosen,
            dry_run=dry_run,
            force=force,
            buffer=buffer if buffer is not None else (job.buffer if job else 0),
            allocation=allocation
            if allocation is not None
            else (job.allocation_by_target.get(target, job.allocation) if job else Decimal(1)),
            locations=dict(job.locations) if job else {},
            max_drastic_share=job.max_drastic_share if job else 0.2,
            ownership=dict(job.ownership) if job else {},
            default_owner=job.default_owner if job else "hub",
        )

    async def push(
        self,
        target: str,
        entity: str,
        options: PushOptions,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> PushSummary:
        """Push hub state of ``entity`` to ``target``."""
        connector, spec = self.connector(target, transport=transport)
        engine = PushEngine(self.store, clock=self.clock)
        async with connector:
            summary = await engine.push(
                connector, entity, options, target_mapper=spec.mappers.get("inventory")
            )
        log.info("push run %s %s/%s %s", summary.run_id, target, entity, summary.status)
        return summary

    async def run_job(
        self, name: str, *, dry_run: bool = False, force: bool = False
    ) -> list[RunSummary | PushSummary]:
        """Pull the job's sources, refresh its targets, push to each target."""
        job = self.project.config.jobs.get(name)
        if job is None:
            raise ConfigError(f"no job {name!r}; jobs: {sorted(self.project.config.jobs)}")
        results: list[RunSummary | PushSummary] = []
        if job.pull_sources:
            for source in job.sources:
                results.append(await self.pull(source, job.entity))
        state = TARGET_STATE[job.entity]
        for target in job.targets:
            if job.refresh_targets and state is not None:
                results.append(await self.pull(target, state))
            options = self.push_options(target, job.entity, dry_run=dry_run, force=force)
            results.append(await self.push(target, job.entity, options))
        return results

    async def replay(self, letter_ids: Sequence[int]) -> list[tuple[int, str]]:
        """Retry dead letters; returns (id, what happened) for each."""
        outcomes: list[tuple[int, str]] = []
        reopened: set[tuple[str, str]] = set()
        for letter_id in letter_ids:
            letter = self.store.get_dead_letter(letter_id)
            if letter["resolved_at"]:
                outcomes.append((letter_id, "already resolved"))
            elif letter["direction"] == "push" and letter["outbox_id"]:
                reopened.add(self.store.reopen_outbox(int(letter["outbox_id"])))
                self.store.resolve_dead_letter(letter_id)
                outcomes.append((letter_id, "write queued again"))
            elif letter["direction"] == "push":
                self.store.resolve_dead_letter(letter_id)
                outcomes.append((letter_id, "dismissed: the next push plans it again"))
            else:
                outcomes.append((letter_id, await self._replay_pull(letter)))
        for target, entity in sorted(reopened):
            connector, _ = self.connector(target)
            async with connector:
                summary = await PushEngine(self.store, clock=self.clock).send_open(
                    connector, entity, PushOptions()
                )
            outcomes.append((0, f"{target}/{entity} replay run {summary.run_id}: {summary.status}"))
        return outcomes

    async def _replay_pull(self, letter: dict[str, Any]) -> str:
        account, entity = letter["account"], letter["entity"]
        connector, spec = self.connector(account)
        async with connector:
            await connector.prepare()
            context = MapContext(account, connector.platform, connector.mapping_settings())
        mapper = spec.mappers[entity](context, self.project.account(account).mapping.get(entity))
        raw = self.store.dead_letter_payload(int(letter["id"]))
        try:
            record = mapper.map(raw)
        except MappingError as exc:
            return f"still fails: field {exc.field!r}: {exc.reason}"
        data = record.model_dump_json().encode()
        stamp = getattr(record, "updated_at", None)
        run_id = self.store.start_run(
            account=account,
            entity=entity,
            direction="pull",
            mode="replay",
            since=None,
            cursor_before=None,
        )
        self.store.commit_page(
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
        self.store.finish_run(run_id, status="succeeded", cursor_after=None)
        self.store.resolve_dead_letter(int(letter["id"]))
        return f"mapped and stored (run {run_id})"

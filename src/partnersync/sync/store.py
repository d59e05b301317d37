"""The hub store: SQLite (WAL) by default, PostgreSQL for shared deployments.

Schema changes go through Alembic (``sync/migrations``); :meth:`HubStore.open` upgrades to head.
Each page of a pull is committed by :meth:`HubStore.commit_page` in **one transaction** together
with its dead letters, the run's counters and the advanced cursor (DESIGN §4), so a crash at any
point re-reads at most one page and never skips a record. SQLAlchemy errors are translated into
:class:`~partnersync.errors.StoreError` here (STYLE habit 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, func, select, update
from sqlalchemy.exc import SQLAlchemyError

from partnersync.auth.vault import Vault
from partnersync.errors import ConfigError, StoreError
from partnersync.sync.binder import Binder
from partnersync.sync.tables import (
    AccountRow,
    BaselineRow,
    BindingRow,
    ConflictRow,
    CursorRow,
    DeadLetterRow,
    LinkRow,
    OutboxRow,
    RecordRow,
    RunRow,
)

PII_ENTITIES = frozenset({"orders"})
"""Entities whose canonical JSON holds personal data and is encrypted at rest."""

_accounts = AccountRow.__table__  # type: ignore[attr-defined]
_records = RecordRow.__table__  # type: ignore[attr-defined]
_links = LinkRow.__table__  # type: ignore[attr-defined]
_cursors = CursorRow.__table__  # type: ignore[attr-defined]
_runs = RunRow.__table__  # type: ignore[attr-defined]
_dead = DeadLetterRow.__table__  # type: ignore[attr-defined]
_bindings = BindingRow.__table__  # type: ignore[attr-defined]
_outbox = OutboxRow.__table__  # type: ignore[attr-defined]
_baselines = BaselineRow.__table__  # type: ignore[attr-defined]
_conflicts = ConflictRow.__table__  # type: ignore[attr-defined]


def _dead_letter_aad(account: str, entity: str, external_id: str | None) -> str:
    return f"dead_letter:{account}:{entity}:{external_id or ''}"


def utcnow_iso() -> str:
    """Now, as stored."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class MappedRecord:
    """A canonical record ready to store."""

    external_id: str
    data: bytes
    content_hash: str
    source_updated_at: str | None
    source_ref: str | None = None
    handle: str | None = None
    """What a write to the record on its platform addresses (kept by the binder)."""


@dataclass(frozen=True)
class DeadLetter:
    """A record that failed mapping, with the raw payload and why."""

    external_id: str | None
    field: str
    reason: str
    error_class: str
    payload: bytes
    source_ref: str | None = None


@dataclass(frozen=True)
class HubRecord:
    """One account's copy of a record as the hub holds it."""

    account: str
    external_id: str
    canonical_key: str
    data: Any
    source_ref: str | None
    handle: str | None = None


@dataclass(frozen=True)
class OutboxEntry:
    """An outbox row as read back."""

    id: int
    canonical_key: str
    idempotency_key: str
    status: str
    payload: Any
    batch_key: str | None
    attempts: int
    source_ref: str | None

    @property
    def open(self) -> bool:
        """Not finished: waiting to be sent, or sent with no answer yet."""
        return self.status in OPEN_OUTBOX


OPEN_OUTBOX = ("pending", "sending")
"""Outbox statuses of rows still to finish; done, dead and superseded rows have ended."""


@dataclass(frozen=True)
class PageOutcome:
    """What one committed page changed in the hub."""

    created: int
    updated: int
    unchanged: int
    dead_lettered: int


def content_hash(data: bytes) -> str:
    """SHA-256 of canonical JSON bytes."""
    return hashlib.sha256(data).hexdigest()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get WAL, a busy timeout and foreign keys."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigError(f"cannot use database URL: {type(exc).__name__}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class HubStore:
    """All hub reads and writes; one instance per process, safe to share between threads."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.engine = engine
        self.vault = vault

    @classmethod
    def open(cls, url: str, vault: Vault) -> HubStore:
        """Connect and bring the schema to the newest migration."""
        store = cls(make_engine(url), vault)
        store.migrate()
        return store

    def migrate(self) -> None:
        """Run Alembic migrations up to head."""
        # Imported here: Alembic costs ~0.2 s of start-up that read-only commands never need.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("partnersync.sync").joinpath("migrations"))
        )
        with self._translate(), self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        """Dispose of pooled connections."""
        self.engine.dispose()

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StoreError(
                f"hub database error: {type(exc).__name__}: {exc.args[0]!s:.300}"
            ) from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; SQLAlchemy errors become StoreError."""
        with self._translate(), self.engine.begin() as connection:
            yield connection

    # -- accounts ------------------------------------------------------------------------
    def save_account(
        self,
        *,
        name: str,
        platform: str,
        base_url: str,
        api_version: str | None,
        options: dict[str, Any],
        secrets: dict[str, str],
    ) -> None:
        """Create or replace an account; secrets are encrypted, bound to the account name."""
        sealed = self.vault.encrypt(orjson.dumps(secrets).decode(), f"account:{name}")
        row = {
            "name": name,
            "platform": platform,
            "base_url": base_url,
            "api_version": api_version,
            "options": orjson.dumps(options).decode(),
            "secrets": sealed,
            "created_at": utcnow_iso(),
        }
        with self.transaction() as connection:
            connection.execute(_accounts.delete().where(_accounts.c.name == name))
            connection.execute(_accounts.insert(), [row])

    def get_account(self, name: str) -> dict[str, Any] | None:
        """An account's settings, without its secrets."""
        with self.transaction() as connection:
            row = connection.execute(select(_accounts).where(_accounts.c.name == name)).first()
        if row is None:
            return None
        return {
            "name": row.name,
            "platform": row.platform,
            "base_url": row.base_url,
            "api_version": row.api_version,
            "options": orjson.loads(row.options),
            "created_at": row.created_at,
        }

    def account_secrets(self, name: str) -> dict[str, str]:
        """Decrypt an account's secrets (for building its auth flow; never print them)."""
        with self.transaction() as connection:
            sealed = connection.execute(
                select(_accounts.c.secrets).where(_accounts.c.name == name)
            ).scalar_one_or_none()
        if sealed is None:
            raise ConfigError(f"no account named {name!r}")
        result: dict[str, str] = orjson.loads(self.vault.decrypt(sealed, f"account:{name}"))
        return result

    def list_accounts(self) -> list[dict[str, Any]]:
        """Every account, without secrets."""
        with self.transaction() as connection:
            names = connection.execute(select(_accounts.c.name).order_by(_accounts.c.name))
            ordered = [row.name for row in names]
        return [account for name in ordered if (account := self.get_account(name))]

    def remove_account(self, name: str) -> bool:
        """Delete an account (its records and history stay); False if there was none."""
        with self.transaction() as connection:
            result = connection.execute(_accounts.delete().where(_accounts.c.name == name))
        return bool(result.rowcount)

    # -- cursors and runs ----------------------------------------------------------------
    def get_cursor(self, account: str, entity: str) -> str | None:
        """The stored cursor value, if any."""
        with self.transaction() as connection:
            value: str | None = connection.execute(
                select(_cursors.c.value).where(
                    _cursors.c.account == account, _cursors.c.entity == entity
                )
            ).scalar_one_or_none()
        return value

    @staticmethod
    def _write_cursor(
        connection: Connection, account: str, entity: str, value: str, run_id: int
    ) -> None:
        values = {"value": value, "updated_at": utcnow_iso(), "run_id": run_id}
        changed = connection.execute(
            update(_cursors)
            .where(_cursors.c.account == account, _cursors.c.entity == entity)
            .values(**values)
        )
        if not changed.rowcount:
            connection.execute(
                _cursors.insert(), [{"account": account, "entity": entity, **values}]
            )

    def set_cursor(self, account: str, entity: str, value: str, run_id: int) -> None:
        """Store a cursor on its own (end-of-run checkpoints)."""
        with self.transaction() as connection:
            self._write_cursor(connection, account, entity, value, run_id)

    def start_run(
        self,
        *,
        account: str,
        entity: str,
        direction: str,
        mode: str,
        since: str | None,
        cursor_before: str | None,
    ) -> int:
        """Record a run as ``running``; returns its id."""
        with self.transaction() as connection:
            result = connection.execute(
                _runs.insert().returning(_runs.c.id),
                [
                    {
                        "account": account,
                        "entity": entity,
                        "direction": direction,
                        "mode": mode,
                        "status": "running",
                        "started_at": utcnow_iso(),
                        "since": since,
                        "cursor_before": cursor_before,
                    }
                ],
            )
            return int(result.scalar_one())

    def finish_run(
        self, run_id: int, *, status: str, cursor_after: str | None, error: str | None = None
    ) -> None:
        """Close a run with its final status."""
        with self.transaction() as connection:
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(
                    status=status,
                    finished_at=utcnow_iso(),
                    cursor_after=cursor_after,
                    error=error,
                )
            )

    def add_run_requests(self, run_id: int, requests: int) -> None:
        """Count requests that produced no page (e.g. the shop lookup)."""
        with self.transaction() as connection:
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(requests=_runs.c.requests + requests)
            )

    # -- the page commit -----------------------------------------------------------------
    def commit_page(
        self,
        *,
        run_id: int,
        account: str,
        entity: str,
        page: int,
        requests: int,
        records: Sequence[MappedRecord],
        dead_letters: Sequence[DeadLetter],
        out_of_window: int,
        cursor: str | None,
    ) -> PageOutcome:
        """Upsert a page, its dead letters, the run's counts and the cursor, atomically."""
        now = utcnow_iso()
        with self.transaction() as connection:
            binder = Binder(connection, now)
            latest: dict[str, MappedRecord] = {}
            for record in records:
                latest[record.external_id] = record  # a page repeating a record keeps the last
            keys = binder.bind_all(
                account, entity, latest, {i: r.handle for i, r in latest.items()}
            )
            existing = {
                row.canonical_key: row.content_hash
                for row in connection.execute(
                    select(_records.c.canonical_key, _records.c.content_hash).where(
                        _records.c.entity == entity,
                        _records.c.canonical_key.in_(list(keys.values())),
                    )
                )
            }
            inserts: list[dict[str, Any]] = []
            created = updated = unchanged = 0
            for external_id, record in latest.items():
                key = keys[external_id]
                stored = self._seal(entity, key, record.data)
                previous = existing.get(key)
                if previous == record.content_hash:
                    unchanged += 1
                    continue
                if previous is None:
                    created += 1
                    inserts.append(
                        {
                            "entity": entity,
                            "canonical_key": key,
                            "content_hash": record.content_hash,
                            "data": stored,
                            "source_updated_at": record.source_updated_at,
                            "created_at": now,
                            "updated_at": now,
                            "created_run_id": run_id,
                            "updated_run_id": run_id,
                            "source_ref": record.source_ref,
                        }
                    )
                else:
                    updated += 1
                    connection.execute(
                        update(_records)
                        .where(_records.c.entity == entity, _records.c.canonical_key == key)
                        .values(
                            content_hash=record.content_hash,
                            data=stored,
                            source_updated_at=record.source_updated_at,
                            updated_at=now,
                            updated_run_id=run_id,
                            source_ref=record.source_ref,
                        )
                    )
            if inserts:
                connection.execute(_records.insert(), inserts)
            fresh = self._new_dead_letters(connection, account, entity, dead_letters)
            if fresh:
                connection.execute(
                    _dead.insert(),
                    [
                        {
                            "run_id": run_id,
                            "account": account,
                            "entity": entity,
                            "external_id": letter.external_id,
                            "field": letter.field,
                            "reason": letter.reason,
                            "error_class": letter.error_class,
                            "page": page,
                            "payload": self.vault.encrypt(
                                letter.payload.decode("utf-8", "replace"),
                                _dead_letter_aad(account, entity, letter.external_id),
                            ),
                            "payload_hash": content_hash(letter.payload),
                            "created_at": now,
                            "source_ref": letter.source_ref,
                        }
                        for letter in fresh
                    ],
                )
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(
                    pages=_runs.c.pages + 1,
                    requests=_runs.c.requests + requests,
                    fetched=_runs.c.fetched + len(records) + len(dead_letters),
                    created=_runs.c.created + created,
                    updated=_runs.c.updated + updated,
                    unchanged=_runs.c.unchanged + unchanged,
                    dead_lettered=_runs.c.dead_lettered + len(dead_letters),
                    out_of_window=_runs.c.out_of_window + out_of_window,
                )
            )
            if cursor is not None:
                self._write_cursor(connection, account, entity, cursor, run_id)
        return PageOutcome(created, updated, unchanged, len(dead_letters))

    @staticmethod
    def _new_dead_letters(
        connection: Connection, account: str, entity: str, letters: Sequence[DeadLetter]
    ) -> list[DeadLetter]:
        """Letters not already open with the same payload (a re-read must not pile them up)."""
        if not letters:
            return []
        open_rows = connection.execute(
            select(_dead.c.external_id, _dead.c.payload_hash).where(
                _dead.c.account == account,
                _dead.c.entity == entity,
                _dead.c.resolved_at.is_(None),
                _dead.c.payload_hash.in_([content_hash(letter.payload) for letter in letters]),
            )
        )
        seen = {(row.external_id, row.payload_hash) for row in open_rows}
        fresh = []
        for letter in letters:
            key = (letter.external_id, content_hash(letter.payload))
            if key not in seen:
                seen.add(key)
                fresh.append(letter)
        return fresh

    def _seal(self, entity: str, key: str, data: bytes) -> str:
        if entity in PII_ENTITIES:
            return self.vault.encrypt(data.decode(), f"record:{entity}:{key}")
        return data.decode()

    def _unseal(self, entity: str, key: str, stored: str) -> Any:
        if entity in PII_ENTITIES:
            stored = self.vault.decrypt(stored, f"record:{entity}:{key}")
        return orjson.loads(stored)

    # -- reads ---------------------------------------------------------------------------
    def list_runs(self, *, account: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Newest runs first."""
        query = select(_runs).order_by(_runs.c.id.desc()).limit(limit)
        if account:
            query = query.where(_runs.c.account == account)
        with self.transaction() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        """One run."""
        with self.transaction() as connection:
            row = connection.execute(select(_runs).where(_runs.c.id == run_id)).first()
        return dict(row._mapping) if row else None

    def count_records(self, entity: str | None = None) -> int:
        """Canonical records stored (of one entity, or all)."""
        query = select(func.count()).select_from(_records)
        if entity:
            query = query.where(_records.c.entity == entity)
        with self.transaction() as connection:
            return int(connection.execute(query).scalar_one())

    def find_record(self, account: str, entity: str, external_id: str) -> dict[str, Any] | None:
        """A canonical record by the account's external id, decrypted."""
        with self.transaction() as connection:
            key = (
                Binder(connection, "").to_internal(account, entity, [external_id]).get(external_id)
            )
            if key is None:
                return None
            row = connection.execute(
                select(_records).where(_records.c.entity == entity, _records.c.canonical_key == key)
            ).first()
        if row is None:
            return None
        return {
            "canonical_key": key,
            "entity": entity,
            "content_hash": row.content_hash,
            "updated_at": row.updated_at,
            "source_updated_at": row.source_updated_at,
            "data": self._unseal(entity, key, row.data),
        }

    def iter_records(self, entity: str) -> Iterator[dict[str, Any]]:
        """Every canonical record of ``entity``, decrypted (streams; for exports and tests)."""
        with self.transaction() as connection:
            rows = connection.execution_options(yield_per=500).execute(
                select(_records.c.canonical_key, _records.c.data).where(_records.c.entity == entity)
            )
            for row in rows:
                yield self._unseal(entity, row.canonical_key, row.data)

    def list_dead_letters(
        self, *, account: str | None = None, entity: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Open dead letters, newest first, without their payloads."""
        query = (
            select(_dead)
            .where(_dead.c.resolved_at.is_(None))
            .order_by(_dead.c.id.desc())
            .limit(limit)
        )
        if account:
            query = query.where(_dead.c.account == account)
        if entity:
            query = query.where(_dead.c.entity == entity)
        with self.transaction() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        for row in rows:
            row.pop("payload")
        return rows

    def dead_letter_payload(self, letter_id: int) -> Any:
        """The decrypted raw payload of one dead letter."""
        with self.transaction() as connection:
            row = connection.execute(select(_dead).where(_dead.c.id == letter_id)).first()
        if row is None:
            raise StoreError(f"no dead letter {letter_id}")
        return orjson.loads(
            self.vault.decrypt(
                row.payload, _dead_letter_aad(row.account, row.entity, row.external_id)
            )
        )

    # -- push: hub copies, bindings, baselines, outbox, conflicts ---------------------------
    def records_of(
        self, account: str, entity: str, *, external_ids: Sequence[str] | None = None
    ) -> list[HubRecord]:
        """Records ``account`` contributed for ``entity`` (all, or these ids), decrypted."""
        query = (
            select(
                _links.c.external_id,
                _links.c.handle,
                _records.c.canonical_key,
                _records.c.data,
                _records.c.source_ref,
            )
            .join(
                _records,
                (_records.c.entity == _links.c.entity)
                & (_records.c.canonical_key == _links.c.canonical_key),
            )
            .where(_links.c.account == account, _links.c.entity == entity)
            .order_by(_links.c.id)
        )
        if external_ids is not None:
            query = query.where(_links.c.external_id.in_(list(external_ids)))
        with self.transaction() as connection:
            rows = connection.execute(query).all()
        return [
            HubRecord(
                account,
                row.external_id,
                row.canonical_key,
                self._unseal(entity, row.canonical_key, row.data),
                row.source_ref,
                row.handle,
            )
            for row in rows
        ]

    def get_binding(self, target: str, entity: str, canonical_key: str) -> str | None:
        """The target's id for a hub record we pushed (or adopted)."""
        with self.transaction() as connection:
            value: str | None = connection.execute(
                select(_bindings.c.external_id).where(
                    _bindings.c.target_account == target,
                    _bindings.c.entity == entity,
                    _bindings.c.canonical_key == canonical_key,
                )
            ).scalar_one_or_none()
        return value

    def bindings(self, target: str, entity: str) -> dict[str, str]:
        """Every binding of ``entity`` to ``target``: canonical key → the target's id."""
        with self.transaction() as connection:
            rows = connection.execute(
                select(_bindings.c.canonical_key, _bindings.c.external_id).where(
                    _bindings.c.target_account == target, _bindings.c.entity == entity
                )
            )
            return {row.canonical_key: row.external_id for row in rows}

    def baselines(self, target: str, entity: str) -> dict[str, dict[str, Any]]:
        """Every baseline of ``entity`` on ``target``, by canonical key."""
        with self.transaction() as connection:
            rows = connection.execute(
                select(_baselines.c.canonical_key, _baselines.c.data).where(
                    _baselines.c.target_account == target, _baselines.c.entity == entity
                )
            )
            return {row.canonical_key: dict(orjson.loads(row.data)) for row in rows}

    def complete_writes(
        self,
        target: str,
        entity: str,
        *,
        done: Sequence[int],
        result: str | None = None,
        bindings: Mapping[str, str] | None = None,
        baselines: Mapping[str, Any] | None = None,
        field_patches: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """In one transaction: outbox rows done, the target's ids bound to hub keys (replacing
        older bindings of either), the agreed baselines, and fields of the target's hub copies
        (by external id) set to what was written."""
        now = utcnow_iso()
        with self.transaction() as connection:
            if done:
                values: dict[str, Any] = {"status": "done", "updated_at": now}
                if result is not None:
                    values["result"] = result
                connection.execute(
                    update(_outbox).where(_outbox.c.id.in_(list(done))).values(**values)
                )
            for key, external_id in (bindings or {}).items():
                connection.execute(
                    _bindings.delete().where(
                        _bindings.c.target_account == target,
                        _bindings.c.entity == entity,
                        (_bindings.c.canonical_key == key)
                        | (_bindings.c.external_id == external_id),
                    )
                )
                connection.execute(
                    _bindings.insert(),
                    [
                        {
                            "target_account": target,
                            "entity": entity,
                            "canonical_key": key,
                            "external_id": external_id,
                            "created_at": now,
                        }
                    ],
                )
            if baselines:
                connection.execute(
                    _baselines.delete().where(
                        _baselines.c.target_account == target,
                        _baselines.c.entity == entity,
                        _baselines.c.canonical_key.in_(list(baselines)),
                    )
                )
                connection.execute(
                    _baselines.insert(),
                    [
                        {
                            "target_account": target,
                            "entity": entity,
                            "canonical_key": key,
                            "data": orjson.dumps(data, default=str).decode(),
                            "updated_at": now,
                        }
                        for key, data in baselines.items()
                    ],
                )
            if field_patches:
                self._patch_fields(connection, target, entity, field_patches, now)

    def _patch_fields(
        self,
        connection: Connection,
        account: str,
        entity: str,
        patches: Mapping[str, Mapping[str, Any]],
        now: str,
    ) -> None:
        keys = Binder(connection, now).to_internal(account, entity, patches)
        if not keys:
            return
        rows = connection.execute(
            select(_records.c.canonical_key, _records.c.data).where(
                _records.c.entity == entity, _records.c.canonical_key.in_(list(keys.values()))
            )
        ).all()
        stored = {row.canonical_key: row.data for row in rows}
        for external_id, key in keys.items():
            if key not in stored:
                continue
            data = {**self._unseal(entity, key, stored[key]), **patches[external_id]}
            raw = orjson.dumps(data)
            connection.execute(
                update(_records)
                .where(_records.c.entity == entity, _records.c.canonical_key == key)
                .values(data=self._seal(entity, key, raw), content_hash=content_hash(raw))
            )

    def enqueue(
        self,
        *,
        run_id: int,
        target: str,
        entity: str,
        writes: Sequence[tuple[str, str, str, Any, str | None, str]],
    ) -> list[OutboxEntry]:
        """Outbox rows for (key, operation, content hash, payload, source ref, fresh key).

        A row still open for the same key and content is the same attempt: it is returned as
        stored (with its idempotency key and state) and counted in this run. Otherwise a new
        row is added under the fresh key. Rows come back in the order of ``writes``.
        """
        now = utcnow_iso()
        keys = list(dict.fromkeys(w[0] for w in writes))
        with self.transaction() as connection:
            open_rows = connection.execute(
                select(_outbox).where(
                    _outbox.c.target_account == target,
                    _outbox.c.entity == entity,
                    _outbox.c.status.in_(OPEN_OUTBOX),
                    _outbox.c.canonical_key.in_(keys),
                )
            ).all()
            by_content = {(row.canonical_key, row.content_hash): row for row in open_rows}
            chosen: list[str] = []
            fresh = []
            for key, operation, digest, payload, source_ref, fresh_key in writes:
                row = by_content.get((key, digest))
                if row is not None:
                    chosen.append(row.idempotency_key)
                    continue
                chosen.append(fresh_key)
                fresh.append(
                    {
                        "run_id": run_id,
                        "target_account": target,
                        "entity": entity,
                        "canonical_key": key,
                        "operation": operation,
                        "idempotency_key": fresh_key,
                        "content_hash": digest,
                        "payload": self._seal_outbox(entity, fresh_key, payload),
                        "status": "pending",
                        "attempts": 0,
                        "source_ref": source_ref,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            if fresh:
                connection.execute(_outbox.insert(), fresh)
            if chosen:
                connection.execute(
                    update(_outbox)
                    .where(_outbox.c.idempotency_key.in_(chosen))
                    .values(run_id=run_id)
                )
            rows = connection.execute(
                select(_outbox).where(_outbox.c.idempotency_key.in_(chosen))
            ).all()
        by_key = {row.idempotency_key: row for row in rows}
        return [self._entry(entity, by_key[k]) for k in dict.fromkeys(chosen)]

    def _seal_outbox(self, entity: str, idempotency_key: str, payload: Any) -> str:
        text = orjson.dumps(payload, default=str).decode()
        if entity in PII_ENTITIES:
            return self.vault.encrypt(text, f"outbox:{idempotency_key}")
        return text

    def _entry(self, entity: str, row: Any) -> OutboxEntry:
        text = row.payload
        if entity in PII_ENTITIES:
            text = self.vault.decrypt(text, f"outbox:{row.idempotency_key}")
        return OutboxEntry(
            row.id,
            row.canonical_key,
            row.idempotency_key,
            row.status,
            orjson.loads(text),
            row.batch_key,
            row.attempts,
            row.source_ref,
        )

    def supersede_open(self, target: str, entity: str, keep: set[tuple[str, str]]) -> int:
        """End open rows of (target, entity) whose (key, content hash) is not in ``keep``:
        the state they aimed at is no longer wanted. Returns how many ended."""
        with self.transaction() as connection:
            rows = connection.execute(
                select(_outbox.c.id, _outbox.c.canonical_key, _outbox.c.content_hash).where(
                    _outbox.c.target_account == target,
                    _outbox.c.entity == entity,
                    _outbox.c.status.in_(OPEN_OUTBOX),
                )
            ).all()
            ended = [r.id for r in rows if (r.canonical_key, r.content_hash) not in keep]
            if ended:
                connection.execute(
                    update(_outbox)
                    .where(_outbox.c.id.in_(ended))
                    .values(status="superseded", updated_at=utcnow_iso())
                )
        return len(ended)

    def count_open_outbox(self, run_id: int) -> int:
        """Rows of a run still open (neither done, dead nor superseded)."""
        with self.transaction() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(_outbox)
                    .where(_outbox.c.run_id == run_id, _outbox.c.status.in_(OPEN_OUTBOX))
                ).scalar_one()
            )

    def latest_done_content(self, target: str, entity: str) -> dict[str, str]:
        """Hub key → content hash of the newest write of it ``target`` received."""
        with self.transaction() as connection:
            rows = connection.execute(
                select(_outbox.c.canonical_key, _outbox.c.content_hash)
                .where(
                    _outbox.c.target_account == target,
                    _outbox.c.entity == entity,
                    _outbox.c.status == "done",
                )
                .order_by(_outbox.c.id)
            )
            return {row.canonical_key: row.content_hash for row in rows}

    def mark_outbox(
        self,
        ids: Sequence[int],
        status: str,
        *,
        batch_key: str | None = None,
        result: str | None = None,
        error: str | None = None,
        attempt: bool = False,
    ) -> None:
        """Move rows to ``status`` (``sending`` is written before the request goes out)."""
        if not ids:
            return
        values: dict[str, Any] = {"status": status, "updated_at": utcnow_iso()}
        if batch_key is not None:
            values["batch_key"] = batch_key
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = error[:2000]
        if attempt:
            values["attempts"] = _outbox.c.attempts + 1
        with self.transaction() as connection:
            connection.execute(update(_outbox).where(_outbox.c.id.in_(list(ids))).values(**values))

    def outbox_entry(self, outbox_id: int) -> tuple[str, str, OutboxEntry]:
        """(target, entity, row) of one outbox row."""
        with self.transaction() as connection:
            row = connection.execute(select(_outbox).where(_outbox.c.id == outbox_id)).first()
        if row is None:
            raise StoreError(f"no outbox row {outbox_id}")
        return row.target_account, row.entity, self._entry(row.entity, row)

    def add_push_dead_letter(
        self,
        *,
        run_id: int,
        target: str,
        entity: str,
        entry: OutboxEntry,
        reason: str,
        error_class: str,
        operation: str,
    ) -> None:
        """A write the platform keeps refusing, with its message."""
        payload = orjson.dumps(entry.payload, default=str)
        with self.transaction() as connection:
            connection.execute(
                _dead.insert(),
                [
                    {
                        "run_id": run_id,
                        "account": target,
                        "entity": entity,
                        "external_id": entry.canonical_key,
                        "field": operation,
                        "reason": reason,
                        "error_class": error_class,
                        "page": 0,
                        "payload": self.vault.encrypt(
                            payload.decode(), _dead_letter_aad(target, entity, entry.canonical_key)
                        ),
                        "payload_hash": content_hash(payload),
                        "created_at": utcnow_iso(),
                        "source_ref": entry.source_ref,
                        "direction": "push",
                        "outbox_id": entry.id,
                    }
                ],
            )

    def add_problem(
        self,
        *,
        run_id: int,
        target: str,
        entity: str,
        key: str,
        reason: str,
        payload: Any,
        source_ref: str | None,
    ) -> None:
        """A record the push cannot place (e.g. an unknown SKU), as an open dead letter."""
        raw = orjson.dumps(payload, default=str)
        letter = DeadLetter(key, "target", reason, "PushProblem", raw, source_ref)
        with self.transaction() as connection:
            fresh = self._new_dead_letters(connection, target, entity, [letter])
            if fresh:
                connection.execute(
                    _dead.insert(),
                    [
                        {
                            "run_id": run_id,
                            "account": target,
                            "entity": entity,
                            "external_id": key,
                            "field": "target",
                            "reason": reason,
                            "error_class": "PushProblem",
                            "page": 0,
                            "payload": self.vault.encrypt(
                                raw.decode(), _dead_letter_aad(target, entity, key)
                            ),
                            "payload_hash": content_hash(raw),
                            "created_at": utcnow_iso(),
                            "source_ref": source_ref,
                            "direction": "push",
                        }
                    ],
                )

    def resolve_dead_letter(self, letter_id: int) -> None:
        """Mark a dead letter handled."""
        with self.transaction() as connection:
            connection.execute(
                update(_dead).where(_dead.c.id == letter_id).values(resolved_at=utcnow_iso())
            )

    def get_dead_letter(self, letter_id: int) -> dict[str, Any]:
        """One dead letter (without its payload)."""
        with self.transaction() as connection:
            row = connection.execute(select(_dead).where(_dead.c.id == letter_id)).first()
        if row is None:
            raise StoreError(f"no dead letter {letter_id}")
        letter = dict(row._mapping)
        letter.pop("payload")
        return letter

    def record_conflicts(
        self, run_id: int, target: str, entity: str, conflicts: Sequence[Any]
    ) -> None:
        """Store conflict notes (key, field, hub, platform, baseline, policy, winner)."""
        if not conflicts:
            return
        with self.transaction() as connection:
            connection.execute(
                _conflicts.insert(),
                [
                    {
                        "run_id": run_id,
                        "target_account": target,
                        "entity": entity,
                        "canonical_key": c.key,
                        "field": c.field,
                        "hub_value": _text(c.hub),
                        "platform_value": _text(c.platform),
                        "baseline_value": _text(c.baseline),
                        "policy": c.policy,
                        "winner": c.winner,
                        "created_at": utcnow_iso(),
                    }
                    for c in conflicts
                ],
            )

    def list_conflicts(self, run_id: int) -> list[dict[str, Any]]:
        """A run's conflicts."""
        with self.transaction() as connection:
            rows = connection.execute(
                select(_conflicts).where(_conflicts.c.run_id == run_id).order_by(_conflicts.c.id)
            )
            return [dict(row._mapping) for row in rows]

    def add_run_counts(self, run_id: int, **deltas: int) -> None:
        """Add to a run's counters."""
        if not deltas:
            return
        with self.transaction() as connection:
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(**{name: getattr(_runs.c, name) + value for name, value in deltas.items()})
            )


def _text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()

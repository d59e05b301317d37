"""The hub store's unit of work — one engine, one vault, one transaction at a time — and the
rows, records and helpers its repositories share.

SQLite (WAL) by default, PostgreSQL for shared deployments. Schema changes go through Alembic
(``sync/migrations``); :meth:`UnitOfWork.migrate` upgrades to head. SQLAlchemy errors are
translated into :class:`~partnersync.errors.StoreError` here (STYLE habit 1).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, text, update
from sqlalchemy.exc import SQLAlchemyError

from partnersync.auth.vault import Vault
from partnersync.errors import ConfigError, FencedOutError, StoreError
from partnersync.sync.tables import (
    AccountRow,
    BaselineRow,
    BindingRow,
    BudgetRow,
    ConflictRow,
    CursorRow,
    DeadLetterRow,
    JobRunRow,
    LeaseRow,
    LinkRow,
    OutboxRow,
    PendingConnectRow,
    RecordRow,
    RunRow,
    WebAdminRow,
    WebhookDeliveryRow,
    WebSessionRow,
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
_leases = LeaseRow.__table__  # type: ignore[attr-defined]
_job_runs = JobRunRow.__table__  # type: ignore[attr-defined]
_budgets = BudgetRow.__table__  # type: ignore[attr-defined]
_deliveries = WebhookDeliveryRow.__table__  # type: ignore[attr-defined]
_pending = PendingConnectRow.__table__  # type: ignore[attr-defined]
_web_admins = WebAdminRow.__table__  # type: ignore[attr-defined]
_web_sessions = WebSessionRow.__table__  # type: ignore[attr-defined]


@functools.cache
def head_revision() -> str:
    """The newest migration's revision id, read from the migration files (the one no other
    migration names as its ``down_revision``)."""
    versions = resources.files("partnersync.sync").joinpath("migrations").joinpath("versions")
    revisions: dict[str, str | None] = {}
    for entry in versions.iterdir():
        if not entry.name.endswith(".py") or entry.name.startswith("__"):
            continue
        source = entry.read_text()
        found = {
            name: value
            for name, value in re.findall(
                r'^(revision|down_revision) = "?([^"\n]*)"?$', source, re.M
            )
        }
        if "revision" in found:
            down = found.get("down_revision")
            revisions[found["revision"]] = None if down in (None, "None") else down
    (head,) = set(revisions) - {down for down in revisions.values() if down}
    return head


@dataclass(frozen=True)
class Fence:
    """A run's fencing token: the lease scope it holds and the epoch it was granted."""

    scope: str
    epoch: int


CURRENT_FENCE: ContextVar[Fence | None] = ContextVar("partnersync_fence", default=None)
"""The fence of the run the current task works for (copied into worker threads by anyio)."""


@contextmanager
def fenced(fence: Fence) -> Iterator[None]:
    """Every hub transaction opened inside (in this task and the threads it offloads to) first
    checks that ``fence`` is still current, and refuses to write otherwise."""
    token = CURRENT_FENCE.set(fence)
    try:
        yield
    finally:
        CURRENT_FENCE.reset(token)


def check_fence(connection: Connection, fence: Fence) -> None:
    """Refuse the transaction unless ``fence`` holds the scope's current, unreleased epoch.

    The check is a (no-op) UPDATE, so it takes the write lock on SQLite and the lease row's lock
    on PostgreSQL: a takeover waits for this transaction, and no write lands after it.
    """
    result = connection.execute(
        update(_leases)
        .where(
            _leases.c.scope == fence.scope,
            _leases.c.epoch == fence.epoch,
            _leases.c.released_at.is_(None),
        )
        .values(epoch=_leases.c.epoch)
    )
    if result.rowcount != 1:
        raise FencedOutError(
            f"{fence.scope}: this run's lease (epoch {fence.epoch}) was taken over by a later "
            "run; nothing more is written by this one"
        )


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


def _private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (0600) before anything writes to it; SQLite
    gives its -wal and -shm files the same mode."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get WAL, a busy timeout and foreign keys."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        _private_file(Path(url.removeprefix("sqlite:///")))
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise ConfigError(f"cannot use database URL: {type(exc).__name__}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _postgres_session)
    return engine


IDLE_IN_TRANSACTION_ENV = "PARTNERSYNC_PG_IDLE_TIMEOUT"
"""Seconds (default 30) PostgreSQL lets one of our sessions sit idle inside a transaction."""


def _postgres_session(dbapi_connection: Any, _record: Any) -> None:
    # A process paused mid-transaction (SIGSTOP, a frozen VM) would hold its row locks — the
    # lease row among them — for as long as it stays paused, and no successor could take its
    # lease over. Our transactions never wait on anyone between statements, so a session idle
    # inside one that long is such a process: PostgreSQL ends it and releases its locks (its
    # writes roll back; when it wakes, its connection is gone and it writes nothing).
    seconds = float(os.environ.get(IDLE_IN_TRANSACTION_ENV) or 30)
    with dbapi_connection.cursor() as cursor:
        cursor.execute(f"SET idle_in_transaction_session_timeout = {int(seconds * 1000)}")
    dbapi_connection.commit()


class UnitOfWork:
    """The engine and the vault every repository shares; what must be atomic runs in one
    :meth:`transaction` (the repositories' ``*_in`` helpers take its connection)."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.engine = engine
        self.vault = vault
        # SQLite lets one writer in at a time and makes the others poll its busy handler,
        # which is neither fair nor bounded by anything but busy_timeout: sixteen pulls of one
        # job (plus their heartbeats) committing at once saw "database is locked". In this
        # process they queue on a lock instead; other processes still meet the busy timeout.
        self._one_at_a_time: AbstractContextManager[Any] = (
            threading.RLock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    def migrate(self) -> None:
        """Run Alembic migrations up to head (nothing to do, and Alembic not even imported,
        when the hub is at head already: that costs every command ~0.15 s otherwise)."""
        try:
            with self.engine.connect() as connection:
                current = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar_one_or_none()
        except SQLAlchemyError:
            current = None  # a new hub: no version table yet
        if current is not None and current == head_revision():
            return
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
    def transaction(self, *, unfenced: bool = False) -> Iterator[Connection]:
        """One transaction; SQLAlchemy errors become StoreError. Inside :func:`fenced` it first
        checks the run's fence (``unfenced`` for the run's own bookkeeping: its lease, its
        heartbeat, its final status)."""
        with self._one_at_a_time, self._translate(), self.engine.begin() as connection:
            fence = None if unfenced else CURRENT_FENCE.get()
            if fence is not None:
                check_fence(connection, fence)
            yield connection

    # -- accounts ------------------------------------------------------------------------

    def seal(self, entity: str, key: str, data: bytes) -> str:
        if entity in PII_ENTITIES:
            return self.vault.encrypt(data.decode(), f"record:{entity}:{key}")
        return data.decode()

    def unseal(self, entity: str, key: str, stored: str) -> Any:
        if entity in PII_ENTITIES:
            stored = self.vault.decrypt(stored, f"record:{entity}:{key}")
        return orjson.loads(stored)

    # -- reads ---------------------------------------------------------------------------


class Repository:
    """Base of the hub's repositories: each reads and writes its own tables through the
    shared unit of work."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow


def _text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()

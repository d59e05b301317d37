"""The hub store: small repositories over one unit of work (DESIGN §2).

``HubStore`` opens the database (migrating it to head) and holds one repository per concern:
``accounts``, ``runs``, ``cursors``, ``records``, ``dead_letters``, ``outbox``, ``bindings``
(with baselines) and ``conflicts``. What must be atomic is one transaction: a pull's page
(records, dead letters, run counts, cursor — :meth:`RecordRepository.commit_page`) and a
finished write (outbox row, binding, baseline, hub copy — :meth:`OutboxRepository.complete`).
Only the binder writes links; SQLAlchemy errors become :class:`~partnersync.errors.StoreError`.
"""

from __future__ import annotations

from sqlalchemy import Engine

from partnersync.auth.vault import Vault
from partnersync.sync.store.accounts import AccountRepository, PendingConnectRepository
from partnersync.sync.store.bindings import BindingRepository
from partnersync.sync.store.conflicts import ConflictRepository
from partnersync.sync.store.dead_letters import DeadLetterRepository
from partnersync.sync.store.jobs import JobRunRepository
from partnersync.sync.store.keys import KeyRepository
from partnersync.sync.store.leases import Lease, LeaseRepository
from partnersync.sync.store.outbox import OutboxRepository
from partnersync.sync.store.records import RecordRepository
from partnersync.sync.store.runs import CursorRepository, RunRepository
from partnersync.sync.store.unit import (
    OPEN_OUTBOX,
    PII_ENTITIES,
    DeadLetter,
    Fence,
    HubRecord,
    MappedRecord,
    OutboxEntry,
    PageOutcome,
    UnitOfWork,
    content_hash,
    fenced,
    make_engine,
    utcnow_iso,
)
from partnersync.sync.store.web import WebRepository
from partnersync.sync.store.webhooks import WebhookRepository


class HubStore:
    """The hub database as repositories sharing one unit of work; safe to share between
    threads, one per process."""

    def __init__(self, engine: Engine, vault: Vault) -> None:
        self.uow = UnitOfWork(engine, vault)
        self.accounts = AccountRepository(self.uow)
        self.runs = RunRepository(self.uow)
        self.cursors = CursorRepository(self.uow)
        self.records = RecordRepository(self.uow)
        self.dead_letters = DeadLetterRepository(self.uow)
        self.outbox = OutboxRepository(self.uow)
        self.bindings = BindingRepository(self.uow)
        self.conflicts = ConflictRepository(self.uow)
        self.keys = KeyRepository(self.uow)
        self.leases = LeaseRepository(self.uow)
        self.job_runs = JobRunRepository(self.uow)
        self.webhooks = WebhookRepository(self.uow)
        self.pending_connects = PendingConnectRepository(self.uow)
        self.web = WebRepository(self.uow)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for tests and tools that inspect tables)."""
        return self.uow.engine

    @classmethod
    def open(cls, url: str, vault: Vault) -> HubStore:
        """Connect and bring the schema to the newest migration."""
        store = cls(make_engine(url), vault)
        store.migrate()
        return store

    def migrate(self) -> None:
        """Run Alembic migrations up to head."""
        self.uow.migrate()

    def close(self) -> None:
        """Dispose of pooled connections."""
        self.uow.close()


__all__ = [
    "OPEN_OUTBOX",
    "PII_ENTITIES",
    "DeadLetter",
    "Fence",
    "HubRecord",
    "HubStore",
    "Lease",
    "MappedRecord",
    "OutboxEntry",
    "PageOutcome",
    "content_hash",
    "fenced",
    "make_engine",
    "utcnow_iso",
]

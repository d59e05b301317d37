"""Hub tables (the only SQLModel table classes; never reused as payload models).

Timestamps are stored as ISO-8601 UTC text so SQLite and PostgreSQL sort and compare them the
same way and no driver drops a timezone on the way back.
"""

from __future__ import annotations

from sqlalchemy import Index, Text, UniqueConstraint
from sqlmodel import Column, Field, SQLModel


class AccountRow(SQLModel, table=True):
    """A wired platform account; ``secrets`` is a vault ciphertext of a JSON object."""

    __tablename__ = "accounts"

    name: str = Field(primary_key=True)
    platform: str
    base_url: str
    api_version: str | None = None
    options: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    secrets: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str
    checked_at: str | None = None
    """When the last cheap authenticated call (``accounts test``, the connect page's check)
    was made, and ``check_error`` what failed (None: it succeeded)."""
    check_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    last_ok_at: str | None = None


class RecordRow(SQLModel, table=True):
    """One canonical record; ``data`` is canonical JSON (a vault ciphertext for PII entities)."""

    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("entity", "canonical_key", name="uq_records_entity_key"),)

    id: int | None = Field(default=None, primary_key=True)
    entity: str
    canonical_key: str
    content_hash: str
    data: str = Field(sa_column=Column(Text, nullable=False))
    source_updated_at: str | None = None
    created_at: str
    updated_at: str
    created_run_id: int | None = None
    updated_run_id: int | None = None
    source_ref: str | None = None


class LinkRow(SQLModel, table=True):
    """Binds an account's external id to a canonical key (only the binder writes these)."""

    __tablename__ = "links"
    __table_args__ = (
        UniqueConstraint("account", "entity", "external_id", name="uq_links_external"),
        Index("ix_links_canonical", "entity", "canonical_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account: str
    entity: str
    external_id: str
    canonical_key: str
    created_at: str
    handle: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """What a write to this record on its platform addresses (a Shopify inventory-item id, a
    WooCommerce ``product/variation``, a Taobao ``num_iid:sku_id``)."""


class CursorRow(SQLModel, table=True):
    """Where the next incremental pull of (account, entity) starts."""

    __tablename__ = "cursors"

    account: str = Field(primary_key=True)
    entity: str = Field(primary_key=True)
    value: str
    updated_at: str
    run_id: int | None = None


class RunRow(SQLModel, table=True):
    """One sync run with its counts; status running → succeeded / partial / failed."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_account_entity", "account", "entity"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    entity: str
    direction: str
    mode: str
    status: str
    started_at: str
    finished_at: str | None = None
    since: str | None = None
    cursor_before: str | None = None
    cursor_after: str | None = None
    pages: int = 0
    requests: int = 0
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    out_of_window: int = 0
    conflicts: int = 0
    skipped: int = 0
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    epoch: int | None = None
    holder: str | None = None
    heartbeat_at: str | None = None
    resume_token: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """For a walk not sorted by the cursor: where it goes on after the last committed page."""
    walk_started_at: str | None = None
    """When the walk this run belongs to began (an earlier run's start when it resumed one):
    the cursor the walk leaves when it completes."""
    walk_since: str | None = None


class LeaseRow(SQLModel, table=True):
    """Who may run an (account, entity, direction) — or a whole job — right now.

    ``epoch`` grows by one each time the lease is granted; a run writes only while its epoch is
    the current one (the fencing token). ``expires_at`` moves forward with every heartbeat; a
    lease past it may be taken over.
    """

    __tablename__ = "leases"

    scope: str = Field(primary_key=True)
    epoch: int = 0
    holder: str | None = None
    run_id: int | None = None
    granted_at: str | None = None
    expires_at: str | None = None
    released_at: str | None = None


class JobRunRow(SQLModel, table=True):
    """One run of a project-file job (its pulls and pushes are rows of ``runs``)."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_job", "job"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str
    holder: str | None = None
    trigger: str = "manual"
    status: str = "running"
    started_at: str
    finished_at: str | None = None
    runs: str | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class BudgetRow(SQLModel, table=True):
    """A platform's rate budget shared by every process (``sync/budgets.py``). Instants are
    Unix seconds: they are only ever subtracted from one another."""

    __tablename__ = "rate_budgets"

    key: str = Field(primary_key=True)
    capacity: float
    refill_rate: float
    tat: float = 0.0
    """GCRA's theoretical arrival time: when the bucket is full again."""
    tat_floor: float = 0.0
    """The earliest ``tat`` refunds may bring back: the latest scheduled spend's send time
    plus its cost's refill time."""
    paused_until: float = 0.0
    spent_total: float = 0.0


class WebhookDeliveryRow(SQLModel, table=True):
    """A webhook delivery accepted once: its id (the platform's event id) per account."""

    __tablename__ = "webhook_deliveries"

    account: str = Field(primary_key=True)
    delivery_id: str = Field(primary_key=True)
    topic: str
    entity: str | None = None
    triggered_at: str | None = None
    received_at: str


class PendingConnectRow(SQLModel, table=True):
    """A connection a user started; the platform's callback names it by ``state``."""

    __tablename__ = "pending_connects"

    state: str = Field(primary_key=True)
    name: str
    platform: str
    base_url: str
    options: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str
    completed_at: str | None = None


class WebAdminRow(SQLModel, table=True):
    """Who may sign in to the connect page: a user name and its scrypt password hash."""

    __tablename__ = "web_admins"

    username: str = Field(primary_key=True)
    password_hash: str
    created_at: str


class WebSessionRow(SQLModel, table=True):
    """A browser session of the connect page, stored by the SHA-256 of its cookie (the cookie
    alone opens it; a database read does not); ``username`` is None until sign-in."""

    __tablename__ = "web_sessions"

    token_hash: str = Field(primary_key=True)
    username: str | None = None
    csrf_token: str
    created_at: str
    expires_at: str


class DeadLetterRow(SQLModel, table=True):
    """A record that could not be mapped; the raw payload is a vault ciphertext."""

    __tablename__ = "dead_letters"
    __table_args__ = (Index("ix_dead_letters_account_entity", "account", "entity"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int
    account: str
    entity: str
    external_id: str | None = None
    field: str
    reason: str = Field(sa_column=Column(Text, nullable=False))
    error_class: str
    page: int
    payload: str = Field(sa_column=Column(Text, nullable=False))
    payload_hash: str
    created_at: str
    resolved_at: str | None = None
    source_ref: str | None = None
    direction: str = "pull"
    outbox_id: int | None = None


class BindingRow(SQLModel, table=True):
    """A hub record pushed to a target account: source canonical key ⇄ the target's id."""

    __tablename__ = "bindings"
    __table_args__ = (
        UniqueConstraint("target_account", "entity", "canonical_key", name="uq_bindings_key"),
        UniqueConstraint("target_account", "entity", "external_id", name="uq_bindings_external"),
    )

    id: int | None = Field(default=None, primary_key=True)
    target_account: str
    entity: str
    canonical_key: str
    external_id: str
    created_at: str


class OutboxRow(SQLModel, table=True):
    """One write to a target, keyed by its idempotency key for its whole life.

    status: pending → sending (attempt under way, key persisted first) → done | dead.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_outbox_key"),
        Index("ix_outbox_target_status", "target_account", "entity", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = None
    target_account: str
    entity: str
    canonical_key: str
    operation: str
    idempotency_key: str
    content_hash: str
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str
    attempts: int = 0
    batch_key: str | None = None
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    source_ref: str | None = None
    created_at: str
    updated_at: str


class BaselineRow(SQLModel, table=True):
    """The field values last agreed between the hub and a target (after a push or adoption)."""

    __tablename__ = "baselines"

    target_account: str = Field(primary_key=True)
    entity: str = Field(primary_key=True)
    canonical_key: str = Field(primary_key=True)
    data: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: str


class ConflictRow(SQLModel, table=True):
    """A field changed on both sides since the last sync, and how it was resolved."""

    __tablename__ = "conflicts"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int
    target_account: str
    entity: str
    canonical_key: str
    field: str
    hub_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    platform_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    baseline_value: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    policy: str
    winner: str
    created_at: str

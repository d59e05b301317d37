"""Alembic environment: runs on the connection partnersync hands it (see ``sync/store.py``)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import partnersync.sync.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store runs migrations
    raise RuntimeError("partnersync migrations run through HubStore.open()")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

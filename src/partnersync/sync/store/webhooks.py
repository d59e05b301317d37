"""Webhook deliveries: each accepted once, whatever the platform's retries and replays."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from partnersync.sync.store.unit import Repository, _deliveries, utcnow_iso


class WebhookRepository(Repository):
    """Record deliveries by (account, delivery id)."""

    def accept(
        self,
        account: str,
        delivery_id: str,
        *,
        topic: str,
        entity: str | None,
        triggered_at: str | None,
    ) -> bool:
        """True the first time ``delivery_id`` is seen for ``account``, False for a duplicate
        (one INSERT ... ON CONFLICT DO NOTHING RETURNING: two receivers racing accept it once).
        The returned row decides, not ``rowcount``: on PostgreSQL that read 0 for a first
        delivery, so every delivery looked like a duplicate (found by the workers test)."""
        with self.uow.transaction(unfenced=True) as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            inserted = connection.execute(
                dialect.insert(_deliveries)
                .values(
                    account=account,
                    delivery_id=delivery_id,
                    topic=topic,
                    entity=entity,
                    triggered_at=triggered_at,
                    received_at=utcnow_iso(),
                )
                .on_conflict_do_nothing(index_elements=["account", "delivery_id"])
                .returning(_deliveries.c.delivery_id)
            ).first()
        return inserted is not None

    def count(self, account: str | None = None) -> int:
        """Deliveries accepted (for one account)."""
        query = select(func.count()).select_from(_deliveries)
        if account is not None:
            query = query.where(_deliveries.c.account == account)
        with self.uow.transaction(unfenced=True) as connection:
            return int(connection.execute(query).scalar_one())

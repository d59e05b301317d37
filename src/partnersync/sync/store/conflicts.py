"""Conflicts: fields changed on both sides since the last agreement, and who won."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from partnersync.sync.store.unit import (
    Repository,
    _conflicts,
    _text,
    utcnow_iso,
)


class ConflictRepository(Repository):
    """Conflict notes per run."""

    def record(self, run_id: int, target: str, entity: str, conflicts: Sequence[Any]) -> None:
        """Store conflict notes (key, field, hub, platform, baseline, policy, winner)."""
        if not conflicts:
            return
        with self.uow.transaction() as connection:
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

    def of_run(self, run_id: int) -> list[dict[str, Any]]:
        """A run's conflicts."""
        with self.uow.transaction() as connection:
            rows = connection.execute(
                select(_conflicts).where(_conflicts.c.run_id == run_id).order_by(_conflicts.c.id)
            )
            return [dict(row._mapping) for row in rows]

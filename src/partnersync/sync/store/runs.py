"""Runs and cursors: a run's life and counts; where the next incremental pull starts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from partnersync.sync.store.unit import (
    Repository,
    _cursors,
    _runs,
    utcnow_iso,
)


class RunRepository(Repository):
    """Sync runs with their counts and status."""

    def start(
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
        with self.uow.transaction() as connection:
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

    def finish(
        self, run_id: int, *, status: str, cursor_after: str | None, error: str | None = None
    ) -> None:
        """Close a run with its final status."""
        with self.uow.transaction() as connection:
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

    def add_requests(self, run_id: int, requests: int) -> None:
        """Count requests that produced no page (e.g. the shop lookup)."""
        with self.uow.transaction() as connection:
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(requests=_runs.c.requests + requests)
            )

    # -- the page commit -----------------------------------------------------------------

    def add_counts(self, run_id: int, **deltas: int) -> None:
        """Add to a run's counters."""
        if not deltas:
            return
        with self.uow.transaction() as connection:
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(**{name: getattr(_runs.c, name) + value for name, value in deltas.items()})
            )

    def recent(self, *, account: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Newest runs first."""
        query = select(_runs).order_by(_runs.c.id.desc()).limit(limit)
        if account:
            query = query.where(_runs.c.account == account)
        with self.uow.transaction() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    def get(self, run_id: int) -> dict[str, Any] | None:
        """One run."""
        with self.uow.transaction() as connection:
            row = connection.execute(select(_runs).where(_runs.c.id == run_id)).first()
        return dict(row._mapping) if row else None


class CursorRepository(Repository):
    """Per (account, entity) cursors."""

    def get(self, account: str, entity: str) -> str | None:
        """The stored cursor value, if any."""
        with self.uow.transaction() as connection:
            value: str | None = connection.execute(
                select(_cursors.c.value).where(
                    _cursors.c.account == account, _cursors.c.entity == entity
                )
            ).scalar_one_or_none()
        return value

    def every(self) -> list[dict[str, Any]]:
        """Every cursor: account, entity, value, when it moved and by which run."""
        with self.uow.transaction() as connection:
            rows = connection.execute(
                select(_cursors).order_by(_cursors.c.account, _cursors.c.entity)
            )
            return [dict(row._mapping) for row in rows]

    def reset(self, account: str, entity: str) -> bool:
        """Forget a cursor (the next pull reads everything); False if there was none."""
        with self.uow.transaction() as connection:
            result = connection.execute(
                _cursors.delete().where(_cursors.c.account == account, _cursors.c.entity == entity)
            )
        return bool(result.rowcount)

    def put(self, account: str, entity: str, value: str, run_id: int) -> None:
        """Store a cursor on its own (end-of-run checkpoints)."""
        with self.uow.transaction() as connection:
            write_cursor(connection, account, entity, value, run_id)


def write_cursor(
    connection: Connection, account: str, entity: str, value: str, run_id: int
) -> None:
    values = {"value": value, "updated_at": utcnow_iso(), "run_id": run_id}
    changed = connection.execute(
        update(_cursors)
        .where(_cursors.c.account == account, _cursors.c.entity == entity)
        .values(**values)
    )
    if not changed.rowcount:
        connection.execute(_cursors.insert(), [{"account": account, "entity": entity, **values}])

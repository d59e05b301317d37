"""Runs and cursors: a run's life and counts; where the next incremental pull starts."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select, update

from partnersync.sync.store.unit import (
    Repository,
    _cursors,
    _leases,
    _runs,
    utcnow_iso,
)

if TYPE_CHECKING:
    from partnersync.sync.store.leases import Lease


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
        lease: Lease | None = None,
        walk_started_at: str | None = None,
        walk_since: str | None = None,
        resume_token: str | None = None,
    ) -> int:
        """Record a run as ``running`` (under ``lease``, whose epoch it keeps); returns its id.
        An unsorted walk records when it began and its ``since`` (an earlier run's, when this
        run continues its walk from ``resume_token``)."""
        now = utcnow_iso()
        with self.uow.transaction(unfenced=True) as connection:
            result = connection.execute(
                _runs.insert().returning(_runs.c.id),
                [
                    {
                        "account": account,
                        "entity": entity,
                        "direction": direction,
                        "mode": mode,
                        "status": "running",
                        "started_at": now,
                        "since": since,
                        "cursor_before": cursor_before,
                        "epoch": lease.epoch if lease else None,
                        "holder": lease.holder if lease else None,
                        "heartbeat_at": now,
                        "walk_started_at": walk_started_at,
                        "walk_since": walk_since,
                        "resume_token": resume_token,
                    }
                ],
            )
            run_id = int(result.scalar_one())
            if lease is not None:
                connection.execute(
                    update(_leases)
                    .where(_leases.c.scope == lease.scope, _leases.c.epoch == lease.epoch)
                    .values(run_id=run_id)
                )
            return run_id

    def finish(
        self, run_id: int, *, status: str, cursor_after: str | None, error: str | None = None
    ) -> None:
        """Close a run with its final status (a run already closed as ``abandoned`` by its
        successor stays so: a fenced-out process writes nothing, not even its own end)."""
        with self.uow.transaction(unfenced=True) as connection:
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id, _runs.c.status == "running")
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
        with self.uow.transaction(unfenced=True) as connection:
            return _as_seen(connection, [dict(row._mapping) for row in connection.execute(query)])

    def get(self, run_id: int) -> dict[str, Any] | None:
        """One run."""
        with self.uow.transaction(unfenced=True) as connection:
            row = connection.execute(select(_runs).where(_runs.c.id == run_id)).first()
            return _as_seen(connection, [dict(row._mapping)])[0] if row else None

    def latest(self, account: str, entity: str, direction: str) -> dict[str, Any] | None:
        """The newest run of (account, entity, direction), as it is seen now."""
        query = (
            select(_runs)
            .where(
                _runs.c.account == account,
                _runs.c.entity == entity,
                _runs.c.direction == direction,
            )
            .order_by(_runs.c.id.desc())
            .limit(1)
        )
        with self.uow.transaction(unfenced=True) as connection:
            row = connection.execute(query).first()
            return _as_seen(connection, [dict(row._mapping)])[0] if row else None


def _as_seen(connection: Connection, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A run still marked ``running`` whose lease has expired or passed to a later epoch is
    shown as ``abandoned``: its process died or lost the hub (the next run closes it for good)."""
    if not any(run["status"] == "running" and run["epoch"] is not None for run in runs):
        return runs
    now = utcnow_iso()
    live = {
        (row.scope, row.epoch)
        for row in connection.execute(select(_leases))
        if row.released_at is None and (row.expires_at or "") > now
    }
    for run in runs:
        if run["status"] != "running" or run["epoch"] is None:
            continue
        scope = f"{run['direction']}:{run['account']}:{run['entity']}"
        if (scope, run["epoch"]) not in live:
            run["status"] = "abandoned"
    return runs


def cursor_lag(value: str | None, now: datetime) -> float | None:
    """Seconds from a stored timestamp cursor to ``now`` (None for none, or one that is no
    time)."""
    try:
        moment = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return (now - moment).total_seconds() if moment else None


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

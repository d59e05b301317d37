"""Leases: one runner per scope at a time, with a fencing epoch (DESIGN §4).

A scope is ``pull:ACCOUNT:ENTITY``, ``push:ACCOUNT:ENTITY`` or ``job:NAME``. Granting a lease is
one conditional UPDATE (free, released or expired → epoch + 1), so two processes — on one SQLite
file or on PostgreSQL — can never both hold it. A live run renews ``expires_at``; a run whose
process died stops renewing, and the next run takes the lease over once it has expired, marking
the dead run ``abandoned`` — at once when the holder was a process of this host that is gone.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from partnersync.errors import AlreadyRunningError
from partnersync.sync.store.unit import Fence, Repository, _job_runs, _leases, _runs

LIVE_STATUS = "running"


def scope_of(direction: str, account: str, entity: str) -> str:
    """The lease scope of (account, entity, direction)."""
    return f"{direction}:{account}:{entity}"


def job_scope(job: str) -> str:
    """The lease scope of a whole job."""
    return f"job:{job}"


def holder_is_dead(holder: str | None) -> bool:
    """True when ``holder`` (``host:pid:tag``) names a process of this host that no longer
    exists; a holder elsewhere, or alive, is never presumed dead (its lease must expire)."""
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Lease:
    """A granted lease: the scope, its epoch (the fencing token), who holds it, for how long."""

    scope: str
    epoch: int
    holder: str
    ttl: float

    @property
    def fence(self) -> Fence:
        """The fencing token of this grant."""
        return Fence(self.scope, self.epoch)


class LeaseRepository(Repository):
    """Grant, renew and release leases."""

    def acquire(
        self,
        scope: str,
        holder: str,
        ttl: float,
        *,
        runs_of: tuple[str, str, str] | None = None,
    ) -> Lease:
        """Grant ``scope`` to ``holder`` for ``ttl`` seconds, or raise AlreadyRunningError
        naming who holds it. ``runs_of`` = (account, entity, direction): runs of that scope still
        marked running under an earlier epoch are closed as ``abandoned`` in the same
        transaction (their process stopped renewing the lease)."""
        now = datetime.now(UTC)
        with self.uow.transaction(unfenced=True) as connection:
            self._ensure_row(connection, scope)
            current = connection.execute(select(_leases).where(_leases.c.scope == scope)).one()
            free = or_(
                _leases.c.released_at.is_not(None),
                _leases.c.expires_at.is_(None),
                _leases.c.expires_at < _iso(now),
            )
            if holder_is_dead(current.holder):
                # Killed on this very machine: no need to wait for the lease to expire.
                free = or_(free, _leases.c.epoch == current.epoch)
            granted = connection.execute(
                update(_leases)
                .where(_leases.c.scope == scope, free)
                .values(
                    epoch=_leases.c.epoch + 1,
                    holder=holder,
                    run_id=None,
                    granted_at=_iso(now),
                    expires_at=_iso(now + timedelta(seconds=ttl)),
                    released_at=None,
                )
                .returning(_leases.c.epoch)
            ).scalar_one_or_none()
            if granted is None:
                row = current
                what = f"run {row.run_id}, " if row.run_id else ""
                raise AlreadyRunningError(
                    f"{scope} is already running ({what}held by {row.holder} since "
                    f"{row.granted_at}); not starting another",
                    scope=scope,
                    holder=row.holder,
                )
            if scope.startswith("job:"):
                connection.execute(
                    update(_job_runs)
                    .where(
                        _job_runs.c.job == scope.removeprefix("job:"),
                        _job_runs.c.status == LIVE_STATUS,
                    )
                    .values(
                        status="abandoned",
                        finished_at=_iso(now),
                        error="its process stopped renewing the lease (killed or lost)",
                    )
                )
            if runs_of is not None:
                account, entity, direction = runs_of
                connection.execute(
                    update(_runs)
                    .where(
                        _runs.c.account == account,
                        _runs.c.entity == entity,
                        _runs.c.direction == direction,
                        _runs.c.status == LIVE_STATUS,
                    )
                    .values(
                        status="abandoned",
                        finished_at=_iso(now),
                        error="its process stopped renewing the lease (killed or lost); "
                        "pages it committed are kept",
                    )
                )
        return Lease(scope, int(granted), holder, ttl)

    @staticmethod
    def _ensure_row(connection: Connection, scope: str) -> None:
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        connection.execute(
            dialect.insert(_leases)
            .values(scope=scope, epoch=0, released_at=_iso(datetime.now(UTC)))
            .on_conflict_do_nothing(index_elements=["scope"])
        )

    def renew(self, lease: Lease, run_id: int | None = None) -> bool:
        """Push the lease's expiry forward (and the run's heartbeat); False if it was lost."""
        now = datetime.now(UTC)
        with self.uow.transaction(unfenced=True) as connection:
            result = connection.execute(
                update(_leases)
                .where(
                    _leases.c.scope == lease.scope,
                    _leases.c.epoch == lease.epoch,
                    _leases.c.released_at.is_(None),
                )
                .values(expires_at=_iso(now + timedelta(seconds=lease.ttl)))
            )
            if result.rowcount == 1 and run_id is not None:
                connection.execute(
                    update(_runs).where(_runs.c.id == run_id).values(heartbeat_at=_iso(now))
                )
        return bool(result.rowcount == 1)

    def release(self, lease: Lease) -> None:
        """Give the lease back (a no-op once a later epoch holds it)."""
        now = _iso(datetime.now(UTC))
        with self.uow.transaction(unfenced=True) as connection:
            connection.execute(
                update(_leases)
                .where(
                    _leases.c.scope == lease.scope,
                    _leases.c.epoch == lease.epoch,
                    _leases.c.released_at.is_(None),
                )
                .values(released_at=now, expires_at=now)
            )

    def every(self) -> list[dict[str, Any]]:
        """Every lease row, with ``live`` = held and not expired."""
        now = _iso(datetime.now(UTC))
        with self.uow.transaction(unfenced=True) as connection:
            rows = [
                dict(row._mapping)
                for row in connection.execute(select(_leases).order_by(_leases.c.scope))
            ]
        for row in rows:
            row["live"] = row["released_at"] is None and (row["expires_at"] or "") > now
        return rows

"""Rate budgets shared by every job and worker that spends them (DESIGN §4).

A platform counts its limits per app and shop (Shopify), per app and API (TOP), per app, seller
and operation (SP-API); the connector names the budget a request spends from (its *key*) and its
published size. The budget itself lives in the hub, so a stock push and an order pull on one shop
draw from one bucket — in one process or in many, on SQLite or PostgreSQL.

Each spend is one short transaction scheduling it by GCRA (the generic cell rate algorithm, a
leaky bucket kept as one instant): the caller learns at once when its request may go and sleeps
until then. Callers are served in the order they asked, nobody polls, and a 429's
``Retry-After`` pauses every process until that instant (each adds its own jitter).

Each request reserves what it may cost; what the platform says it charged less is refunded. A
platform's report of the bucket only ever lowers what we count on (another process's
reservations in flight are not in it, so adopting it as such would hand them out twice).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from partnersync.clock import Clock, SystemClock
from partnersync.connectors.http.client import throttle_jitter
from partnersync.connectors.http.ratelimit import NOTABLE_WAIT
from partnersync.sync.offload import blocking
from partnersync.sync.store import HubStore
from partnersync.sync.store.unit import _budgets

log = logging.getLogger("partnersync.http")


def _locked_row(connection: Connection, key: str) -> Any:
    if connection.dialect.name == "postgresql":
        return connection.execute(
            select(_budgets).where(_budgets.c.key == key).with_for_update()
        ).one()
    # SQLite: a no-op write first takes the database's write lock for this transaction.
    connection.execute(update(_budgets).where(_budgets.c.key == key).values(key=_budgets.c.key))
    return connection.execute(select(_budgets).where(_budgets.c.key == key)).one()


@dataclass(frozen=True)
class Report:
    """A platform's report of its bucket: the balance, when we read it, what the answered
    requests reserved beyond their charge, and the bucket's size and rate if said."""

    available: float
    at: float
    refund: float
    mark: float
    capacity: float | None = None
    refill_rate: float | None = None


HEADROOM = 0.01
"""The share of the bucket a spend leaves in it, for clock drift between us and the platform."""


class HubBudget:
    """One budget (a platform's bucket for one key), kept in the hub for every process."""

    def __init__(
        self,
        store: HubStore,
        key: str,
        capacity: float,
        refill_rate: float,
        *,
        clock: Clock | None = None,
    ) -> None:
        if capacity <= 0 or refill_rate <= 0:
            raise ValueError("capacity and refill_rate must be positive")
        self.store = store
        self.key = key
        self.capacity = float(capacity)
        self.refill_rate = float(refill_rate)
        self._clock = clock or SystemClock()
        self.waited = 0.0
        self._report: Report | None = None
        self._marks: deque[float] = deque(maxlen=64)
        self._ensure()

    # -- the transactions (run in worker threads) ------------------------------------------
    def _ensure(self) -> None:
        with self.store.uow.transaction(unfenced=True) as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            connection.execute(
                dialect.insert(_budgets)
                .values(
                    key=self.key,
                    capacity=self.capacity,
                    refill_rate=self.refill_rate,
                    tat=0.0,
                )
                .on_conflict_do_nothing(index_elements=["key"])
            )

    def _settle(
        self,
        spend: float = 0.0,
        *,
        report: Report | None = None,
        pause: float | None = None,
    ) -> tuple[float, float]:
        """Apply a report or a pause, then schedule a spend; returns the seconds to wait before
        sending it (never before a pause the platform asked for has passed) and the running
        total of spends after it (which marks it as the latest).

        GCRA: ``tat`` is the instant at which the bucket would be full again; a spend of ``c``
        moves it ``c / rate`` later and may go once the bucket holds ``c``, i.e. at
        ``tat_after - capacity / rate``. Unlike a balance that may go negative, this never
        counts refill the bucket could not hold.
        """
        with self.store.uow.transaction(unfenced=True) as connection:
            row = _locked_row(connection, self.key)
            now = self._clock.now().timestamp()
            capacity = (report.capacity if report else None) or row.capacity
            rate = (report.refill_rate if report else None) or row.refill_rate
            tat = max(row.tat, now)
            floor = row.tat_floor
            if report is not None:
                # Our reservations were of the requested cost; the platform charged less. A
                # refund cannot undo the latest scheduled spend: the bucket held at most its
                # capacity then, so it is full again no sooner than that spend's cost later —
                # unless the refund is that very spend's.
                if row.spent_total == report.mark:
                    floor -= report.refund / rate
                tat = max(now, floor, tat - report.refund / rate)
                # A platform emptier than we think (someone outside this hub spends too).
                tat = max(tat, report.at + (capacity - report.available) / rate)
            paused_until = row.paused_until
            if pause is not None:
                paused_until = max(paused_until, now + pause)
            wait = 0.0
            if spend:
                tat += spend / rate
                # Send once the bucket holds the cost and a little more: our clock and the
                # platform's differ by milliseconds, and at a high restore rate that is points.
                wait = max(0.0, tat - capacity * (1 - HEADROOM) / rate - now)
                floor = now + wait + spend / rate
                if paused_until > now:
                    wait = max(wait, paused_until - now + throttle_jitter(paused_until - now))
            mark = row.spent_total + spend
            connection.execute(
                update(_budgets)
                .where(_budgets.c.key == self.key)
                .values(
                    tat=tat,
                    tat_floor=floor,
                    capacity=capacity,
                    refill_rate=rate,
                    paused_until=paused_until,
                    spent_total=mark,
                )
            )
        self.capacity, self.refill_rate = capacity, rate
        return wait, mark

    # -- what connectors call (the RateBudget protocol) ------------------------------------
    async def acquire(self, cost: float = 1.0) -> None:
        """Take ``cost`` from the shared balance and wait until it is covered."""
        report, self._report = self._report, None
        wait, mark = await blocking(self._settle, min(cost, self.capacity), report=report)
        self._marks.append(mark)
        if wait > 0:
            if wait >= NOTABLE_WAIT:
                log.info("waiting %.1f s for the rate limit (%s)", wait, self.key)
            self.waited += wait
            await self._clock.sleep(wait)

    def observe(
        self,
        available: float,
        capacity: float | None = None,
        refill_rate: float | None = None,
        *,
        refund: float = 0.0,
    ) -> None:
        """The platform's report of the bucket, and ``refund`` = what the answered request was
        charged less than it reserved: applied with the next spend (no database call on the
        event loop). The report only ever lowers the shared balance — other processes'
        reservations in flight are not in it — while the refund raises it."""
        refund += self._report.refund if self._report else 0.0
        mark = self._marks.popleft() if self._marks else -1.0
        self._report = Report(
            float(available), self._clock.now().timestamp(), refund, mark, capacity, refill_rate
        )

    def observe_used(self, used: float, capacity: float) -> None:
        """A ``used/capacity`` report such as ``X-Shopify-Shop-Api-Call-Limit: 32/40``."""
        self.observe(available=capacity - used, capacity=capacity)

    async def pause(self, seconds: float) -> None:
        """The platform said to come back in ``seconds``: every spender, in every process,
        waits that long from now."""
        await blocking(self._settle, pause=seconds)


class HubBudgets:
    """Budgets of one hub by key, one object per key per process."""

    def __init__(self, store: HubStore, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock
        self._budgets: dict[str, HubBudget] = {}

    def __call__(self, key: str, capacity: float, refill_rate: float) -> HubBudget:
        """The budget ``key`` (created with the connector's published size the first time)."""
        budget = self._budgets.get(key)
        if budget is None:
            budget = HubBudget(self.store, key, capacity, refill_rate, clock=self.clock)
            self._budgets[key] = budget
        return budget

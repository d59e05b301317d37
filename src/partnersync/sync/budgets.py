"""Rate budgets shared by every job and worker that spends them (DESIGN §4).

A platform counts its limits per app and shop (Shopify), per app and API (TOP), per app, seller
and operation (SP-API); the connector names the budget a request spends from (its *key*) and its
published size. The budget itself lives in the hub, so a stock push and an order pull on one shop
draw from one bucket — in one process or in many, on SQLite or PostgreSQL.

Each spend is one short transaction using virtual scheduling: the cost is taken at once (the
balance may go below zero) and the caller sleeps until the balance it found would have refilled
to cover it. Callers are served in the order they asked, nobody polls, and a 429's ``Retry-After``
becomes a debt every process waits out (each with its own jitter). A platform's report of the
bucket lowers the balance, never raises it: reservations made since its answer was produced are
not forgotten.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from partnersync.clock import Clock, SystemClock
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
        self._report: tuple[float, float | None, float | None] | None = None
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
                    available=self.capacity,
                    stamp=time.time(),
                )
                .on_conflict_do_nothing(index_elements=["key"])
            )

    def _settle(
        self,
        spend: float = 0.0,
        *,
        report: float | None = None,
        capacity: float | None = None,
        refill_rate: float | None = None,
        debt_seconds: float | None = None,
    ) -> float:
        """Refill, apply a report or a debt, spend; returns the seconds to wait for the spend."""
        with self.store.uow.transaction(unfenced=True) as connection:
            row = _locked_row(connection, self.key)
            now = time.time()
            capacity = capacity or row.capacity
            rate = refill_rate or row.refill_rate
            available = min(capacity, row.available + max(0.0, now - row.stamp) * rate)
            if report is not None:
                available = min(available, report)
            if debt_seconds is not None:
                available = min(available, -debt_seconds * rate)
            wait = max(0.0, (spend - available) / rate) if spend else 0.0
            available -= spend
            connection.execute(
                update(_budgets)
                .where(_budgets.c.key == self.key)
                .values(available=available, stamp=now, capacity=capacity, refill_rate=rate)
            )
        self.capacity, self.refill_rate = capacity, rate
        return wait

    # -- what connectors call (the RateBudget protocol) ------------------------------------
    async def acquire(self, cost: float = 1.0) -> None:
        """Take ``cost`` from the shared balance and wait until it is covered."""
        report, self._report = self._report, None
        available, capacity, rate = report if report else (None, None, None)
        wait = await blocking(
            self._settle,
            min(cost, capacity or self.capacity),
            report=available,
            capacity=capacity,
            refill_rate=rate,
        )
        if wait > 0:
            if wait >= NOTABLE_WAIT:
                log.info("waiting %.1f s for the rate limit (%s)", wait, self.key)
            self.waited += wait
            await self._clock.sleep(wait)

    def observe(
        self, available: float, capacity: float | None = None, refill_rate: float | None = None
    ) -> None:
        """The platform's report of the bucket: applied with the next spend (no database call
        on the event loop); the balance drops to it if it is lower."""
        if self._report is not None:
            available = min(available, self._report[0])
        self._report = (float(available), capacity, refill_rate)

    def observe_used(self, used: float, capacity: float) -> None:
        """A ``used/capacity`` report such as ``X-Shopify-Shop-Api-Call-Limit: 32/40``."""
        self.observe(available=capacity - used, capacity=capacity)

    async def pause(self, seconds: float) -> None:
        """The platform said to come back in ``seconds``: every spender, in every process,
        waits that long from now."""
        await blocking(self._settle, debt_seconds=seconds)

    @property
    def available(self) -> float:
        """The shared balance now (negative: spends already promised)."""
        with self.store.uow.transaction(unfenced=True) as connection:
            row = connection.execute(select(_budgets).where(_budgets.c.key == self.key)).one()
        now = time.time()
        return float(min(row.capacity, row.available + max(0.0, now - row.stamp) * row.refill_rate))


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

"""One runner per account × entity × direction, fencing epochs, and run state you can trust
(RELIABILITY T19; SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text

from partnersync.errors import AlreadyRunningError, FencedOutError
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.sync.runner import LeaseKeeper, StopRequest
from partnersync.sync.store import HubStore, fenced
from partnersync.sync.store.leases import holder_is_dead, scope_of
from tests.conftest import SHOP_TOKEN, make_service, wire_shop

SCOPE = scope_of("pull", "shop", "orders")


def test_a_held_scope_is_refused_with_who_holds_it(store: HubStore) -> None:
    first = store.leases.acquire(SCOPE, "host-a:1:aa", ttl=60)
    with pytest.raises(AlreadyRunningError, match="host-a:1:aa") as refused:
        store.leases.acquire(SCOPE, "host-b:2:bb", ttl=60)
    assert refused.value.scope == SCOPE
    store.leases.release(first)
    second = store.leases.acquire(SCOPE, "host-b:2:bb", ttl=60)
    assert second.epoch == first.epoch + 1
    # Another scope is independent.
    other = store.leases.acquire(scope_of("push", "shop", "orders"), "host-a:1:aa", ttl=60)
    assert other.epoch == 1


def test_an_expired_lease_is_taken_over_and_the_old_epoch_writes_nothing(store: HubStore) -> None:
    old = store.leases.acquire(SCOPE, "elsewhere:1:aa", ttl=0.2)
    time.sleep(0.3)
    new = store.leases.acquire(SCOPE, "elsewhere:2:bb", ttl=60)
    assert new.epoch == old.epoch + 1
    assert not store.leases.renew(old)
    with fenced(old.fence), pytest.raises(FencedOutError, match="taken over"):
        store.cursors.put("shop", "orders", "2026-01-01T00:00:00+00:00", run_id=1)
    assert store.cursors.get("shop", "orders") is None
    with fenced(new.fence):
        store.cursors.put("shop", "orders", "2026-01-02T00:00:00+00:00", run_id=2)
    assert store.cursors.get("shop", "orders") == "2026-01-02T00:00:00+00:00"


def test_a_released_lease_fences_late_writes_too(store: HubStore) -> None:
    lease = store.leases.acquire(SCOPE, "elsewhere:1:aa", ttl=60)
    store.leases.release(lease)
    with fenced(lease.fence), pytest.raises(FencedOutError):
        store.cursors.put("shop", "orders", "2026-01-01T00:00:00+00:00", run_id=1)


def test_a_holder_killed_on_this_host_is_taken_over_at_once(store: HubStore) -> None:
    dead_pid = _dead_pid()
    here = socket.gethostname()
    assert holder_is_dead(f"{here}:{dead_pid}:aa")
    assert not holder_is_dead(f"{here}:{os.getpid()}:aa")
    assert not holder_is_dead(f"another-host:{dead_pid}:aa")
    store.leases.acquire(SCOPE, f"{here}:{dead_pid}:aa", ttl=3600)
    taken = store.leases.acquire(SCOPE, f"{here}:{os.getpid()}:bb", ttl=60)
    assert taken.epoch == 2
    store.leases.acquire(scope_of("pull", "x", "y"), f"another-host:{dead_pid}:aa", ttl=3600)
    with pytest.raises(AlreadyRunningError):
        store.leases.acquire(scope_of("pull", "x", "y"), f"{here}:{os.getpid()}:cc", ttl=60)


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_a_run_whose_process_died_shows_abandoned_then_is_closed_by_the_next(
    store: HubStore,
) -> None:
    lease = store.leases.acquire(SCOPE, "elsewhere:1:aa", ttl=0.2)
    run_id = store.runs.start(
        account="shop",
        entity="orders",
        direction="pull",
        mode="full",
        since=None,
        cursor_before=None,
        lease=lease,
    )
    run = store.runs.get(run_id)
    assert run is not None
    assert run["status"] == "running"
    time.sleep(0.3)
    run = store.runs.get(run_id)
    assert run is not None
    assert run["status"] == "abandoned"  # as seen: its lease expired
    store.leases.acquire(SCOPE, "elsewhere:2:bb", ttl=60, runs_of=("shop", "orders", "pull"))
    with store.engine.connect() as connection:
        stored = connection.execute(
            text("SELECT status, error FROM runs WHERE id = :id"), {"id": run_id}
        ).one()
    assert stored.status == "abandoned"
    assert "stopped renewing" in stored.error


def test_heartbeats_keep_a_long_run_alive(store: HubStore) -> None:
    keeper = LeaseKeeper(store, ttl=0.6)

    async def long_run() -> None:
        async with keeper.hold(SCOPE) as held:
            await anyio.sleep(2.0)  # over three times the lease's time to live
            assert not held.lost
            with pytest.raises(AlreadyRunningError):
                store.leases.acquire(SCOPE, "someone-else:1:aa", ttl=60)
            store.cursors.put("shop", "orders", "2026-01-01T00:00:00+00:00", run_id=1)

    anyio.run(long_run)
    assert store.leases.acquire(SCOPE, "someone-else:1:aa", ttl=60).epoch == 2


def _slow_shop() -> ShopifySandbox:
    """A shop whose answers each take 150 ms: a pull of 40 orders in pages of 8 takes ~1 s."""
    sandbox = ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, bucket_size=1000.0)
    sandbox.faults.latency = 0.15
    return sandbox


def _service(tmp_path: Path, vault: object, database_url: str, shop: ShopifySandbox) -> Partnersync:
    service = make_service(tmp_path / "project", vault, database_url)  # type: ignore[arg-type]
    return wire_shop(service, shop, page_size=8)


def test_two_pulls_of_one_scope_at_once_one_is_refused_before_any_request(
    tmp_path: Path, vault: object, database_url: str
) -> None:
    with _slow_shop() as shop:
        service = _service(tmp_path, vault, database_url, shop)
        outcomes: list[object] = []

        async def both() -> None:
            async def one() -> None:
                try:
                    outcomes.append(await service.pull("shop", "orders"))
                except AlreadyRunningError as exc:
                    outcomes.append(exc)

            async with anyio.create_task_group() as group:
                group.start_soon(one)
                await anyio.sleep(0.3)
                group.start_soon(one)

        anyio.run(both)
        refused, finished = outcomes
        assert isinstance(refused, AlreadyRunningError)
        assert "pull:shop:orders is already running" in str(refused)
        assert finished.status == "succeeded"  # type: ignore[attr-defined]
        # The refused pull sent nothing: every request the shop saw is the first run's.
        assert len(shop.log) == finished.progress.requests  # type: ignore[attr-defined]
        assert len(service.runs()) == 1
        service.close()


def test_a_stop_request_ends_the_run_after_a_committed_page_and_the_next_run_resumes(
    tmp_path: Path, vault: object, database_url: str
) -> None:
    with _slow_shop() as shop:
        service = _service(tmp_path, vault, database_url, shop)
        total = len(shop.data.tables["orders"])

        def stop_after_two_pages(progress: object) -> None:
            if progress.pages == 2:  # type: ignore[attr-defined]
                service.stop.request("SIGTERM")

        first = anyio.run(lambda: service.pull("shop", "orders", on_page=stop_after_two_pages))
        assert first.status == "interrupted"
        assert first.progress.pages == 2
        assert service.store.records.count("orders") == first.progress.fetched < total
        assert service.runs()[0]["status"] == "interrupted"
        service.stop = StopRequest()
        second = anyio.run(lambda: service.pull("shop", "orders"))
        assert second.status == "succeeded"
        assert second.resumed_from == (first.run_id, "interrupted")
        assert second.since is not None  # from the cursor of the last committed page
        assert service.store.records.count("orders") == total
        service.close()


def test_every_run_keeps_its_epoch_and_holder(
    tmp_path: Path, vault: object, database_url: str, shop: ShopifySandbox
) -> None:
    service = _service(tmp_path, vault, database_url, shop)
    for _ in range(3):
        anyio.run(lambda: service.pull("shop", "orders"))
    runs = sorted(service.runs(), key=lambda r: r["id"])
    assert [r["epoch"] for r in runs] == [1, 2, 3]
    assert all(r["holder"] == service.leases.holder for r in runs)
    assert all(r["status"] == "succeeded" for r in runs)
    started = [datetime.fromisoformat(r["started_at"]) for r in runs]
    assert started == sorted(started)
    assert datetime.now(UTC) - started[-1] < timedelta(minutes=1)
    service.close()

"""A job over many shops pulls its sources at once (``sync.concurrent_pulls``): each source
lands its own orders under its own account, run after run, and one source that cannot run
stops the job without cutting short the pulls under way."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import anyio
import pytest

from partnersync.auth.vault import Vault
from partnersync.errors import AlreadyRunningError
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.sync.engine import RunSummary
from partnersync.sync.push import PushSummary
from partnersync.sync.store.leases import scope_of
from tests.conftest import SHOP_TOKEN, make_service
from tests.integration.push_world import add_shop

SHOPS = ("shop_a", "shop_b", "shop_c")
LATENCY = 0.1
"""Every shop request takes this long: pulls one after another take several times it."""


@pytest.fixture
def shops() -> Iterator[dict[str, ShopifySandbox]]:
    started = {name: ShopifySandbox(token=SHOP_TOKEN, products=1, orders=6) for name in SHOPS}
    for shop in started.values():
        shop.faults.latency = LATENCY
        shop.start()
    yield started
    for shop in started.values():
        shop.stop()


def job_service(
    root: Path, vault: Vault, shops: dict[str, ShopifySandbox], concurrent: int
) -> Partnersync:
    drop = root / "erp"
    drop.mkdir(parents=True, exist_ok=True)
    service = make_service(
        root,
        vault,
        sync={"concurrent_pulls": concurrent},
        jobs={"orders": {"entity": "orders", "sources": list(SHOPS), "targets": ["erp"]}},
    )
    for name, shop in shops.items():
        add_shop(service, name, shop)
    service.add_account(name="erp", platform="file", base_url=drop.as_uri(), secrets={})
    return service


def pulls_of(results: list[RunSummary | PushSummary]) -> list[RunSummary]:
    return [r for r in results if isinstance(r, RunSummary)]


def pull_spans(service: Partnersync, run_ids: list[int]) -> list[tuple[datetime, datetime]]:
    rows = [service.store.runs.get(run_id) or {} for run_id in run_ids]
    return [
        (
            datetime.fromisoformat(str(r["started_at"])),
            datetime.fromisoformat(str(r["finished_at"])),
        )
        for r in rows
    ]


def landed(service: Partnersync, account: str) -> dict[str, dict[str, object]]:
    """The account's orders in the hub by their Shopify number (the gid's last part)."""
    return {
        r.external_id.rsplit("/", 1)[-1]: r.data
        for r in service.store.records.of(account, "orders")
    }


def numbers(ids: Iterable[object]) -> set[str]:
    return {str(i).rsplit("/", 1)[-1] for i in ids}


def test_sources_are_pulled_at_once_and_each_lands_its_own_orders(
    tmp_path: Path, vault: Vault, shops: dict[str, ShopifySandbox]
) -> None:
    service = job_service(tmp_path / "p", vault, shops, concurrent=3)
    pulls = pulls_of(anyio.run(service.run_job, "orders"))
    assert [p.account for p in pulls] == list(SHOPS)  # summaries in the sources' order
    assert [p.progress.fetched for p in pulls] == [6, 6, 6]
    spans = pull_spans(service, [p.run_id for p in pulls])
    # The three pulls overlapped: each started before any had finished.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    for name, shop in shops.items():
        assert set(landed(service, name)) == numbers(shop.data.tables["orders"])

    # A platform changes between runs: its changed orders land under its own account.
    changed = shops["shop_b"].data.touch("orders", 2)
    second = anyio.run(service.run_job, "orders")
    fetched = {r.account: r.progress.fetched for r in pulls_of(second)}
    assert fetched["shop_b"] >= 2
    orders = landed(service, "shop_b")
    for number in numbers(changed):
        assert orders[number]["fulfillment_status"] == "fulfilled"
    service.close()


def test_one_at_a_time_when_so_configured(
    tmp_path: Path, vault: Vault, shops: dict[str, ShopifySandbox]
) -> None:
    service = job_service(tmp_path / "p", vault, shops, concurrent=1)
    pulls = pulls_of(anyio.run(service.run_job, "orders"))
    spans = pull_spans(service, [p.run_id for p in pulls])
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start
    service.close()


def test_a_source_that_cannot_run_stops_the_job_after_the_pulls_under_way(
    tmp_path: Path, vault: Vault, shops: dict[str, ShopifySandbox]
) -> None:
    service = job_service(tmp_path / "p", vault, shops, concurrent=3)
    # Another process is pulling shop_b's orders right now.
    service.store.leases.acquire(scope_of("pull", "shop_b", "orders"), "elsewhere:1:aa", ttl=60)
    with pytest.raises(AlreadyRunningError):
        anyio.run(service.run_job, "orders")
    # shop_a and shop_c were under way: they finished and landed their orders; the job's
    # record names their runs and how it ended.
    assert len(landed(service, "shop_a")) == 6
    assert len(landed(service, "shop_c")) == 6
    assert not landed(service, "shop_b")
    job_run = service.store.job_runs.latest_by_job()["orders"]
    assert job_run["status"] == "failed"
    assert "AlreadyRunningError" in str(job_run["error"])
    assert len(str(job_run["runs"]).split(",")) == 2
    service.close()

"""Shopify pulls through bulk operations against the sandbox shop's own bulkOperationRunQuery
(issue 7): a full pull lands every record exactly once; a large incremental goes bulk and a
small one pages (decided by Shopify's count); an operation that fails lands its partial data and
is started once more, one that fails again or expires falls back to paging; pulls beyond the
shop's bulk query limit wait for a place; a process killed while reading the JSONL goes on from
its last committed page, reading the same result, without loss."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text

from partnersync.auth.vault import Vault
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from tests.conftest import make_service, new_vault, wire_shop
from tests.integration.test_crash_resume import run_cli, shop_project

pytestmark = pytest.mark.anyio


def service_for(tmp_path: Path, shop: ShopifySandbox, **options: Any) -> Partnersync:
    service = make_service(tmp_path / "project", new_vault())
    return wire_shop(service, shop, bulk_poll_seconds=0.05, **options)


def hub_keys(service: Partnersync, entity: str) -> list[str]:
    with service.store.engine.connect() as connection:
        return [
            row[0]
            for row in connection.execute(
                text("select canonical_key from records where entity = :e"), {"e": entity}
            )
        ]


def api_pages(shop: ShopifySandbox, op: str) -> int:
    return len([e for e in shop.log.entries if e.get("op") == op])


@pytest.mark.parametrize(
    ("entity", "table", "op"),
    [
        ("products", "products", "Products"),
        ("orders", "orders", "Orders"),
        ("inventory", "inventory_levels", "InventoryItems"),
    ],
)
async def test_a_full_pull_through_a_bulk_operation_lands_every_record_once(
    tmp_path: Path, shop: ShopifySandbox, entity: str, table: str, op: str
) -> None:
    shop.bulk_part = 6  # the shop answers the bulk query six root records at a time
    service = service_for(tmp_path, shop, bulk="always", page_size=7)
    summary = await service.pull("shop", entity)
    assert summary.status == "succeeded", summary.error
    assert shop.bulk.started == 1
    assert api_pages(shop, op) == 0  # nothing paged through the API
    keys = hub_keys(service, entity)
    assert len(keys) == len(shop.data.tables[table])
    assert len(set(keys)) == len(keys)
    if entity == "products":  # children reassembled from __parentId rows
        for product_id, product in shop.data.tables["products"].items():
            record = service.record("shop", "products", product_id)
            assert len(record["data"]["variants"]) == len(product["_variants"])
    # An unsorted walk: the cursor is where the run began, not the newest record.
    runs = service.runs(account="shop")
    assert service.store.cursors.get("shop", entity) is not None
    assert runs[0]["pages"] >= 2
    service.close()


async def test_the_count_decides_a_large_pull_goes_bulk_and_a_small_one_pages(
    tmp_path: Path, shop: ShopifySandbox
) -> None:
    service = service_for(tmp_path, shop, bulk_threshold=20)
    first = await service.pull("shop", "orders")  # 40 orders: bulk
    assert first.status == "succeeded"
    assert shop.bulk.started == 1
    shop.data.touch("orders", 3)
    shop.log.clear()
    second = await service.pull("shop", "orders")  # 3 changed: paged
    assert second.status == "succeeded"
    assert shop.bulk.started == 1
    assert api_pages(shop, "Orders") == 1
    assert second.progress.fetched >= 3
    service.close()


@pytest.mark.parametrize(("fault", "times"), [("fail_next", 2), ("expire_next", 1)])
async def test_a_bulk_operation_that_fails_or_expires_falls_back_to_paging(
    tmp_path: Path, shop: ShopifySandbox, fault: str, times: int, caplog: pytest.LogCaptureFixture
) -> None:
    setattr(shop.bulk, fault, times)
    service = service_for(tmp_path, shop, bulk="always", page_size=10)
    with caplog.at_level(logging.WARNING, logger="partnersync.shopify"):
        summary = await service.pull("shop", "orders")
    assert summary.status == "succeeded"
    # A failure on Shopify's side earns one more operation; an expired one goes to paging.
    assert shop.bulk.started == times
    assert api_pages(shop, "Orders") == 4  # 40 orders, 10 a page
    assert len(set(hub_keys(service, "orders"))) == len(shop.data.tables["orders"])
    assert any("paging through the API instead" in r.getMessage() for r in caplog.records)
    service.close()


async def test_a_failed_operation_lands_its_partial_data_and_a_second_operation_the_rest(
    tmp_path: Path, shop: ShopifySandbox
) -> None:
    total = len(shop.data.tables["products"])
    shop.bulk.fail_next = 1
    service = service_for(tmp_path, shop, bulk="always", page_size=5)
    summary = await service.pull("shop", "products")
    assert summary.status == "succeeded", summary.error
    assert shop.bulk.started == 2
    assert api_pages(shop, "Products") == 0
    failed = shop.bulk.operations[service_bulk_ids(shop)[0]]
    assert failed.status == "FAILED"
    assert failed.partial_url is not None
    # The partial file's whole products landed first; the second operation read them again,
    # unchanged, and landed the rest: every product once, with all of its variants.
    assert summary.progress.unchanged > 0
    assert summary.progress.fetched == total + summary.progress.unchanged
    keys = hub_keys(service, "products")
    assert sorted(keys) == sorted(set(keys))
    assert len(keys) == total
    for product_id, product in shop.data.tables["products"].items():
        record = service.record("shop", "products", product_id)
        assert len(record["data"]["variants"]) == len(product["_variants"])
    service.close()


def service_bulk_ids(shop: ShopifySandbox) -> list[str]:
    return list(shop.bulk.operations)


async def test_pulls_past_the_shops_bulk_query_limit_wait_for_a_place(
    tmp_path: Path, shop: ShopifySandbox
) -> None:
    """An app may run five bulk queries per shop at once (one before 2026-01): two hubs pulling
    three entities each from one shop at the same time queue the sixth rather than paging it."""
    shop.bulk.delay = 1.0  # all six are asked for while five still run
    services = [service_for(tmp_path / name, shop, bulk="always") for name in ("a", "b")]
    summaries: list[Any] = []

    async def pull(service: Partnersync, entity: str) -> None:
        summaries.append(await service.pull("shop", entity))

    async with anyio.create_task_group() as group:
        for service in services:
            for entity in ("products", "orders", "inventory"):
                group.start_soon(pull, service, entity)
    assert [s.status for s in summaries] == ["succeeded"] * 6
    assert shop.bulk.started == 6
    runs = [e for e in shop.log.entries if e.get("op") == "BulkRun"]
    assert len(runs) > 6  # at least one was refused and asked again
    for op in ("Products", "Orders", "InventoryItems"):
        assert api_pages(shop, op) == 0
    for service in services:
        assert len(hub_keys(service, "orders")) == len(shop.data.tables["orders"])
        assert len(hub_keys(service, "products")) == len(shop.data.tables["products"])
        service.close()


@pytest.mark.parametrize("expire_between", [False, True])
def test_a_process_killed_while_reading_the_result_goes_on_without_loss(
    tmp_path: Path, shop: ShopifySandbox, expire_between: bool
) -> None:
    project, keys, url = shop_project(
        tmp_path, shop, bulk="always", page_size=8, bulk_poll_seconds=0.05
    )
    total = len(shop.data.tables["orders"])

    killed = run_cli(
        project, keys, "sync", "pull", "shop", "orders", failpoints="after_page_commit:2"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert shop.bulk.started == 1
    if expire_between:
        shop.bulk.expire_files()
    resumed = run_cli(project, keys, "sync", "pull", "shop", "orders")
    assert resumed.returncode == 0, resumed.stderr
    assert "from the page it stopped at" in resumed.stderr
    # The same result is read on from the line after the last committed page; once its file
    # is gone the walk starts over with a new operation. Either way nothing is paged.
    assert shop.bulk.started == (2 if expire_between else 1)
    assert api_pages(shop, "Orders") == 0

    hub = make_service(project, Vault.parse(keys), database_url=url)
    keys_seen = hub_keys(hub, "orders")
    assert len(keys_seen) == total
    assert len(set(keys_seen)) == total
    with hub.store.engine.connect() as connection:
        runs = connection.execute(
            text("select status, fetched, walk_started_at from runs order by id")
        ).all()
    assert runs[0].status != "succeeded"  # the killed one
    assert runs[1].status == "succeeded"
    if not expire_between:
        assert runs[0].fetched + runs[1].fetched == total  # no record read twice
    assert hub.store.cursors.get("shop", "orders") == runs[0].walk_started_at
    hub.close()

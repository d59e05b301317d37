"""Push correctness: each scenario a merchant hit (issue "push correctness", r01–r20).

Every test drives the service facade against the loopback sandboxes; the only edits to sandbox
data stand in for a merchant or a warehouse changing things between runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from partnersync.auth.vault import Vault
from partnersync.errors import ConfigError
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.sync.push import PushOptions
from tests.integration.push_world import (
    MAIN,
    add_files,
    add_shop,
    avail,
    hub,
    location_id,
    new_shop,
    order_named,
    product_by_handle,
    skus,
    tracking_numbers,
    variants_of,
    write_ops,
)

pytestmark = pytest.mark.anyio

ERP = PushOptions(sources=("erp",))


@pytest.fixture
def drop(tmp_path: Path) -> Iterator[FileSandbox]:
    with FileSandbox(directory=tmp_path / "drop", skus=0, files=0) as sandbox:
        yield sandbox


@pytest.fixture
def svc(tmp_path: Path, vault: Vault, shop: ShopifySandbox, drop: FileSandbox) -> Iterator[Any]:
    """A SQLite hub with ``shop`` (the sandbox shop) and ``erp`` (the drop directory)."""
    service = hub(tmp_path / "project", vault)
    add_shop(service, "shop", shop)
    add_files(service, "erp", drop)
    yield service
    service.close()


def stock_rows(values: dict[str, int], location: str = MAIN) -> list[dict[str, Any]]:
    return [{"sku": s, "location": location, "available": n} for s, n in values.items()]


# -- writes planned and never sent --------------------------------------------------------------
async def test_r01_one_stale_level_does_not_starve_the_rest_of_its_batch(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    await svc.pull("shop", "inventory")
    a, b, c = skus(shop, 3)
    # A unit of A sells on the shop after our read and before our write.
    shop.data.set_available(a, location_id(shop), avail(shop, a) - 1)
    drop.write("inventory/stock.csv", stock_rows({a: 9, b: 9, c: 9}))
    await svc.pull("erp", "inventory")

    first = await svc.push("shop", "inventory", ERP, refresh=False)

    assert first.status == "succeeded", first.error
    assert [avail(shop, s) for s in (a, b, c)] == [9, 9, 9]
    again = await svc.push("shop", "inventory", ERP)
    assert again.plan.writes == []
    assert again.status == "succeeded"


async def test_r02_the_same_correction_needed_again_later_is_sent_again(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    await svc.pull("shop", "inventory")
    sku = skus(shop, 1)[0]
    loc = location_id(shop)
    shop.data.set_available(sku, loc, 3)
    drop.write("inventory/stock.csv", stock_rows({sku: 0}))
    await svc.pull("erp", "inventory")
    options = PushOptions(sources=("erp",), force=True)
    await svc.push("shop", "inventory", options)
    assert avail(shop, sku) == 0

    shop.data.set_available(sku, loc, 3)  # a return is restocked on the shop; the ERP says 0
    second = await svc.push("shop", "inventory", options)

    assert second.status == "succeeded"
    assert second.updated == 1
    assert avail(shop, sku) == 0


async def test_r17_one_refused_item_is_dead_lettered_and_the_rest_of_the_batch_lands(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    await svc.pull("shop", "inventory")
    a, b, c = skus(shop, 3)
    # The merchant deletes variant C after our read; its inventory item goes with it.
    gone = next(i for i, item in shop.data.tables["inventory_items"].items() if item["sku"] == c)
    with shop.data.lock:
        shop.data.tables["inventory_items"].pop(gone)
        shop.data.version += 1
    drop.write("inventory/stock.csv", stock_rows({a: 9, b: 9, c: 9}))
    await svc.pull("erp", "inventory")

    first = await svc.push("shop", "inventory", ERP, refresh=False)

    assert (avail(shop, a), avail(shop, b)) == (9, 9)
    assert first.status == "partial"
    assert first.dead_lettered == 1
    [letter] = [d for d in svc.store.dead_letters.unresolved() if d["direction"] == "push"]
    assert c in letter["reason"]
    assert "inventory item" in letter["reason"].lower()
    shop.data.set_available(a, location_id(shop), 4)
    second = await svc.push("shop", "inventory", ERP)
    assert avail(shop, a) == 9
    assert second.updated == 1


# -- wrong writes -----------------------------------------------------------------------------
async def test_r03_a_job_pushes_with_its_own_options_not_another_jobs(
    tmp_path: Path, vault: Vault, shop: ShopifySandbox
) -> None:
    jobs = {
        "erp-stock": {
            "entity": "inventory",
            "sources": ["erp"],
            "targets": ["shop"],
            "buffer": 5,
            "locations": {"WH1": MAIN},
        },
        "outlet-stock": {
            "entity": "inventory",
            "sources": ["outlet"],
            "targets": ["shop"],
            "buffer": 0,
            "locations": {"OUT": "Outlet"},
        },
    }
    with (
        FileSandbox(directory=tmp_path / "erp", skus=0, files=0) as erp,
        FileSandbox(directory=tmp_path / "outlet", skus=0, files=0) as outlet,
    ):
        service = hub(tmp_path / "project", vault, jobs=jobs)
        add_shop(service, "shop", shop)
        add_files(service, "erp", erp)
        add_files(service, "outlet", outlet)
        sku = skus(shop, 1)[0]
        erp.write("inventory/s.csv", stock_rows({sku: 20}, "WH1"))
        outlet.write("inventory/s.csv", stock_rows({sku: 7}, "OUT"))
        await service.run_job("erp-stock")
        assert avail(shop, sku) == 15
        erp.write("inventory/s2.csv", stock_rows({sku: 30}, "WH1"))
        await service.pull("erp", "inventory")

        results = await service.run_job("outlet-stock")

        assert results[-1].status == "succeeded"
        assert avail(shop, sku, "Outlet") == 7
        assert avail(shop, sku) == 15  # Main belongs to the other job
        with pytest.raises(ConfigError, match=r"erp-stock.*outlet-stock|outlet-stock.*erp-stock"):
            service.push_options("shop", "inventory")  # ambiguous without a job or sources
        service.close()


def cap_row(title: str, price: str, **extra: str) -> dict[str, str]:
    return {"handle": "cap", "title": title, "sku": "CAP-1", "price": price, **extra}


async def test_r04_a_field_the_platform_changed_alone_is_not_reverted_later(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    drop.write("products/a.csv", [cap_row("Cap", "10.00")])
    await svc.pull("erp", "products")
    await svc.push("shop", "products", ERP)
    cap = product_by_handle(shop, "cap")
    vid = cap["_variants"][0]
    shop.data.update("variants", vid, {"price": "15.00"})  # the merchant's own price

    assert (await svc.push("shop", "products", ERP)).plan.writes == []
    drop.write("products/b.csv", [cap_row("Cap renamed", "10.00")])
    await svc.pull("erp", "products")
    renamed = await svc.push("shop", "products", ERP)
    assert [c.field for w in renamed.plan.writes for c in w.changes] == ["title"]
    for _ in range(2):
        await svc.pull("erp", "products")
        quiet = await svc.push("shop", "products", ERP)
        assert quiet.plan.writes == []
        assert quiet.plan.conflicts == []
    assert shop.data.tables["variants"][vid]["price"] == "15.00"
    assert cap["title"] == "Cap renamed"


async def test_r04_a_field_the_platform_owns_stays_the_platforms_on_later_runs(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    options = PushOptions(sources=("erp",), ownership={"title": "platform"})
    drop.write("products/a.csv", [cap_row("Cap", "10.00")])
    await svc.pull("erp", "products")
    await svc.push("shop", "products", options)
    cap = product_by_handle(shop, "cap")
    shop.data.update("products", cap["id"], {"title": "Shop's Cap"})
    drop.write("products/b.csv", [cap_row("ERP Cap", "12.00")])
    await svc.pull("erp", "products")

    both = await svc.push("shop", "products", options)
    assert [(c.field, c.winner) for c in both.plan.conflicts] == [("title", "platform")]
    later = await svc.push("shop", "products", options)

    assert later.plan.writes == []
    assert cap["title"] == "Shop's Cap"
    assert shop.data.tables["variants"][cap["_variants"][0]]["price"] == "12.00"


async def test_r04_adopting_an_existing_product_keeps_platform_owned_fields(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    options = PushOptions(sources=("erp",), ownership={"title": "platform"})
    product = product_by_handle(shop, "sandbox-product-4")
    variant = variants_of(shop, product)[0]
    title = product["title"]
    drop.write(
        "products/a.csv",
        [
            {
                "handle": product["handle"],
                "title": "ERP title",
                "sku": variant["sku"],
                "price": variant["price"],
            }
        ],
    )
    await svc.pull("erp", "products")
    for _ in range(2):
        summary = await svc.push("shop", "products", options)
        assert summary.plan.writes == []
    assert product["title"] == title


async def test_r14_a_product_recreated_on_the_source_converges_on_the_target(
    tmp_path: Path, vault: Vault
) -> None:
    source, target = new_shop(products=8, orders=0), new_shop(products=8, orders=0)
    try:
        service = hub(
            tmp_path / "p",
            vault,
            jobs={"cat": {"entity": "products", "sources": ["a"], "targets": ["b"]}},
        )
        add_shop(service, "a", source)
        add_shop(service, "b", target)
        await service.run_job("cat")
        handle = "sandbox-product-5"
        old = product_by_handle(source, handle)
        with source.data.lock:
            for vid in old["_variants"]:
                source.data.tables["variants"].pop(vid)
            source.data.tables["products"].pop(old["id"])
            source.data.version += 1
        await anyio.sleep(1.05)  # the sandbox clock has second precision
        source.mutations._upsert_product(
            {
                "title": "Re-made product",
                "handle": handle,
                "status": "ACTIVE",
                "productOptions": [{"name": "Size", "values": [{"name": "S0"}]}],
                "variants": [
                    {
                        "sku": "SKU-0005-000",
                        "price": "55.00",
                        "optionValues": [{"optionName": "Size", "name": "S0"}],
                    }
                ],
            },
            {},
        )
        copy = product_by_handle(target, handle)
        titles = []
        for _ in range(4):
            push = (await service.run_job("cat"))[-1]
            titles.append(copy["title"])
            last = push
        assert titles == ["Re-made product"] * 4
        assert last.plan.writes == []
        service.close()
    finally:
        source.stop()
        target.stop()


async def test_r05_a_file_without_a_status_column_leaves_the_status_alone(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    draft = product_by_handle(shop, "sandbox-product-10")
    assert draft["status"] == "DRAFT"
    variant = variants_of(shop, draft)[0]
    drop.write(
        "products/p.csv",
        [
            {
                "handle": draft["handle"],
                "title": draft["title"],
                "sku": variant["sku"],
                "price": "99.00",
            }
        ],
    )
    await svc.pull("erp", "products")

    summary = await svc.push("shop", "products", ERP)

    assert summary.status == "succeeded"
    assert [c.field for w in summary.plan.writes for c in w.changes] == [
        f"variants[{variant['sku']}].price"
    ]
    assert draft["status"] == "DRAFT"
    assert variant["price"] == "99.00"


async def test_r06_a_price_in_another_currency_is_reported_never_written(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    product = product_by_handle(shop, "sandbox-product-3")
    variant = variants_of(shop, product)[0]
    before = variant["price"]
    drop.write(
        "products/p.csv",
        [
            {
                "handle": product["handle"],
                "title": product["title"],
                "sku": variant["sku"],
                "price": "19.99",
                "currency": "EUR",
            },
            {
                "handle": "eur-only",
                "title": "EUR only",
                "sku": "EUR-1",
                "price": "5.00",
                "currency": "EUR",
            },
        ],
    )
    await svc.pull("erp", "products")

    summary = await svc.push("shop", "products", ERP)

    assert summary.status == "partial"
    assert summary.plan.writes == []
    reasons = sorted(p.reason for p in summary.plan.problems)
    assert len(reasons) == 2
    assert all("EUR" in r and "USD" in r for r in reasons)
    assert variant["price"] == before
    assert all(p["handle"] != "eur-only" for p in shop.data.tables["products"].values())


async def test_r07_a_shipment_naming_no_channel_is_not_sent_to_every_shop(
    tmp_path: Path, vault: Vault, drop: FileSandbox
) -> None:
    us, eu = new_shop(), new_shop(seed=99)
    try:
        jobs = {"ship": {"entity": "fulfillments", "sources": ["erp"], "targets": ["us", "eu"]}}
        service = hub(tmp_path / "p", vault, jobs=jobs)
        add_shop(service, "us", us)
        add_shop(service, "eu", eu)
        add_files(service, "erp", drop)
        drop.write(
            "fulfillments/s.csv",
            [{"order": "#1000", "carrier": "UPS", "tracking_number": "1ZUS0001"}],
        )

        results = await service.run_job("ship")

        pushes = [r for r in results if hasattr(r, "plan")]
        assert [p.status for p in pushes] == ["partial", "partial"]
        assert all("channel" in p.plan.problems[0].reason for p in pushes)
        assert tracking_numbers(order_named(us, "#1000")) == []
        assert tracking_numbers(order_named(eu, "#1000")) == []

        drop.write(
            "fulfillments/s2.csv",
            [{"order": "#1000", "carrier": "UPS", "tracking_number": "1ZUS0001", "channel": "us"}],
        )
        await service.run_job("ship")
        assert tracking_numbers(order_named(us, "#1000")) == ["1ZUS0001"]
        assert tracking_numbers(order_named(eu, "#1000")) == []
        service.close()
    finally:
        us.stop()
        eu.stop()


async def test_r08_an_order_shipped_in_two_parcels_gets_both_by_line_and_quantity(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    order = order_named(shop, "#1002")
    units: dict[str, int] = {}
    for line in order["_lineItems"]:
        units[line["sku"]] = units.get(line["sku"], 0) + line["quantity"]
    first = sorted(units)[0]
    units[first] -= 1  # parcel 1 carries one unit of the first SKU, parcel 2 the rest
    parcel = {"order": "#1002", "carrier": "UPS"}
    rows = [{**parcel, "tracking_number": "PARCEL-1", "sku": first, "quantity": 1}]
    rows += [
        {**parcel, "tracking_number": "PARCEL-2", "sku": sku, "quantity": count}
        for sku, count in sorted(units.items())
        if count
    ]
    drop.write("fulfillments/s.csv", rows)
    await svc.pull("shop", "orders")
    await svc.pull("erp", "fulfillments")

    summary = await svc.push("shop", "fulfillments", ERP)

    assert summary.status == "succeeded", summary.plan.problems
    assert summary.created == 2
    assert sorted(tracking_numbers(order)) == ["PARCEL-1", "PARCEL-2"]
    assert order["displayFulfillmentStatus"] == "FULFILLED"
    again = await svc.push("shop", "fulfillments", ERP)
    assert again.plan.writes == []


async def test_r08_a_parcel_without_lines_on_a_fulfilled_order_is_reported_plainly(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    order = order_named(shop, "#1004")
    drop.write(
        "fulfillments/s.csv",
        [
            {"order": "#1004", "carrier": "UPS", "tracking_number": "P-1"},
            {"order": "#1004", "carrier": "UPS", "tracking_number": "P-2"},
        ],
    )
    await svc.pull("erp", "fulfillments")

    summary = await svc.push("shop", "fulfillments", ERP)

    assert tracking_numbers(order) == ["P-1"]
    assert summary.status == "partial"
    [problem] = summary.plan.problems
    assert "P-2" in problem.key
    assert "sku and quantity" in problem.reason


async def test_r12_a_product_is_never_written_over_what_was_not_read(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    drop.write(
        "products/a.csv", [{"handle": "mug", "title": "Mug", "sku": "MUG-1", "price": "8.00"}]
    )
    await svc.pull("erp", "products")
    await svc.push("shop", "products", ERP)
    mug = product_by_handle(shop, "mug")
    [created] = variants_of(shop, mug)
    shop.data.set_available("MUG-1", location_id(shop), 50)
    drop.write(
        "products/b.csv", [{"handle": "mug", "title": "Mug", "sku": "MUG-1", "price": "9.00"}]
    )
    await svc.pull("erp", "products")

    await svc.push("shop", "products", ERP)

    [after] = variants_of(shop, mug)
    assert after["id"] == created["id"]
    assert after["price"] == "9.00"
    assert avail(shop, "MUG-1") == 50

    existing = product_by_handle(shop, "sandbox-product-7")
    old = variants_of(shop, existing)
    tags = list(existing["tags"])
    stock = [avail(shop, v["sku"]) for v in old]
    drop.write(
        "products/c.csv",
        [
            {
                "handle": existing["handle"],
                "title": existing["title"],
                "sku": v["sku"],
                "price": "1.00",
            }
            for v in old
        ],
    )
    await svc.pull("erp", "products")
    summary = await svc.push("shop", "products", PushOptions(sources=("erp",), force=True))
    assert [w.creates for w in summary.plan.writes] == [False]
    assert existing["tags"] == tags
    assert [v["id"] for v in variants_of(shop, existing)] == [v["id"] for v in old]
    assert [avail(shop, v["sku"]) for v in old] == stock


async def test_r16_a_variant_deleted_on_the_shop_is_not_recreated(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    rows = [
        {"handle": "tee", "title": "Tee", "sku": s, "price": "10.00", "status": "active"}
        for s in ("T-S", "T-M")
    ]
    drop.write("products/a.csv", rows)
    await svc.pull("erp", "products")
    await svc.push("shop", "products", ERP)
    tee = product_by_handle(shop, "tee")
    gone = next(v for v in tee["_variants"] if shop.data.tables["variants"][v]["sku"] == "T-M")
    shop.data.tables["variants"].pop(gone)
    tee["_variants"].remove(gone)
    shop.data.update("products", tee["id"])

    summary = await svc.push("shop", "products", ERP)

    assert summary.plan.writes == []
    assert [v["sku"] for v in variants_of(shop, tee)] == ["T-S"]


async def test_r13_two_way_stock_jobs_do_not_echo_or_drain(tmp_path: Path, vault: Vault) -> None:
    a, b = (
        new_shop(products=3, orders=0, big_products=0),
        new_shop(products=3, orders=0, big_products=0),
    )
    try:
        jobs = {
            "a-to-b": {"entity": "inventory", "sources": ["a"], "targets": ["b"], "buffer": 2},
            "b-to-a": {"entity": "inventory", "sources": ["b"], "targets": ["a"], "buffer": 2},
        }
        service = hub(tmp_path / "p", vault, jobs=jobs)
        add_shop(service, "a", a)
        add_shop(service, "b", b)
        sku = skus(a, 1)[0]
        a.data.set_available(sku, location_id(a), 10)
        trace = []
        for _ in range(3):
            for job in ("a-to-b", "b-to-a"):
                await service.run_job(job, force=True)
                trace.append((avail(a, sku), avail(b, sku)))
        assert trace == [(10, 8)] * 6

        b.data.set_available(sku, location_id(b), 5)  # a real sale on b
        await service.run_job("b-to-a", force=True)
        assert avail(a, sku) == 3
        service.close()
    finally:
        a.stop()
        b.stop()


async def test_r10_stock_settings_that_would_offer_more_than_exists_are_refused() -> None:
    from partnersync.config import ProjectConfig

    job = {"entity": "inventory", "sources": ["erp"], "targets": ["shop"]}
    with pytest.raises(ValueError, match="allocation"):
        ProjectConfig.model_validate(
            {"jobs": {"j": {**job, "allocation_by_target": {"shop": 1.5}}}}
        )
    with pytest.raises(ConfigError, match="allocation"):
        PushOptions(sources=("erp",), allocation=__import__("decimal").Decimal(3))
    with pytest.raises(ConfigError, match="buffer"):
        PushOptions(sources=("erp",), buffer=-7)


# -- replays and pulls that go backwards or miss data -----------------------------------------
async def test_r09_file_drops_are_read_whatever_their_dates(
    svc: Partnersync, drop: FileSandbox, tmp_path: Path
) -> None:
    def hub_stock() -> dict[str, int]:
        return {
            r.data["sku"]: r.data["available"] for r in svc.store.records.of("erp", "inventory")
        }

    assert drop.directory is not None
    drop.write("inventory/day1.csv", stock_rows({"A": 5}))
    await svc.pull("erp", "inventory")
    staging = tmp_path / "staging"
    staging.mkdir()
    moved = staging / "day2.csv"
    moved.write_text(f"sku,location,available\nB,{MAIN},7\n")
    old = time.time() - 600
    os.utime(moved, (old, old))
    os.replace(moved, drop.directory / "inventory" / "day2.csv")  # an atomic move keeps mtime
    await svc.pull("erp", "inventory")
    assert hub_stock() == {"A": 5, "B": 7}

    lagging = (datetime.now(UTC) - timedelta(minutes=15)).isoformat()
    drop.write(
        "inventory/day3.csv",
        [{"sku": "C", "location": MAIN, "available": 9, "updated_at": lagging}],
    )
    await svc.pull("erp", "inventory")
    assert hub_stock() == {"A": 5, "B": 7, "C": 9}

    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    rows = [
        {"handle": "tee", "title": "Tee", "sku": s, "price": "10.00", "updated_at": hour_ago}
        for s in ("T-S", "T-M", "T-L")
    ]
    drop.write("products/catalogue.csv", rows)
    await svc.pull("erp", "products")
    rows[1] = {**rows[1], "price": "12.00", "updated_at": datetime.now(UTC).isoformat()}
    drop.write("products/catalogue.csv", rows)
    await svc.pull("erp", "products")
    [tee] = svc.store.records.of("erp", "products")
    assert [(v["sku"], v["price"]["amount"]) for v in tee.data["variants"]] == [
        ("T-S", "10.00"),
        ("T-M", "12.00"),
        ("T-L", "10.00"),
    ]


async def test_r11_replaying_dead_letters_never_stores_an_older_version(
    tmp_path: Path, vault: Vault, shop: ShopifySandbox
) -> None:
    service = hub(tmp_path / "p", vault)
    add_shop(service, "shop", shop)
    await service.pull("shop", "products")
    product = product_by_handle(shop, "sandbox-product-5")
    vid = product["_variants"][0]
    shop.data.update("variants", vid, {"price": "10.00"})
    shop.data.update("products", product["id"], {"title": ""})  # fails mapping: dead letter 1
    await service.pull("shop", "products")
    await anyio.sleep(1.05)
    shop.data.update("variants", vid, {"price": "20.00"})  # still blank: dead letter 2
    await service.pull("shop", "products")
    letters = service.store.dead_letters.unresolved()
    assert len(letters) == 2
    service.close()

    fixed = hub(
        tmp_path / "p",
        vault,
        accounts={"shop": {"mapping": {"products": {"title": {"source": "handle"}}}}},
    )
    outcomes = await fixed.replay([d["id"] for d in letters])

    record = fixed.store.records.find("shop", "products", product["id"])
    assert record is not None
    price = next(
        v["price"]["amount"] for v in record["data"]["variants"] if v["external_id"] == vid
    )
    assert price == "20.00"
    assert any("newer" in text for _, text in outcomes)
    assert fixed.store.dead_letters.unresolved() == []
    fixed.close()


async def test_r15_replaying_a_dead_push_plans_from_the_current_state(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    def price() -> str:
        return str(shop.data.tables["variants"][vid]["price"])

    drop.write("products/a.csv", [cap_row("Cap", "10.00", status="active")])
    await svc.pull("erp", "products")
    await svc.push("shop", "products", ERP)
    vid = product_by_handle(shop, "cap")["_variants"][0]
    drop.write("products/b.csv", [cap_row("Cap", "20.00", status="active")])
    await svc.pull("erp", "products")
    shop.faults.drop("ProductSet", 4)  # four lost answers: the write is dead-lettered
    dead = await svc.push("shop", "products", ERP)
    assert dead.dead_lettered == 1
    drop.write("products/c.csv", [cap_row("Cap", "30.00", status="active")])
    await svc.pull("erp", "products")
    assert (await svc.push("shop", "products", ERP)).status == "succeeded"
    assert price() == "30.00"

    letters = [d["id"] for d in svc.store.dead_letters.unresolved(limit=100)]
    await svc.replay(letters)

    assert price() == "30.00"
    assert (await svc.push("shop", "products", ERP)).plan.writes == []


# -- decisions --------------------------------------------------------------------------------
async def test_r18_mapped_locations_add_up_and_the_first_source_wins_a_shared_position(
    tmp_path: Path, vault: Vault, shop: ShopifySandbox
) -> None:
    with (
        FileSandbox(directory=tmp_path / "e1", skus=0, files=0) as e1,
        FileSandbox(directory=tmp_path / "e2", skus=0, files=0) as e2,
    ):
        service = hub(tmp_path / "p", vault)
        add_shop(service, "shop", shop)
        add_files(service, "erp1", e1)
        add_files(service, "erp2", e2)
        a, b = skus(shop, 2)
        e1.write(
            "inventory/s.csv",
            [
                {"sku": a, "location": MAIN, "available": 6},
                {"sku": b, "location": "WH1", "available": 3},
                {"sku": b, "location": "WH2", "available": 4},
            ],
        )
        e2.write("inventory/s.csv", [{"sku": a, "location": MAIN, "available": 9}])
        await service.pull("erp1", "inventory")
        await service.pull("erp2", "inventory")
        options = PushOptions(
            sources=("erp1", "erp2"), buffer=2, locations={"WH1": MAIN, "WH2": MAIN}, force=True
        )

        await service.push("shop", "inventory", options)

        assert avail(shop, a) == 6 - 2  # erp1 is listed first: its count of A at Main wins
        assert avail(shop, b) == 3 + 4 - 2  # two warehouses feeding one shop location add up
        service.close()


async def test_r19_compare_and_set_sends_nothing_for_an_equal_value(
    svc: Partnersync, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    await svc.pull("shop", "inventory")
    sku = skus(shop, 1)[0]
    shop.data.set_available(sku, location_id(shop), 9)
    drop.write("inventory/s.csv", stock_rows({sku: 9}))
    await svc.pull("erp", "inventory")
    shop.log.clear()

    summary = await svc.push("shop", "inventory", ERP)

    assert summary.status == "succeeded"
    assert write_ops(shop) == []
    assert summary.updated == 0


async def test_r20_an_order_cancelled_after_export_goes_out_again_as_an_update(
    tmp_path: Path, vault: Vault, drop: FileSandbox
) -> None:
    us, eu = new_shop(products=5, orders=3), new_shop(products=5, orders=3, seed=3)
    try:
        service = hub(tmp_path / "p", vault)
        add_shop(service, "us", us)
        add_shop(service, "eu", eu)
        add_files(service, "erp", drop)
        await service.pull("us", "orders")
        await service.pull("eu", "orders")
        options = PushOptions(sources=("us", "eu"))
        await service.push("erp", "orders", options)
        order = next(iter(us.data.tables["orders"].values()))
        await anyio.sleep(1.05)
        us.data.update("orders", order["id"], {"cancelledAt": order["updatedAt"]})
        await service.pull("us", "orders")

        second = await service.push("erp", "orders", options)
        third = await service.push("erp", "orders", options)

        assert drop.directory is not None
        rows = [
            orjson.loads(line)
            for path in sorted((drop.directory / "orders-out").glob("*.jsonl"))
            for line in path.read_bytes().splitlines()
        ]
        assert len(rows) == 7
        assert {(r["channel"], r["number"]) for r in rows if r["event"] == "created"} == {
            ("us", "#1000"),
            ("us", "#1001"),
            ("us", "#1002"),
            ("eu", "#1000"),
            ("eu", "#1001"),
            ("eu", "#1002"),
        }
        [update] = [r for r in rows if r["event"] == "updated"]
        assert update["external_id"] == order["id"]
        assert update["cancelled_at"] is not None
        assert (second.created, third.created) == (1, 0)
        service.close()
    finally:
        us.stop()
        eu.stop()

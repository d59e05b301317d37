"""Pushes from the hub to the sandbox Shopify and a file drop: exactly once, never overselling."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from partnersync.connectors.base import Capabilities
from partnersync.connectors.shopify.connector import ShopifyConnector
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.mutations import fulfillment_orders
from partnersync.service import Partnersync
from partnersync.sync.push import MassChangeError, PushEngine, PushOptions, pushed_quantity
from tests.integration.push_world import MAIN, level, skus
from tests.integration.push_world import write_ops as writes

pytestmark = pytest.mark.anyio


@pytest.fixture
def drop(tmp_path: Path) -> Iterator[FileSandbox]:
    sandbox = FileSandbox(directory=tmp_path / "drop", skus=0, files=0)
    with sandbox:
        yield sandbox


@pytest.fixture
def erp(service: Partnersync, drop: FileSandbox) -> str:
    service.add_account(name="erp", platform="file", base_url=drop.url, secrets={})
    return "erp"


def test_pushed_quantity_is_exact() -> None:
    assert pushed_quantity(10, 2, Decimal(1)) == 8
    assert pushed_quantity(1, 2, Decimal(1)) == 0
    assert pushed_quantity(10, 0, Decimal("0.3")) == 3
    assert pushed_quantity(7, 1, Decimal("0.5")) == 3


async def test_csv_stock_reaches_shopify_as_available_minus_buffer_once(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "inventory")
    chosen = skus(shop, 12)
    stock = {sku: n * 3 % 17 for n, sku in enumerate(chosen)}  # includes 0 and 1: below the buffer
    drop.write(
        "inventory/stock.csv",
        [{"sku": s, "location": MAIN, "available": q} for s, q in stock.items()],
    )
    await service.pull(erp, "inventory")

    options = PushOptions(sources=(erp,), buffer=2)
    summary = await service.push("shop", "inventory", options)

    assert summary.status == "succeeded"
    for sku, available in stock.items():
        assert level(shop, sku)["quantities"]["available"] == max(0, available - 2), sku
    changed = sum(1 for w in summary.plan.writes)
    assert summary.updated == changed > 0
    assert shop.mutations.applied["inventorySetQuantities"] == 1  # one batch for all levels

    shop.log.clear()
    again = await service.push("shop", "inventory", options)
    assert writes(shop) == []
    assert again.plan.writes == []
    assert again.plan.unchanged == len(stock)


async def test_allocation_and_an_unknown_sku_is_reported_not_created(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "inventory")
    sku = skus(shop, 1)[0]
    drop.write(
        "inventory/stock.csv",
        [
            {"sku": sku, "location": MAIN, "available": 11},
            {"sku": "NOT-ON-SHOPIFY", "location": MAIN, "available": 5},
        ],
    )
    await service.pull(erp, "inventory")
    items_before = len(shop.data.tables["inventory_items"])
    summary = await service.push(
        "shop", "inventory", PushOptions(sources=(erp,), buffer=1, allocation=Decimal("0.5"))
    )
    assert level(shop, sku)["quantities"]["available"] == 5  # floor((11 - 1) * 0.5)
    assert summary.status == "partial"
    assert len(shop.data.tables["inventory_items"]) == items_before
    [letter] = [d for d in service.store.dead_letters.unresolved() if d["direction"] == "push"]
    assert "unknown SKU 'NOT-ON-SHOPIFY'" in letter["reason"]
    assert letter["source_ref"] == "inventory/stock.csv:3"


async def test_a_level_that_changed_on_the_platform_is_reread_never_overwritten_blindly(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "inventory")
    sku = skus(shop, 1)[0]
    location = next(
        lid for lid, loc in shop.data.tables["locations"].items() if loc["name"] == MAIN
    )
    shop.data.set_available(sku, location, 40)  # a sale/restock after our last read
    drop.write("inventory/stock.csv", [{"sku": sku, "location": MAIN, "available": 9}])
    await service.pull(erp, "inventory")
    shop.log.clear()

    # No refresh: the level changes between our read and our write.
    summary = await service.push("shop", "inventory", PushOptions(sources=(erp,)), refresh=False)

    assert summary.status == "succeeded"
    assert level(shop, sku)["quantities"]["available"] == 9
    ops = [e["op"] for e in shop.log.entries]
    assert ops.count("SetInventory") == 2  # refused as stale, then applied after re-reading
    assert "ReadItemLevels" in ops
    assert shop.mutations.applied["inventorySetQuantities"] == 1


async def test_mass_change_guard_stops_a_broken_export(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "inventory")
    levels = service.store.records.of("shop", "inventory")
    in_stock = [
        r.data for r in levels if r.data["available"] > 0 and r.data["location_name"] == MAIN
    ]
    zeroes = in_stock[: len(levels) // 4 + 1]  # > 20 % of the channel's levels to zero
    drop.write(
        "inventory/broken.csv",
        [{"sku": r["sku"], "location": MAIN, "available": 0} for r in zeroes],
    )
    await service.pull(erp, "inventory")
    shop.log.clear()
    with pytest.raises(MassChangeError, match="refusing to push"):
        await service.push("shop", "inventory", PushOptions(sources=(erp,)))
    assert writes(shop) == []
    forced = await service.push("shop", "inventory", PushOptions(sources=(erp,), force=True))
    assert forced.updated == len(zeroes)


async def test_dropped_product_create_response_leaves_exactly_one_product(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    drop.write(
        "products/new.csv",
        [
            {
                "handle": "new-tee",
                "title": "New tee",
                "sku": "NT-S",
                "price": "19.90",
                "currency": "USD",
                "option_name": "Size",
                "option_value": "S",
            },
            {
                "handle": "new-tee",
                "title": "New tee",
                "sku": "NT-M",
                "price": "21.90",
                "currency": "USD",
                "option_name": "Size",
                "option_value": "M",
            },
        ],
    )
    await service.pull(erp, "products")
    shop.faults.drop("ProductSet")  # applied on the platform, answer lost

    summary = await service.push("shop", "products", PushOptions(sources=(erp,)))

    assert summary.status == "succeeded", summary.error
    created = [p for p in shop.data.tables["products"].values() if p["handle"] == "new-tee"]
    assert len(created) == 1
    [record] = service.store.records.of(erp, "products")
    assert service.store.bindings.get("shop", "products", record.canonical_key) == created[0]["id"]
    variants = [shop.data.tables["variants"][v] for v in created[0]["_variants"]]
    assert sorted((v["sku"], v["price"]) for v in variants) == [
        ("NT-M", "21.90"),
        ("NT-S", "19.90"),
    ]
    assert any(e.get("dropped") for e in shop.log.entries)
    shop.log.clear()
    await service.pull("shop", "products")
    again = await service.push("shop", "products", PushOptions(sources=(erp,)))
    assert again.plan.writes == []
    assert writes(shop) == []


@pytest.mark.parametrize(("policy", "expected"), [("hub", "20"), ("platform", "30")])
async def test_price_changed_on_both_sides_resolves_by_policy_and_is_recorded(
    service: Partnersync,
    shop: ShopifySandbox,
    drop: FileSandbox,
    erp: str,
    policy: str,
    expected: str,
) -> None:
    drop.write(
        "products/a.csv",
        [{"handle": "cap", "title": "Cap", "sku": "CAP-1", "price": "10.00", "currency": "USD"}],
    )
    await service.pull(erp, "products")
    await service.push("shop", "products", PushOptions(sources=(erp,)))
    cap = next(p for p in shop.data.tables["products"].values() if p["handle"] == "cap")
    variant_id = cap["_variants"][0]
    # Both sides change the price before the next sync.
    drop.write(
        "products/b.csv",
        [{"handle": "cap", "title": "Cap", "sku": "CAP-1", "price": "20.00", "currency": "USD"}],
    )
    shop.data.update("variants", variant_id, {"price": "30.00"})
    await service.pull(erp, "products")
    await service.pull("shop", "products")

    summary = await service.push(
        "shop", "products", PushOptions(sources=(erp,), ownership={"price": policy})
    )

    assert Decimal(shop.data.tables["variants"][variant_id]["price"]) == Decimal(expected)
    [conflict] = service.store.conflicts.of_run(summary.run_id)
    assert conflict["field"] == "variants[CAP-1].price"
    assert (conflict["policy"], conflict["winner"]) == (policy, policy)
    assert conflict["hub_value"] == '"20"'
    assert conflict["platform_value"] == '"30"'
    assert service.store.runs.get(summary.run_id)["conflicts"] == 1  # type: ignore[index]


async def test_fulfilment_reaches_the_order_with_tracking_exactly_once(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "orders")
    order = next(o for o in shop.data.tables["orders"].values() if not o["fulfillments"])
    drop.write(
        "fulfillments/shipped.csv",
        [
            {
                "order": order["name"],
                "carrier": "DHL",
                "tracking_number": "JD014600",
                "tracking_url": "https://track.example/JD014600",
            }
        ],
    )
    await service.pull(erp, "fulfillments")
    shop.faults.drop("FulfillmentCreate")  # the first answer is lost

    summary = await service.push("shop", "fulfillments", PushOptions(sources=(erp,)))

    assert summary.status == "succeeded", summary.error
    tracking = [t for f in order["fulfillments"] for t in f["trackingInfo"]]
    assert [(t["company"], t["number"]) for t in tracking] == [("DHL", "JD014600")]
    assert order["displayFulfillmentStatus"] == "FULFILLED"
    assert shop.mutations.applied["fulfillmentCreate"] == 1
    shop.log.clear()
    again = await service.push("shop", "fulfillments", PushOptions(sources=(erp,)))
    assert writes(shop) == []
    assert again.plan.unchanged == 1


async def test_bad_csv_rows_are_dead_lettered_with_file_line_and_reason(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "inventory")
    good, other = skus(shop, 2)
    drop.write(
        "inventory/stock.csv",
        [
            {"sku": good, "location": MAIN, "available": 7},
            {"sku": other, "location": MAIN, "available": "ten"},
            {"sku": "UNKNOWN-9", "location": MAIN, "available": 3},
            {"sku": good, "location": MAIN, "available": 8},
        ],
    )
    pulled = await service.pull(erp, "inventory")
    assert pulled.status == "partial"
    pushed = await service.push("shop", "inventory", PushOptions(sources=(erp,)))

    letters = {d["source_ref"]: d for d in service.store.dead_letters.unresolved(limit=100)}
    assert letters["inventory/stock.csv:3"]["field"] == "available"
    assert "not a whole number: 'ten'" in letters["inventory/stock.csv:3"]["reason"]
    assert letters["inventory/stock.csv:5"]["field"] == "sku"
    assert "duplicate SKU" in letters["inventory/stock.csv:5"]["reason"]
    assert "also on line 2" in letters["inventory/stock.csv:5"]["reason"]
    assert "unknown SKU 'UNKNOWN-9'" in letters["inventory/stock.csv:4"]["reason"]
    assert pushed.status == "partial"
    assert level(shop, good)["quantities"]["available"] == 7  # the good row went through


async def test_failed_write_goes_to_dead_letters_and_replay_sends_it(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "orders")
    fulfilled = next(o for o in shop.data.tables["orders"].values() if o["fulfillments"])
    drop.write(
        "fulfillments/s.csv",
        [{"order": fulfilled["name"], "carrier": "UPS", "tracking_number": "NEW-1"}],
    )
    await service.pull(erp, "fulfillments")
    summary = await service.push("shop", "fulfillments", PushOptions(sources=(erp,)))
    assert summary.status == "partial"
    [letter] = [d for d in service.store.dead_letters.unresolved() if d["direction"] == "push"]
    assert "nothing left to fulfil" in letter["reason"]
    # Someone cancels the fulfilment on the platform; replay plans the shipment again.
    [reopened] = fulfillment_orders(fulfilled)
    reopened["status"] = "OPEN"
    for line in reopened["_lines"]:
        line["remainingQuantity"] = line["totalQuantity"]
    shop.data.update("orders", fulfilled["id"], {"displayFulfillmentStatus": "UNFULFILLED"})
    outcomes = await service.replay([letter["id"]])
    assert any("succeeded" in text for _, text in outcomes)
    assert any(t["number"] == "NEW-1" for f in fulfilled["fulfillments"] for t in f["trackingInfo"])
    assert [d for d in service.store.dead_letters.unresolved() if d["direction"] == "push"] == []


async def test_a_lost_inventory_answer_is_retried_with_the_same_key_and_applied_once(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "inventory")
    sku = skus(shop, 1)[0]
    drop.write("inventory/stock.csv", [{"sku": sku, "location": MAIN, "available": 13}])
    await service.pull(erp, "inventory")
    shop.faults.drop("SetInventory")

    summary = await service.push("shop", "inventory", PushOptions(sources=(erp,)))

    assert summary.status == "succeeded", summary.error
    assert level(shop, sku)["quantities"]["available"] == 13
    assert shop.mutations.applied["inventorySetQuantities"] == 1
    assert shop.mutations.replayed["inventorySetQuantities"] == 1  # same key: the stored answer
    sent = [e for e in shop.log.entries if e.get("op") == "SetInventory"]
    assert len(sent) == 2
    assert sent[0].get("dropped")


async def test_product_update_adds_new_variants_and_keeps_fields_the_source_lacks(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    await service.pull("shop", "products")
    existing = next(p for p in shop.data.tables["products"].values() if len(p["_variants"]) == 1)
    variant = shop.data.tables["variants"][existing["_variants"][0]]
    tags = list(existing["tags"])
    drop.write(
        "products/update.csv",
        [
            {
                "handle": existing["handle"],
                "title": "Renamed",
                "sku": variant["sku"],
                "price": variant["price"],
            },
            {
                "handle": existing["handle"],
                "title": "Renamed",
                "sku": "BRAND-NEW-1",
                "price": "5.00",
            },
        ],
    )
    await service.pull(erp, "products")
    summary = await service.push("shop", "products", PushOptions(sources=(erp,)))
    assert summary.status == "succeeded", summary.error
    assert summary.updated == 1
    product = shop.data.tables["products"][existing["id"]]
    skus_now = sorted(shop.data.tables["variants"][v]["sku"] for v in product["_variants"])
    assert skus_now == sorted([variant["sku"], "BRAND-NEW-1"])
    assert existing["_variants"][0] in product["_variants"]  # updated in place, not recreated
    assert product["title"] == "Renamed"
    assert product["tags"] == tags  # the CSV has no tags column: the shop's tags stay


async def test_a_create_is_never_planned_where_the_writer_declares_only_update(
    service: Partnersync, shop: ShopifySandbox, drop: FileSandbox, erp: str
) -> None:
    entities = ShopifyConnector.capabilities.entities
    products = entities["products"]
    assert products.writer is not None
    update_only = replace(products, writer=replace(products.writer, verbs=frozenset({"update"})))

    class UpdateOnlyShopify(ShopifyConnector):
        capabilities = Capabilities({**entities, "products": update_only})

    drop.write(
        "products/new.csv", [{"handle": "brand-new", "title": "New", "sku": "NEW-1", "price": "5"}]
    )
    await service.pull(erp, "products")
    await service.pull("shop", "products")
    wired, _ = service.connector("shop")
    shop.log.clear()

    async with UpdateOnlyShopify(wired.account, auth=wired.auth) as connector:
        summary = await PushEngine(service.store).push(
            connector, "products", PushOptions(sources=(erp,))
        )

    assert summary.plan.writes == []
    [problem] = summary.plan.problems
    assert "can only update" in problem.reason
    assert writes(shop) == []


async def test_the_write_handle_lives_in_the_binder_not_in_the_canonical_record(
    service: Partnersync, shop: ShopifySandbox
) -> None:
    await service.pull("shop", "inventory")

    [copy, *_] = service.store.records.of("shop", "inventory")

    assert "inventory_item_id" not in copy.data
    item = next(
        i for i in shop.data.tables["inventory_items"].values() if i["sku"] == copy.data["sku"]
    )
    assert copy.handle == item["id"]

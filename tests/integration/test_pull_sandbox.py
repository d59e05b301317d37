"""Pulls against the loopback sandbox Shopify into real hubs (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.data import iso
from partnersync.service import Partnersync

pytestmark = pytest.mark.anyio


def returned(shop: ShopifySandbox, operation: str) -> int:
    """Records the platform returned for ``operation`` since the log was last cleared."""
    return sum(e.get("records", 0) for e in shop.log.entries if e.get("op") == operation)


def hub_snapshot(service: Partnersync, entity: str) -> list[tuple[str, str, str]]:
    from sqlalchemy import text

    with service.store.engine.connect() as connection:
        rows = connection.execute(
            text(
                "select canonical_key, content_hash, updated_at from records"
                " where entity = :e order by 1"
            ),
            {"e": entity},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_first_pull_brings_every_record(service: Partnersync, shop: ShopifySandbox) -> None:
    counts = shop.data.counts()
    for entity, table in [
        ("products", "products"),
        ("inventory", "inventory_levels"),
        ("orders", "orders"),
    ]:
        summary = await service.pull("shop", entity)
        assert summary.status == "succeeded", summary.error
        assert summary.progress.created == counts[table]
        assert service.store.records.count(entity) == counts[table]
    big_product = min(shop.data.tables["products"])  # the generator puts the big one first
    record = service.store.records.find("shop", "products", big_product)
    assert record is not None
    assert (
        len(record["data"]["variants"])
        == len(shop.data.tables["products"][big_product]["_variants"])
        > 100
    )
    big_order = min(shop.data.tables["orders"])
    order = service.store.records.find("shop", "orders", big_order)
    assert order is not None
    assert len(order["data"]["line_items"]) == 25
    newest = max(p["updatedAt"] for p in shop.data.tables["products"].values())
    assert (
        service.store.cursors.get("shop", "products") == datetime.fromisoformat(newest).isoformat()
    )


async def test_incremental_pull_fetches_only_what_changed(
    service: Partnersync, shop: ShopifySandbox
) -> None:
    await service.pull("shop", "products")
    cursor = datetime.fromisoformat(service.store.cursors.get("shop", "products") or "")
    overlap = timedelta(seconds=service.project.overlap_seconds("shop"))
    products = shop.data.tables["products"]
    changed = sorted(products)[10:17]  # seven small products
    in_overlap = {
        pid
        for pid, p in products.items()
        if datetime.fromisoformat(p["updatedAt"]) >= cursor - overlap
    } - set(changed)
    for pid in changed:
        shop.data.update("products", pid, {"title": products[pid]["title"] + " v2"})
    shop.log.clear()

    summary = await service.pull("shop", "products")

    assert returned(shop, "Products") == len(changed) + len(in_overlap)
    assert summary.progress.updated == len(changed)
    assert summary.progress.created == 0
    assert summary.progress.unchanged == len(in_overlap)
    # A count (it decides between paging and a bulk operation for a window over an hour
    # old), then one page: no re-walk.
    assert [e["op"] for e in shop.log.entries] == ["Count", "Shop", "Products"]
    assert summary.progress.requests == 3  # the count is part of the run
    for pid in changed:
        record = service.store.records.find("shop", "products", pid)
        assert record is not None
        assert record["data"]["title"].endswith(" v2")


async def test_a_second_pull_without_changes_writes_nothing(
    service: Partnersync, shop: ShopifySandbox
) -> None:
    for entity in ("products", "inventory", "orders"):
        await service.pull("shop", entity)
    before = {e: hub_snapshot(service, e) for e in ("products", "inventory", "orders")}
    for entity in ("products", "inventory", "orders"):
        summary = await service.pull("shop", entity)
        assert (summary.progress.created, summary.progress.updated) == (0, 0)
        assert summary.status == "succeeded"
    assert {e: hub_snapshot(service, e) for e in before} == before


@pytest.mark.parametrize("overlap_seconds", [120, 0])
async def test_record_written_late_during_a_pull_is_caught_by_the_overlap(
    tmp_path: Any, vault: Any, shop: ShopifySandbox, overlap_seconds: int
) -> None:
    from tests.conftest import make_service, wire_shop

    service = make_service(tmp_path / "p", vault, sync={"overlap_seconds": overlap_seconds})
    wire_shop(service, shop, page_size=20)
    products = shop.data.tables["products"]
    newest = max(datetime.fromisoformat(p["updatedAt"]) for p in products.values())
    late = sorted(products)[5]
    pages_seen = 0

    def late_write(entry: dict[str, Any]) -> None:
        # While the last page is being served, a write lands whose timestamp (30 s before the
        # newest record) is already behind the pull's position: this pull cannot see it.
        nonlocal pages_seen
        if entry.get("op") == "Products":
            pages_seen += 1
            if pages_seen == 3:
                shop.data.update(
                    "products",
                    late,
                    {"title": "late write"},
                    updated_at=iso(newest - timedelta(seconds=30)),
                )

    shop.faults.after_request.append(late_write)
    first = await service.pull("shop", "products")
    assert first.progress.pages == 3
    assert service.store.records.find("shop", "products", late)["data"]["title"] != "late write"  # type: ignore[index]

    second = await service.pull("shop", "products")
    title = service.store.records.find("shop", "products", late)["data"]["title"]  # type: ignore[index]
    if overlap_seconds:
        assert title == "late write"
        assert second.progress.updated == 1
    else:
        # Without an overlap the late write is lost: this is why the overlap exists.
        assert title != "late write"
    service.close()


async def test_bad_records_go_to_dead_letters_and_the_rest_lands(
    service: Partnersync, shop: ShopifySandbox
) -> None:
    data = shop.data
    bad_product = sorted(data.tables["products"])[3]
    bad_variant = data.tables["products"][bad_product]["_variants"][0]
    data.update("variants", bad_variant, {"price": "abc"})
    bad_item = sorted(data.tables["inventory_items"])[4]
    data.update("inventory_items", bad_item, {"sku": None})
    bad_order = sorted(data.tables["orders"])[2]
    data.update("orders", bad_order, {"createdAt": "not-a-date"})
    counts = data.counts()

    results = {e: await service.pull("shop", e) for e in ("products", "inventory", "orders")}

    assert {e: s.status for e, s in results.items()} == dict.fromkeys(results, "partial")
    assert service.store.records.count("products") == counts["products"] - 1
    levels_of_bad_item = len(data.tables["inventory_items"][bad_item]["_levels"])
    assert (
        service.store.records.count("inventory") == counts["inventory_levels"] - levels_of_bad_item
    )
    assert service.store.records.count("orders") == counts["orders"] - 1
    letters = {
        (d["entity"], d["external_id"]): d for d in service.store.dead_letters.unresolved(limit=100)
    }
    assert letters[("products", bad_product)]["field"].startswith("variants[0].price")
    assert "not a decimal" in letters[("products", bad_product)]["reason"]
    assert letters[("orders", bad_order)]["field"] == "created_at"
    inventory_letters = [d for (e, _), d in letters.items() if e == "inventory"]
    assert len(inventory_letters) == levels_of_bad_item
    assert all(d["field"] == "sku" for d in inventory_letters)
    payload = service.store.dead_letters.payload(letters[("orders", bad_order)]["id"])
    assert payload["createdAt"] == "not-a-date"
    # The cursor still moved past the bad records: they are safe in the dead-letter table.
    newest = max(o["updatedAt"] for o in data.tables["orders"].values())
    assert service.store.cursors.get("shop", "orders") == datetime.fromisoformat(newest).isoformat()
    # Reading the same broken record again does not pile up dead letters.
    again = await service.pull("shop", "orders", full=True)
    assert again.progress.dead_lettered == 1
    assert len(service.store.dead_letters.unresolved(entity="orders")) == 1


async def test_inventory_checkpoints_at_run_start_and_picks_up_level_changes(
    service: Partnersync, shop: ShopifySandbox
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    first = await service.pull("shop", "inventory")
    cursor = datetime.fromisoformat(service.store.cursors.get("shop", "inventory") or "")
    assert before <= cursor + timedelta(seconds=1)
    assert cursor <= datetime.now(UTC)
    location = next(iter(shop.data.tables["locations"]))
    shop.data.set_available("SKU-0005-000", location, 999)
    shop.data.set_available("SKU-0006-001", location, 0) if any(
        v["sku"] == "SKU-0006-001" for v in shop.data.tables["variants"].values()
    ) else shop.data.set_available("SKU-0007-000", location, 0)
    second = await service.pull("shop", "inventory")
    assert first.progress.created == shop.data.counts()["inventory_levels"]
    assert second.progress.updated == 2
    assert second.progress.created == 0


async def test_dlq_replay_maps_a_record_again_after_a_mapping_fix(
    tmp_path: Any, vault: Any, shop: ShopifySandbox
) -> None:
    from tests.conftest import make_service, wire_shop

    database = f"sqlite:///{tmp_path / 'hub.db'}"
    service = make_service(tmp_path / "p", vault, database)
    wire_shop(service, shop)
    item_id = sorted(shop.data.tables["inventory_items"])[0]
    shop.data.update("inventory_items", item_id, {"sku": None})
    summary = await service.pull("shop", "inventory")
    letters = service.store.dead_letters.unresolved()
    assert summary.status == "partial"
    assert letters
    assert all(d["field"] == "sku" for d in letters)
    still = await service.replay([letters[0]["id"]])
    assert "still fails" in still[0][1]
    service.close()

    # The brand decides: use the inventory item's id where a SKU is missing.
    fixed = make_service(
        tmp_path / "p",
        vault,
        database,
        accounts={
            "shop": {"mapping": {"inventory": {"sku": {"source": "item.id", "default": None}}}}
        },
    )
    outcomes = await fixed.replay([d["id"] for d in letters])
    assert all("mapped and stored" in text for _, text in outcomes)
    assert fixed.store.dead_letters.unresolved() == []
    level_id = shop.data.tables["inventory_items"][item_id]["_levels"][0]
    record = fixed.store.records.find("shop", "inventory", level_id)
    assert record is not None
    assert record["data"]["sku"] == item_id
    fixed.close()

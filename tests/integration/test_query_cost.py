"""Requested cost tracks actual cost (issue 7). Shopify scales a connection's cost with the
logarithm of its page size, so our own queries ask for the largest page Shopify serves (250)
with nested batches sized from what the shop really has — the up-front reservation stays close
to what the query then costs."""

from __future__ import annotations

from pathlib import Path

import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN, make_service, new_vault, wire_shop

pytestmark = pytest.mark.anyio

FACTOR = 2.0
"""Requested ÷ actual cost, summed over a full pull of each entity, stays under this (the first
page asks for 10 nested records each; later pages ask for the most any record had)."""

NESTED = {"Products": "variantsFirst", "Orders": "lineItemsFirst", "InventoryItems": "levelsFirst"}


@pytest.mark.parametrize(
    ("entity", "op"),
    [("products", "Products"), ("orders", "Orders"), ("inventory", "InventoryItems")],
)
async def test_requested_cost_stays_within_a_factor_of_actual_cost(
    tmp_path: Path, entity: str, op: str
) -> None:
    with ShopifySandbox(
        token=SHOP_TOKEN, restore_rate=1_000_000.0, products=120, orders=200
    ) as shop:
        service = wire_shop(make_service(tmp_path / "p", new_vault()), shop, bulk="never")
        summary = await service.pull("shop", entity)
        assert summary.status == "succeeded"
        entries = [e for e in shop.log.entries if e.get("requested")]
        requested = sum(e["requested"] for e in entries)
        actual = sum(e["actual"] for e in entries)
        assert requested <= FACTOR * actual, (requested, actual)
        pages = [e for e in entries if e["op"] == op]
        # Every page asks for the largest page Shopify serves: its cost grows with the log.
        assert [p["variables"]["first"] for p in pages] == [250] * len(pages)
        service.close()


async def test_nested_batches_shrink_to_what_the_shop_has(tmp_path: Path) -> None:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, products=120) as shop:
        service = wire_shop(make_service(tmp_path / "p", new_vault()), shop, bulk="never")
        assert (await service.pull("shop", "inventory")).status == "succeeded"
        pages = [e for e in shop.log.entries if e.get("op") == "InventoryItems"]
        assert len(pages) == 2  # 414 inventory items, 250 a page
        # An item has a level at each of the shop's 3 locations: the second page asks for 3.
        assert len(shop.data.tables["locations"]) == 3
        assert [p["variables"]["levelsFirst"] for p in pages] == [10, 3]
        assert pages[1]["requested"] < pages[0]["requested"]
        service.close()

"""Requested cost tracks actual cost (issue 7): our own queries against the demo shop ask for
nested batches sized from what the shop really has, so Shopify's up-front reservation is not
several times what the query then costs — and pages can grow into the cost that frees."""

from __future__ import annotations

from pathlib import Path

import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN, make_service, new_vault, wire_shop

pytestmark = pytest.mark.anyio

FACTOR = 3.0
"""Requested ÷ actual cost, summed over a full pull of each entity, stays under this (the first
page still asks for 10 nested records each; later pages ask for what 95 % of records have)."""


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
        assert len(pages) >= 2
        # Later pages reserve less per record than the first one did.
        first, last_full = pages[0], pages[-2]
        assert last_full["requested"] / last_full["records"] < first["requested"] / first["records"]
        service.close()

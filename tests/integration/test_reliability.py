"""Scenarios from RELIABILITY.md that the pull and push engines must survive (T3, T4, T23)."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from partnersync.auth.vault import Vault
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.data import iso
from partnersync.sync.push import PushOptions
from tests.conftest import SHOP_TOKEN, make_service, wire_shop

pytestmark = pytest.mark.anyio


async def test_t3_boundary_ties_across_pages_and_inserts_with_the_same_timestamp(
    tmp_path: Path, vault: Vault
) -> None:
    with ShopifySandbox(
        token=SHOP_TOKEN, restore_rate=1_000_000.0, products=300, big_products=0, orders=0
    ) as shop:
        service = wire_shop(make_service(tmp_path, vault), shop, page_size=25)
        products = shop.data.tables["products"]
        tie = iso(shop.data.now() - timedelta(hours=2))
        for product_id in sorted(products)[:200]:  # 200 records share one updated_at over 8 pages
            shop.data.update("products", product_id, updated_at=tie)
        added = 0

        def insert_ties(entry: dict[str, Any]) -> None:
            nonlocal added
            if entry.get("op") == "Products" and added < 10:
                victim = sorted(products)[200 + added]  # move an untouched product onto the tie
                shop.data.update("products", victim, updated_at=tie)
                added += 1

        shop.faults.after_request.append(insert_ties)
        first = await service.pull("shop", "products")
        shop.faults.after_request.clear()
        shop.log.clear()
        second = await service.pull("shop", "products")

        assert service.store.records.count("products") == len(products) == 300
        assert first.status == second.status == "succeeded"
        tied = sum(1 for p in products.values() if p["updatedAt"] == tie)
        assert tied == 210
        # No loop: the first run needs ceil(300 / 25) pages plus the shop lookup, give or take
        # the records that moved while it paged.
        assert first.progress.requests <= 300 // 25 + 1 + 2
        assert second.progress.created == 0
        service.close()


async def test_t4_records_modified_and_inserted_during_pagination_are_not_lost(
    tmp_path: Path, vault: Vault
) -> None:
    with ShopifySandbox(
        token=SHOP_TOKEN, restore_rate=1_000_000.0, products=200, big_products=0, orders=0
    ) as shop:
        service = wire_shop(make_service(tmp_path, vault), shop, page_size=20)
        products = shop.data.tables["products"]
        rng = random.Random(4)

        def churn(entry: dict[str, Any]) -> None:
            if entry.get("op") != "Products":
                return
            for product_id in rng.sample(sorted(products), 5):  # ~5 % moved to later pages
                shop.data.update("products", product_id, {"title": f"changed {rng.random():.6f}"})

        shop.faults.after_request.append(churn)
        await service.pull("shop", "products")
        shop.faults.after_request.clear()
        await service.pull("shop", "products")

        for product_id, product in products.items():
            record = service.store.records.find("shop", "products", product_id)
            assert record is not None, product_id
            assert record["data"]["title"] == product["title"], product_id
        service.close()


async def test_t23_product_creates_with_a_fifth_of_answers_lost_apply_exactly_once(
    tmp_path: Path, vault: Vault, shop: ShopifySandbox
) -> None:
    service = wire_shop(make_service(tmp_path / "p", vault), shop)
    drop = FileSandbox(directory=tmp_path / "drop", skus=0, files=0).start()
    service.add_account(name="erp", platform="file", base_url=drop.url, secrets={})
    handles = [f"bulk-{n:03d}" for n in range(40)]
    drop.write(
        "products/bulk.csv",
        [{"handle": h, "title": h.title(), "sku": h.upper(), "price": "9.99"} for h in handles],
    )
    await service.pull("erp", "products")
    shop.faults.drop_rate("ProductSet", 0.2, seed=23)

    summary = await service.push("shop", "products", PushOptions(sources=("erp",)))

    assert summary.status == "succeeded", summary.error
    assert sum(1 for e in shop.log.entries if e.get("dropped")) >= 5
    on_shop = [p for p in shop.data.tables["products"].values() if p["handle"].startswith("bulk-")]
    assert sorted(p["handle"] for p in on_shop) == handles  # each exactly once
    bound = {
        service.store.bindings.get("shop", "products", r.canonical_key)
        for r in service.store.records.of("erp", "products")
    }
    assert bound == {p["id"] for p in on_shop}
    again = await service.push("shop", "products", PushOptions(sources=("erp",)))
    assert again.created == again.updated == 0
    service.close()

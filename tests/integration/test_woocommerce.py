"""WooCommerce end to end against its loopback sandbox: reads, limits, errors, writes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from partnersync.auth.vault import Vault
from partnersync.connectors.woocommerce.mappers import gmt
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.woocommerce import WooCommerceSandbox
from partnersync.service import Partnersync
from partnersync.sync.push import PushOptions
from tests.integration.push_world import add_files, hub

pytestmark = pytest.mark.anyio


def add_store(service: Partnersync, name: str, store: WooCommerceSandbox, **secrets: str) -> None:
    service.add_account(
        name=name,
        platform="woocommerce",
        base_url=store.url,
        secrets={**store.credentials(), **secrets},
        allow_loopback=True,
    )


@pytest.fixture
def store() -> Iterator[WooCommerceSandbox]:
    with WooCommerceSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def drop(tmp_path: Path) -> Iterator[FileSandbox]:
    with FileSandbox(directory=tmp_path / "drop", skus=0, files=0) as sandbox:
        yield sandbox


@pytest.fixture
def svc(
    tmp_path: Path, vault: Vault, store: WooCommerceSandbox, drop: FileSandbox
) -> Iterator[Any]:
    service = hub(tmp_path / "project", vault)
    add_store(service, "woo", store)
    add_files(service, "erp", drop)
    yield service
    service.close()


def served(store: WooCommerceSandbox, op: str) -> list[dict[str, Any]]:
    return [e for e in store.log.entries if e.get("op") == op]


async def test_an_incremental_pull_reads_only_what_changed(
    svc: Partnersync, store: WooCommerceSandbox
) -> None:
    first = await svc.pull("woo", "products")
    assert first.progress.created == len(store.data.products)
    changed = sorted(store.data.products)[:2]
    # Re-read besides them: what the overlap (120 s) and the strict-after second cover.
    stamps = {i: gmt(p["date_modified_gmt"]) for i, p in store.data.products.items()}
    floor = max(stamps.values()) - timedelta(seconds=121)
    overlap = sum(1 for i, s in stamps.items() if i not in changed and s > floor)
    await anyio.sleep(1.05)  # WooCommerce times have second precision
    for product_id in changed:
        store.data.update_product(product_id, {"name": f"Renamed {product_id}"})
    store.log.clear()

    second = await svc.pull("woo", "products")

    assert sum(e["records"] for e in served(store, "list_products")) == 2 + overlap
    assert (second.progress.updated, second.progress.created) == (2, 0)
    assert all(e["query"]["dates_are_gmt"] == "true" for e in served(store, "list_products"))
    record = svc.store.records.find("woo", "products", str(changed[0]))
    assert record is not None
    assert record["data"]["title"] == f"Renamed {changed[0]}"


async def test_pages_of_a_hundred_walk_to_the_end(tmp_path: Path, vault: Vault) -> None:
    with WooCommerceSandbox(products=250, orders=0) as big:
        service = hub(tmp_path / "p", vault)
        add_store(service, "woo", big)

        summary = await service.pull("woo", "orders")
        products = await service.pull("woo", "products")

        pages = served(big, "list_products")
        assert [e["query"]["per_page"] for e in pages] == ["100"] * len(pages)
        assert len(pages) == 3
        assert products.progress.created == 250
        assert summary.progress.fetched == 0
        service.close()


async def test_a_throttle_answer_is_waited_out_before_the_next_request(
    tmp_path: Path, vault: Vault
) -> None:
    with WooCommerceSandbox(products=12, orders=0, throttle_every=2, retry_after=0.5) as slow:
        service = hub(tmp_path / "p", vault)
        add_store(service, "woo", slow)

        summary = await service.pull("woo", "products")

        assert summary.status == "succeeded"
        assert summary.progress.created == 12
        entries = slow.log.entries
        throttled = [i for i, e in enumerate(entries) if e.get("throttled")]
        assert throttled
        for index in throttled:
            assert entries[index + 1]["t"] - entries[index]["t"] >= 0.5
        service.close()


async def test_a_refused_request_is_not_retried_and_the_run_fails(
    svc: Partnersync, store: WooCommerceSandbox
) -> None:
    store.faults.fail(400)

    summary = await svc.pull("woo", "products")

    assert summary.status == "failed"
    assert "HTTP 400" in (summary.error or "")
    assert [e["status"] for e in store.log.entries] == [400]


async def test_a_wrong_secret_is_an_authentication_error(
    tmp_path: Path, vault: Vault, store: WooCommerceSandbox
) -> None:
    service = hub(tmp_path / "p", vault)
    add_store(service, "woo", store, consumer_secret="cs_wrong")

    summary = await service.pull("woo", "products")

    assert summary.status == "failed"
    assert "AuthenticationError" in (summary.error or "")
    assert "signature" in (summary.error or "")
    service.close()


async def test_stock_from_a_csv_reaches_the_store_once_in_batches_of_a_hundred(
    tmp_path: Path, vault: Vault, drop: FileSandbox
) -> None:
    with WooCommerceSandbox(products=180, orders=0) as big:
        service = hub(tmp_path / "p", vault)
        add_store(service, "woo", big)
        add_files(service, "erp", drop)
        wanted = {sku: (n * 7) % 31 + 1 for n, sku in enumerate(big.data.skus())}
        drop.write(
            "inventory/stock.csv",
            [{"sku": s, "location": "default", "available": q} for s, q in wanted.items()],
        )
        await service.pull("erp", "inventory")

        first = await service.push("woo", "inventory", PushOptions(sources=("erp",), buffer=1))

        assert first.status == "succeeded", first.plan.problems
        assert {s: big.data.stock_of(s) for s in wanted} == {s: q - 1 for s, q in wanted.items()}
        batches = [e for e in big.log.entries if e.get("write")]
        assert batches
        assert all(e["items"] <= 100 for e in batches)
        big.log.clear()
        again = await service.push("woo", "inventory", PushOptions(sources=("erp",), buffer=1))
        assert again.plan.writes == []
        assert [e for e in big.log.entries if e.get("write")] == []
        service.close()


async def test_a_shipment_completes_the_order_with_a_tracking_note_once(
    svc: Partnersync, store: WooCommerceSandbox, drop: FileSandbox
) -> None:
    order = next(o for o in store.data.orders.values() if o["status"] == "processing")
    drop.write(
        "fulfillments/s.csv",
        [{"order": f"#{order['number']}", "carrier": "UPS", "tracking_number": "1ZWOO1"}],
    )
    await svc.pull("erp", "fulfillments")
    store.faults.drop("create_note")  # the note lands, its answer is lost

    first = await svc.push("woo", "fulfillments", PushOptions(sources=("erp",)))

    assert first.status == "succeeded", (first.error, first.plan.problems)
    notes = store.data.notes[order["id"]]
    assert [n["note"] for n in notes] == ["Shipped with UPS, tracking number 1ZWOO1"]
    assert order["status"] == "completed"
    await anyio.sleep(1.05)
    store.data.update_order(order["id"], {"customer_note": "leave at the door"})
    again = await svc.push("woo", "fulfillments", PushOptions(sources=("erp",)))  # re-reads it
    assert again.plan.writes == []
    assert len(store.data.notes[order["id"]]) == 1


def test_woocommerces_own_python_client_works_against_the_sandbox(
    store: WooCommerceSandbox,
) -> None:
    # The official client (package "woocommerce", by Automattic) signs with its own OAuth 1.0a
    # code over plain HTTP; a sandbox that drifted from the protocol would refuse it.
    from woocommerce import API

    client = API(
        url=store.url,
        consumer_key=store.consumer_key,
        consumer_secret=store.consumer_secret,
        version="wc/v3",
        timeout=10,
    )
    listed = client.get("products", params={"per_page": 100, "orderby": "modified"})
    assert listed.status_code == 200, listed.text
    assert len(listed.json()) == len(store.data.products)
    assert listed.headers["X-WP-Total"] == str(len(store.data.products))
    variable = next(p for p in listed.json() if p["type"] == "variable")
    variations = client.get(f"products/{variable['id']}/variations").json()
    assert sorted(v["id"] for v in variations) == sorted(variable["variations"])
    simple = next(p for p in listed.json() if p["type"] == "simple")
    batch = client.post("products/batch", {"update": [{"id": simple["id"], "stock_quantity": 77}]})
    assert batch.status_code == 200, batch.text
    assert store.data.products[simple["id"]]["stock_quantity"] == 77
    wrong = API(
        url=store.url, consumer_key=store.consumer_key, consumer_secret="x", version="wc/v3"
    )
    assert wrong.get("products").status_code == 401


async def test_one_stock_file_feeds_shopify_and_woocommerce_in_one_job(
    tmp_path: Path, vault: Vault, store: WooCommerceSandbox, drop: FileSandbox
) -> None:
    from tests.integration.push_world import add_shop, avail, new_shop, skus

    shop = new_shop()
    try:
        shared = skus(shop, 4)
        simple = sorted(i for i, p in store.data.products.items() if p["type"] == "simple")
        for product_id, sku in zip(simple, shared, strict=False):
            store.data.update_product(product_id, {"sku": sku})  # the same catalogue on both
        jobs = {
            "stock": {
                "entity": "inventory",
                "sources": ["erp"],
                "targets": ["shop", "woo"],
                "buffer": 2,
                "allocation_by_target": {"woo": "0.5"},
            }
        }
        service = hub(tmp_path / "p", vault, jobs=jobs)
        add_shop(service, "shop", shop)
        add_store(service, "woo", store)
        add_files(service, "erp", drop)
        counts = dict(zip(shared, (1, 7, 12, 30), strict=True))
        drop.write(
            "inventory/s.csv",
            [{"sku": s, "location": "Main warehouse", "available": n} for s, n in counts.items()],
        )

        first = [r for r in await service.run_job("stock") if hasattr(r, "plan")]

        assert [p.status for p in first] == ["succeeded", "succeeded"]
        assert {s: avail(shop, s) for s in shared} == {s: max(0, n - 2) for s, n in counts.items()}
        assert {s: store.data.stock_of(s) for s in shared} == {
            s: max(0, n - 2) // 2 for s, n in counts.items()
        }
        again = [r for r in await service.run_job("stock") if hasattr(r, "plan")]
        assert [p.plan.writes for p in again] == [[], []]
        service.close()
    finally:
        shop.stop()


async def test_prices_and_names_are_pushed_to_existing_products_never_creating_one(
    svc: Partnersync, store: WooCommerceSandbox, drop: FileSandbox
) -> None:
    simple = next(p for p in store.data.products.values() if p["type"] == "simple")
    variable = next(p for p in store.data.products.values() if p["type"] == "variable")
    variations = [store.data.variations[v] for v in variable["variations"]]
    rows = [
        {"handle": simple["slug"], "title": "Renamed", "sku": simple["sku"], "price": "9.50"},
        *[
            {
                "handle": variable["slug"],
                "title": variable["name"],
                "sku": v["sku"],
                "price": "7.00",
                "compare_at_price": "10.00",
            }
            for v in variations
        ],
        {"handle": "brand-new", "title": "New", "sku": "NEW-1", "price": "1.00"},
    ]
    drop.write("products/p.csv", rows)
    await svc.pull("erp", "products")

    first = await svc.push("woo", "products", PushOptions(sources=("erp",), force=True))

    assert first.status == "partial"  # the new product is reported: this writer only updates
    [problem] = first.plan.problems
    assert "can only update" in problem.reason
    assert (simple["name"], simple["regular_price"], simple["price"]) == ("Renamed", "9.50", "9.50")
    assert {(v["regular_price"], v["sale_price"], v["price"]) for v in variations} == {
        ("10.00", "7.00", "7.00")
    }
    assert all(p["slug"] != "brand-new" for p in store.data.products.values())
    again = await svc.push("woo", "products", PushOptions(sources=("erp",), force=True))
    assert again.plan.writes == []


async def test_records_changed_during_a_walk_are_not_lost(tmp_path: Path, vault: Vault) -> None:
    # RELIABILITY T4: while the pull pages through products, the store keeps editing some of
    # them (they move to the end of the modified order). Page numbers would skip records.
    with WooCommerceSandbox(products=60, orders=0) as busy:
        service = hub(tmp_path / "p", vault)
        busy_ids = sorted(busy.data.products)
        edits = iter(range(len(busy_ids)))

        def edit_while_walking(entry: dict[str, Any]) -> None:
            if entry.get("op") == "list_products":
                for _ in range(2):
                    index = next(edits, None)
                    if index is not None:
                        product_id = busy_ids[(index * 7) % len(busy_ids)]
                        busy.data.update_product(product_id, {"name": f"edited {index}"})

        busy.faults.after_request.append(edit_while_walking)
        service.add_account(
            name="woo",
            platform="woocommerce",
            base_url=busy.url,
            secrets=busy.credentials(),
            options={"page_size": 5},
            allow_loopback=True,
        )
        await service.pull("woo", "products")
        busy.faults.after_request.clear()
        await service.pull("woo", "products")

        held = {r.external_id: r.data["title"] for r in service.store.records.of("woo", "products")}
        assert held == {str(i): p["name"] for i, p in busy.data.products.items()}
        service.close()


async def test_a_store_with_shipment_tracking_gets_a_tracking_item_not_a_note(
    tmp_path: Path, vault: Vault, drop: FileSandbox
) -> None:
    with WooCommerceSandbox(shipment_tracking=True) as store:
        service = hub(tmp_path / "p", vault)
        add_store(service, "woo", store)
        add_files(service, "erp", drop)
        order = next(o for o in store.data.orders.values() if o["status"] == "processing")
        drop.write(
            "fulfillments/s.csv",
            [
                {
                    "order": f"#{order['number']}",
                    "carrier": "DHL",
                    "tracking_number": "JD0001",
                    "tracking_url": "https://track.example/%1$s",
                }
            ],
        )
        await service.pull("erp", "fulfillments")
        store.faults.drop("create_tracking")  # the item is created, its answer lost

        first = await service.push("woo", "fulfillments", PushOptions(sources=("erp",)))

        assert first.status == "succeeded", (first.error, first.plan.problems)
        [item] = store.trackings[order["id"]]
        assert (item["tracking_provider"], item["tracking_number"]) == ("DHL", "JD0001")
        assert item["tracking_link"] == "https://track.example/JD0001"
        assert store.data.notes[order["id"]] == []
        assert order["status"] == "completed"
        again = await service.push("woo", "fulfillments", PushOptions(sources=("erp",)))
        assert again.plan.writes == []
        assert len(store.trackings[order["id"]]) == 1
        service.close()

"""Every write is keyed per target: one hub change pushed to two accounts is two writes.

Each test pushes to two targets over several runs, with a platform changed between runs, on
SQLite and PostgreSQL: each target receives its writes exactly once, and a run with nothing new
writes nothing anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from partnersync.auth.vault import Vault
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.sync.push import PushOptions, PushSummary
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
from tests.integration.test_cli import Cli

pytestmark = pytest.mark.anyio


@pytest.fixture
def shops() -> Iterator[tuple[ShopifySandbox, ShopifySandbox]]:
    a, b = new_shop(), new_shop()
    yield a, b
    a.stop()
    b.stop()


@pytest.fixture
def drop(tmp_path: Path) -> Iterator[FileSandbox]:
    with FileSandbox(directory=tmp_path / "drop", skus=0, files=0) as sandbox:
        yield sandbox


def two_shops(
    tmp_path: Path,
    vault: Vault,
    database_url: str,
    shops: tuple[ShopifySandbox, ShopifySandbox],
    drop: FileSandbox,
    **config: object,
) -> Partnersync:
    service = hub(tmp_path / "project", vault, database_url, **config)
    add_shop(service, "shop_a", shops[0])
    add_shop(service, "shop_b", shops[1])
    add_files(service, "erp", drop)
    return service


def pushes(results: list[object]) -> list[PushSummary]:
    return [r for r in results if isinstance(r, PushSummary)]


async def test_a_product_reaches_both_shops_once(
    tmp_path: Path,
    vault: Vault,
    database_url: str,
    shops: tuple[ShopifySandbox, ShopifySandbox],
    drop: FileSandbox,
) -> None:
    service = two_shops(tmp_path, vault, database_url, shops, drop)
    options = PushOptions(sources=("erp",))
    row = {"handle": "cap", "title": "Cap", "sku": "CAP-1", "price": "10.00", "status": "active"}
    drop.write("products/a.csv", [row])
    await service.pull("erp", "products")

    first = [await service.push(name, "products", options) for name in ("shop_a", "shop_b")]

    assert [(s.status, s.created) for s in first] == [("succeeded", 1), ("succeeded", 1)]
    caps = [product_by_handle(shop, "cap") for shop in shops]
    assert [c["title"] for c in caps] == ["Cap", "Cap"]
    # Shop B's merchant renames it; the ERP changes the price: B keeps its title, both get the
    # price, each once.
    shops[1].data.update("products", caps[1]["id"], {"title": "Cap (B)"})
    drop.write("products/b.csv", [{**row, "price": "12.00"}])
    await service.pull("erp", "products")
    for name in ("shop_a", "shop_b"):
        await service.push(name, "products", options)
    assert [variants_of(s, c)[0]["price"] for s, c in zip(shops, caps, strict=True)] == [
        "12.00",
        "12.00",
    ]
    assert [c["title"] for c in caps] == ["Cap", "Cap (B)"]
    writes = [len(write_ops(shop)) for shop in shops]
    again = [await service.push(name, "products", options) for name in ("shop_a", "shop_b")]
    assert [s.plan.writes for s in again] == [[], []]
    assert [len(write_ops(shop)) for shop in shops] == writes
    service.close()


async def test_a_stock_job_with_two_targets_sets_each_with_its_own_allocation(
    tmp_path: Path,
    vault: Vault,
    database_url: str,
    shops: tuple[ShopifySandbox, ShopifySandbox],
    drop: FileSandbox,
) -> None:
    jobs = {
        "stock": {
            "entity": "inventory",
            "sources": ["erp"],
            "targets": ["shop_a", "shop_b"],
            "buffer": 1,
            "allocation_by_target": {"shop_b": "0.5"},
        }
    }
    service = two_shops(tmp_path, vault, database_url, shops, drop, jobs=jobs)
    chosen = skus(shops[0], 4)
    drop.write("inventory/s.csv", [{"sku": s, "location": MAIN, "available": 11} for s in chosen])

    first = pushes(await service.run_job("stock"))

    assert [p.status for p in first] == ["succeeded", "succeeded"]
    assert [avail(shops[0], s) for s in chosen] == [10] * 4
    assert [avail(shops[1], s) for s in chosen] == [5] * 4
    # A sale on shop B only; the ERP is unchanged: B is corrected, A is not written.
    shops[1].data.set_available(chosen[0], location_id(shops[1]), 2)
    second = pushes(await service.run_job("stock"))
    assert [p.updated for p in second] == [0, 1]
    assert avail(shops[1], chosen[0]) == 5
    writes = [len(write_ops(shop)) for shop in shops]
    third = pushes(await service.run_job("stock"))
    assert [p.updated for p in third] == [0, 0]
    assert [len(write_ops(shop)) for shop in shops] == writes
    service.close()


async def test_shipments_reach_the_order_of_their_own_channel_once(
    tmp_path: Path,
    vault: Vault,
    database_url: str,
    shops: tuple[ShopifySandbox, ShopifySandbox],
    drop: FileSandbox,
) -> None:
    jobs = {"ship": {"entity": "fulfillments", "sources": ["erp"], "targets": ["shop_a", "shop_b"]}}
    service = two_shops(tmp_path, vault, database_url, shops, drop, jobs=jobs)
    parcel = {"order": "#1002", "carrier": "UPS"}
    drop.write(
        "fulfillments/s.csv",
        [
            {**parcel, "tracking_number": "A-1", "channel": "shop_a"},
            {**parcel, "tracking_number": "B-1", "channel": "shop_b"},
        ],
    )

    first = pushes(await service.run_job("ship"))

    assert [(p.status, p.created) for p in first] == [("succeeded", 1), ("succeeded", 1)]
    assert tracking_numbers(order_named(shops[0], "#1002")) == ["A-1"]
    assert tracking_numbers(order_named(shops[1], "#1002")) == ["B-1"]
    second = pushes(await service.run_job("ship"))
    assert [p.created for p in second] == [0, 0]
    assert tracking_numbers(order_named(shops[1], "#1002")) == ["B-1"]
    service.close()


async def test_orders_are_exported_to_each_of_two_erps_once(
    tmp_path: Path, vault: Vault, database_url: str, shop: ShopifySandbox
) -> None:
    jobs = {"out": {"entity": "orders", "sources": ["shop"], "targets": ["erp_a", "erp_b"]}}
    with (
        FileSandbox(directory=tmp_path / "a", skus=0, files=0) as erp_a,
        FileSandbox(directory=tmp_path / "b", skus=0, files=0) as erp_b,
    ):
        service = hub(tmp_path / "project", vault, database_url, jobs=jobs)
        add_shop(service, "shop", shop)
        add_files(service, "erp_a", erp_a)
        add_files(service, "erp_b", erp_b)

        def exported(drop: FileSandbox) -> list[str]:
            assert drop.directory is not None
            return [
                orjson.loads(line)["external_id"]
                for path in sorted((drop.directory / "orders-out").glob("*.jsonl"))
                for line in path.read_bytes().splitlines()
            ]

        first = pushes(await service.run_job("out"))
        total = len(shop.data.tables["orders"])
        assert [p.created for p in first] == [total, total]
        assert (
            sorted(exported(erp_a)) == sorted(exported(erp_b)) == sorted(shop.data.tables["orders"])
        )
        cancelled = order_named(shop, "#1003")
        shop.data.update("orders", cancelled["id"], {"cancelledAt": cancelled["updatedAt"]})
        second = pushes(await service.run_job("out"))
        assert [p.created for p in second] == [1, 1]
        third = pushes(await service.run_job("out"))
        assert [p.created for p in third] == [0, 0]
        assert len(exported(erp_a)) == len(exported(erp_b)) == total + 1
        service.close()


def test_a_catalogue_job_with_two_target_shops_from_the_command_line(
    tmp_path: Path, shops: tuple[ShopifySandbox, ShopifySandbox], drop: FileSandbox
) -> None:
    cli = Cli(tmp_path / "project")
    cli("init", str(cli.project))
    with (cli.project / "partnersync.toml").open("a") as handle:
        handle.write(
            '\n[jobs.catalogue]\nentity = "products"\nsources = ["erp"]\n'
            'targets = ["shop_a", "shop_b"]\n'
        )
    for name, shop in zip(("shop_a", "shop_b"), shops, strict=True):
        cli(
            *["accounts", "add", name, "--platform", "shopify", "--url", shop.url],
            *["--allow-loopback", "--secret-env", "access_token=SHOP_TOKEN"],
        )
    cli("accounts", "add", "erp", "--platform", "file", "--url", drop.url)
    drop.write(
        "products/p.csv",
        [{"handle": "mug", "title": "Mug", "sku": "MUG-1", "price": "8.00", "status": "active"}],
    )

    first = json.loads(cli("sync", "run", "catalogue", "--json").stdout)

    assert [(p["target"], p["status"], p["created"]) for p in first["pushes"]] == [
        ("shop_a", "succeeded", 1),
        ("shop_b", "succeeded", 1),
    ]
    assert [product_by_handle(s, "mug")["title"] for s in shops] == ["Mug", "Mug"]
    again = json.loads(cli("sync", "run", "catalogue", "--json").stdout)
    assert [(p["created"], p["updated"]) for p in again["pushes"]] == [(0, 0), (0, 0)]

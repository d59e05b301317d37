"""Helpers for push tests: sandboxes standing in for a merchant, and what a shop now holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from partnersync.auth.vault import Vault
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from tests.conftest import SHOP_TOKEN, make_service

MAIN = "Main warehouse"


def new_shop(**data: Any) -> ShopifySandbox:
    """A started sandbox shop whose pacing never waits (stop it with ``.stop()``)."""
    return ShopifySandbox(
        token=SHOP_TOKEN, restore_rate=1_000_000.0, bucket_size=1000.0, **data
    ).start()


def add_shop(service: Partnersync, name: str, shop: ShopifySandbox) -> None:
    """Wire ``name`` to the sandbox shop."""
    service.add_account(
        name=name,
        platform="shopify",
        base_url=shop.url,
        secrets={"access_token": SHOP_TOKEN},
        allow_loopback=True,
    )


def add_files(service: Partnersync, name: str, drop: FileSandbox) -> None:
    """Wire ``name`` to a drop directory."""
    service.add_account(name=name, platform="file", base_url=drop.url, secrets={})


def hub(root: Path, vault: Vault, database_url: str | None = None, **config: Any) -> Partnersync:
    """A service on a fresh project (SQLite unless a URL is given)."""
    return make_service(root, vault, database_url, **config)


def level(shop: ShopifySandbox, sku: str, location_name: str = MAIN) -> dict[str, Any]:
    """The sandbox's inventory level of ``sku`` at a location (by name)."""
    data = shop.data
    item = next(i for i in data.tables["inventory_items"].values() if i["sku"] == sku)
    for level_id in item["_levels"]:
        record = data.tables["inventory_levels"][level_id]
        if data.tables["locations"][record["_location"]]["name"] == location_name:
            return record
    raise KeyError(sku)


def avail(shop: ShopifySandbox, sku: str, location_name: str = MAIN) -> int:
    """Available units of ``sku`` at a location."""
    return int(level(shop, sku, location_name)["quantities"]["available"])


def location_id(shop: ShopifySandbox, name: str = MAIN) -> str:
    """A location's id by name."""
    return next(lid for lid, loc in shop.data.tables["locations"].items() if loc["name"] == name)


def skus(shop: ShopifySandbox, count: int) -> list[str]:
    """The first ``count`` SKUs of the shop, sorted."""
    return sorted(v["sku"] for v in shop.data.tables["variants"].values())[:count]


def write_ops(shop: ShopifySandbox) -> list[dict[str, Any]]:
    """Logged write requests (mutations) the shop received."""
    return [e for e in shop.log.entries if e.get("write")]


def product_by_handle(shop: ShopifySandbox, handle: str) -> dict[str, Any]:
    """The shop's product with this handle."""
    return next(p for p in shop.data.tables["products"].values() if p["handle"] == handle)


def variants_of(shop: ShopifySandbox, product: dict[str, Any]) -> list[dict[str, Any]]:
    """A product's variants as the shop holds them."""
    return [shop.data.tables["variants"][v] for v in product["_variants"]]


def order_named(shop: ShopifySandbox, name: str) -> dict[str, Any]:
    """The shop's order with this name (``#1000``)."""
    return next(o for o in shop.data.tables["orders"].values() if o["name"] == name)


def tracking_numbers(order: dict[str, Any]) -> list[str]:
    """Every tracking number on an order's fulfilments."""
    return [t["number"] for f in order["fulfillments"] for t in f["trackingInfo"]]

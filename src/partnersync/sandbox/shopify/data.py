"""The Shopify sandbox's data: generated shop contents and the API to change them.

Records are kept in GraphQL field spelling (``updatedAt``, ``productType``) so resolvers can
serve them as they are; links between records are kept in ``_``-prefixed keys. Every change
bumps ``updatedAt`` (second precision, as Shopify's timestamps) and the data version, which
invalidates the sandbox's rendered-page cache.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

ENTITY_TYPES = {
    "products": "Product",
    "variants": "ProductVariant",
    "inventory_items": "InventoryItem",
    "inventory_levels": "InventoryLevel",
    "orders": "Order",
    "locations": "Location",
}


def iso(moment: datetime) -> str:
    """Shopify's timestamp spelling: UTC, seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gid(kind: str, number: int) -> str:
    """A global id, ``gid://shopify/Product/1001``."""
    return f"gid://shopify/{kind}/{number}"


def gid_number(value: str) -> int:
    """The numeric part of a global id (query strings such as InventoryLevel's are dropped)."""
    return int(value.rsplit("/", 1)[1].split("?")[0])


class ShopifyData:
    """Generated products, variants, inventory, locations and orders of one fake shop."""

    def __init__(
        self,
        *,
        seed: int = 7,
        products: int = 60,
        big_products: int = 1,
        big_product_variants: int = 120,
        orders: int = 40,
        big_order_line_items: int = 25,
        locations: int = 3,
        currency: str = "USD",
        now: datetime | None = None,
    ) -> None:
        self.currency = currency
        self.shop_name = "partnersync sandbox"
        self.version = 0
        self.lock = threading.RLock()
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        """Called with (entity, record) after each change (the webhook sender listens)."""
        self._rng = random.Random(seed)
        self._now = now
        self._next_id = 1000
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITY_TYPES}
        base = self.now() - timedelta(days=30)
        for number in range(locations):
            location_id = gid("Location", self._new_id())
            self.tables["locations"][location_id] = {
                "id": location_id,
                "name": ["Main warehouse", "Flagship store", "Outlet", "Pop-up"][number % 4],
                "isActive": True,
                "createdAt": iso(base),
                "updatedAt": iso(base),
            }
        for index in range(products):
            variants = big_product_variants if index < big_products else self._rng.randint(1, 4)
            self._generate_product(index, variants, base)
        variant_ids = list(self.tables["variants"])
        for index in range(orders):
            lines = big_order_line_items if index == 0 else self._rng.randint(1, 3)
            self._generate_order(index, lines, variant_ids, base)

    # -- time and ids --------------------------------------------------------------------
    def now(self) -> datetime:
        """The sandbox's clock (second precision)."""
        moment = self._now or datetime.now(UTC)
        return moment.replace(microsecond=0)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _past(self, base: datetime) -> str:
        # Generated history ends an hour before now, so an incremental pull right after the
        # first one sees only what a test changes.
        span = int((self.now() - timedelta(hours=1) - base).total_seconds())
        return iso(base + timedelta(seconds=self._rng.randint(0, max(span, 0))))

    # -- generation ----------------------------------------------------------------------
    def _generate_product(self, index: int, variant_count: int, base: datetime) -> None:
        product_id = gid("Product", self._new_id())
        sizes = [f"S{n}" for n in range(max(1, variant_count))]
        updated = self._past(base)
        variant_ids: list[str] = []
        product: dict[str, Any] = {
            "id": product_id,
            "title": f"Sandbox product {index}",
            "handle": f"sandbox-product-{index}",
            "status": "ACTIVE" if index % 10 else "DRAFT",
            "vendor": ["Acme", "Globex", "Initech"][index % 3],
            "productType": ["Shirts", "Shoes", "Hats"][index % 3],
            "descriptionHtml": f"<p>Product {index} — naïve café 製品</p>",
            "tags": ["sandbox", f"group-{index % 5}"],
            "createdAt": iso(base),
            "updatedAt": updated,
            "options": [{"name": "Size", "values": sizes}],
            "_variants": variant_ids,
        }
        self.tables["products"][product_id] = product
        for position in range(variant_count):
            variant_id = gid("ProductVariant", self._new_id())
            item_id = gid("InventoryItem", self._new_id())
            sku = f"SKU-{index:04d}-{position:03d}"
            cents = self._rng.randint(500, 20000)
            self.tables["variants"][variant_id] = {
                "id": variant_id,
                "sku": sku,
                "barcode": f"400{index:05d}{position:04d}",
                "title": sizes[position],
                "price": f"{cents // 100}.{cents % 100:02d}",
                "compareAtPrice": None,
                "position": position + 1,
                "updatedAt": updated,
                "selectedOptions": [{"name": "Size", "value": sizes[position]}],
                "_product": product_id,
                "_item": item_id,
            }
            variant_ids.append(variant_id)
            level_ids: list[str] = []
            item = {"id": item_id, "sku": sku, "updatedAt": updated, "_levels": level_ids}
            self.tables["inventory_items"][item_id] = item
            for location_id in self.tables["locations"]:
                level_number = self._new_id()
                level_id = (
                    f"{gid('InventoryLevel', level_number)}?inventory_item_id={gid_number(item_id)}"
                )
                on_hand = self._rng.randint(0, 50)
                committed = self._rng.randint(0, min(on_hand, 3))
                self.tables["inventory_levels"][level_id] = {
                    "id": level_id,
                    "updatedAt": updated,
                    "quantities": {
                        "available": on_hand - committed,
                        "committed": committed,
                        "incoming": 0,
                        "on_hand": on_hand,
                    },
                    "_item": item_id,
                    "_location": location_id,
                }
                level_ids.append(level_id)

    def _generate_order(
        self, index: int, line_count: int, variant_ids: list[str], base: datetime
    ) -> None:
        order_id = gid("Order", self._new_id())
        created = self._past(base)
        lines = []
        total = 0
        for _ in range(line_count):
            variant = self.tables["variants"][self._rng.choice(variant_ids)]
            quantity = self._rng.randint(1, 3)
            cents = int(variant["price"].replace(".", ""))
            total += cents * quantity
            lines.append(
                {
                    "id": gid("LineItem", self._new_id()),
                    "sku": variant["sku"],
                    "title": variant["title"],
                    "quantity": quantity,
                    "_variant": variant["id"],
                    "_price": variant["price"],
                }
            )
        shipping = 499

        def money(cents: int) -> dict[str, Any]:
            return {
                "shopMoney": {
                    "amount": f"{cents // 100}.{cents % 100:02d}",
                    "currencyCode": self.currency,
                }
            }

        address = {
            "name": f"Customer {index}",
            "company": None,
            "address1": f"{index} Sandbox Street",
            "address2": None,
            "city": "Springfield",
            "provinceCode": "OR",
            "countryCodeV2": "US",
            "zip": "97477",
            "phone": f"+1555{index:07d}",
        }
        self.tables["orders"][order_id] = {
            "id": order_id,
            "name": f"#{1000 + index}",
            "email": f"customer{index}@example.com",
            "phone": f"+1555{index:07d}",
            "createdAt": created,
            "updatedAt": created,
            "cancelledAt": None,
            "currencyCode": self.currency,
            "displayFinancialStatus": ["PAID", "PENDING", "PARTIALLY_REFUNDED"][index % 3],
            "displayFulfillmentStatus": ["UNFULFILLED", "FULFILLED"][index % 2],
            "totalPriceSet": money(total + shipping),
            "subtotalPriceSet": money(total),
            "totalTaxSet": money(0),
            "totalShippingPriceSet": money(shipping),
            "customer": {
                "id": gid("Customer", self._new_id()),
                "email": f"customer{index}@example.com",
                "phone": f"+1555{index:07d}",
                "firstName": "Customer",
                "lastName": str(index),
            },
            "shippingAddress": address,
            "billingAddress": address,
            "fulfillments": []
            if index % 2 == 0
            else [
                {
                    "id": gid("Fulfillment", self._new_id()),
                    "status": "SUCCESS",
                    "createdAt": created,
                    "trackingInfo": [{"company": "UPS", "number": f"1Z{index:010d}", "url": None}],
                }
            ],
            "_lineItems": lines,
        }

    # -- changes -------------------------------------------------------------------------
    @contextmanager
    def _change(self) -> Iterator[str]:
        with self.lock:
            yield iso(self.now())
            self.version += 1

    def table_of(self, entity: str) -> dict[str, dict[str, Any]]:
        """The table for an entity name (``products``, ``variants``, ``orders``, …)."""
        if entity not in self.tables:
            raise KeyError(f"unknown entity {entity!r}; known: {sorted(self.tables)}")
        return self.tables[entity]

    def update(
        self,
        entity: str,
        record_id: str,
        changes: dict[str, Any] | None = None,
        *,
        updated_at: str | None = None,
    ) -> dict[str, Any]:
        """Set fields on a record and bump its ``updatedAt`` (to ``updated_at`` if given).

        Changing a variant also bumps its product; changing an inventory level bumps its item,
        as the connector's incremental inventory pull filters items by ``updated_at``.
        """
        with self._change() as now:
            stamp = updated_at or now
            record = self.table_of(entity)[record_id]
            record.update(changes or {})
            record["updatedAt"] = stamp
            announced = [(entity, dict(record))]
            if entity == "variants":
                product = self.tables["products"][record["_product"]]
                product["updatedAt"] = stamp
                announced.append(("products", dict(product)))
            if entity == "inventory_levels":
                self.tables["inventory_items"][record["_item"]]["updatedAt"] = stamp
        for observer in self.observers:  # outside the lock: an observer may read the shop
            for changed_entity, snapshot in announced:
                observer(changed_entity, snapshot)
        return record

    def set_available(
        self, sku: str, location_id: str, available: int, *, updated_at: str | None = None
    ) -> dict[str, Any]:
        """Set the available quantity of ``sku`` at a location (on hand follows)."""
        item_id = next(
            i for i, item in self.tables["inventory_items"].items() if item["sku"] == sku
        )
        for level_id in self.tables["inventory_items"][item_id]["_levels"]:
            level = self.tables["inventory_levels"][level_id]
            if level["_location"] == location_id:
                quantities = dict(level["quantities"])
                quantities["on_hand"] = available + quantities.get("committed", 0)
                quantities["available"] = available
                return self.update(
                    "inventory_levels", level_id, {"quantities": quantities}, updated_at=updated_at
                )
        raise KeyError(f"{sku} is not stocked at {location_id}")

    def touch(self, entity: str, count: int) -> list[str]:
        """Change ``count`` records of ``entity`` (title/price/quantity) and return their ids."""
        table = self.table_of(entity)
        chosen = sorted(table)[:count]
        for record_id in chosen:
            record = table[record_id]
            if entity == "products":
                self.update(entity, record_id, {"title": record["title"] + " (updated)"})
            elif entity == "orders":
                self.update(entity, record_id, {"displayFulfillmentStatus": "FULFILLED"})
            elif entity == "inventory_levels":
                quantities = {
                    **record["quantities"],
                    "available": record["quantities"]["available"] + 5,
                }
                self.update(entity, record_id, {"quantities": quantities})
            else:
                self.update(entity, record_id)
        return chosen

    def counts(self) -> dict[str, int]:
        """Records per table."""
        return {name: len(table) for name, table in self.tables.items()}

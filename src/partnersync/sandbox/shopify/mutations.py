"""The sandbox's mutations, with Shopify's write semantics.

* ``inventorySetQuantities``: absolute quantities, all-or-nothing; compare-and-set through
  ``changeFromQuantity`` (``CHANGE_FROM_QUANTITY_STALE``); the ``@idempotent(key:)`` directive is
  required (API 2026-04 and later): a repeated key with the same input replays the stored
  response without applying anything again, with a different input it is refused
  (``IDEMPOTENCY_KEY_PARAMETER_MISMATCH``).
* ``productSet``: upsert by ``identifier`` (``id`` or ``handle``); list fields replace the
  existing list (variants left out are deleted, variants without ``id`` are created).
* ``fulfillmentCreate``: fulfils open fulfillment orders with tracking; not idempotent on
  Shopify, so ``@idempotent`` is refused there as on Shopify.

Every applied write is counted in ``ShopifyMutations.applied`` so tests can assert how many
writes really happened, whatever the client saw.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLResolveInfo, value_from_ast_untyped

from partnersync.sandbox.shopify.data import ShopifyData, gid, iso

Info = GraphQLResolveInfo[Any]

IDEMPOTENT_MUTATIONS = frozenset({"inventorySetQuantities"})
INVENTORY_REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "other",
        "received",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)


def idempotency_key(info: Info) -> str | None:
    """The ``@idempotent(key:)`` value on the mutation field, if given."""
    for directive in info.field_nodes[0].directives or ():
        if directive.name.value == "idempotent":
            for argument in directive.arguments or ():
                if argument.name.value == "key":
                    # graphql-core 3.3 wraps the variables; 3.2 hands over the dict itself.
                    variables: Any = info.variable_values
                    coerced = getattr(variables, "coerced", variables)
                    value = value_from_ast_untyped(argument.value, dict(coerced))
                    return str(value) if value is not None else None
    return None


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


class ShopifyMutations:
    """Mutation resolvers over one shop's data."""

    def __init__(self, data: ShopifyData) -> None:
        self.data = data
        self.applied: Counter[str] = Counter()
        self.replayed: Counter[str] = Counter()
        self._idempotency: dict[str, tuple[str, Any]] = {}
        self.view_product: Callable[[dict[str, Any]], dict[str, Any]] = lambda record: record

    def root(self) -> dict[str, Any]:
        """Root value entries for the mutation type."""
        return {
            "inventorySetQuantities": self.inventory_set_quantities,
            "productSet": self.product_set,
            "fulfillmentCreate": self.fulfillment_create,
        }

    def _keyed(self, info: Info, name: str, arguments: Any) -> tuple[str | None, Any]:
        key = idempotency_key(info)
        if name not in IDEMPOTENT_MUTATIONS:
            if key is not None:
                raise GraphQLError(f"The @idempotent directive is not supported on {name}.")
            return None, None
        if not key or not key.strip():
            raise GraphQLError(
                f"{name} requires an idempotency key: add @idempotent(key: ...) (API 2026-04+)."
            )
        stored = self._idempotency.get(key)
        if stored is None:
            return key, None
        if stored[0] != _fingerprint(arguments):
            return key, {
                "inventoryAdjustmentGroup": None,
                "userErrors": [
                    {
                        "field": None,
                        "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                        "message": "The idempotency key was used with different parameters.",
                    }
                ],
            }
        self.replayed[name] += 1
        return key, stored[1]

    # -- inventorySetQuantities ------------------------------------------------------------
    def inventory_set_quantities(self, info: Info, input: dict[str, Any]) -> Any:
        key, replay = self._keyed(info, "inventorySetQuantities", input)
        if replay is not None:
            return replay
        with self.data.lock:
            result = self._set_quantities(input)
        if key is not None and not result["userErrors"]:
            self._idempotency[key] = (_fingerprint(input), result)
        return result

    def _set_quantities(self, request: dict[str, Any]) -> dict[str, Any]:
        tables = self.data.tables
        name = request["name"]
        errors: list[dict[str, Any]] = []
        if name not in ("available", "on_hand"):
            errors.append(
                _error(["input", "name"], "INVALID_NAME", "name must be available or on_hand")
            )
        if request["reason"] not in INVENTORY_REASONS:
            errors.append(_error(["input", "reason"], "INVALID_REASON", "unknown reason"))
        targets = []
        for index, quantity in enumerate(request["quantities"]):
            where = ["input", "quantities", str(index)]
            item = tables["inventory_items"].get(quantity["inventoryItemId"])
            if item is None:
                errors.append(
                    _error(
                        [*where, "inventoryItemId"],
                        "INVALID_INVENTORY_ITEM",
                        "no such inventory item",
                    )
                )
                continue
            level = next(
                (
                    tables["inventory_levels"][lv]
                    for lv in item["_levels"]
                    if tables["inventory_levels"][lv]["_location"] == quantity["locationId"]
                ),
                None,
            )
            if level is None:
                errors.append(
                    _error(
                        [*where, "locationId"], "INVALID_LOCATION", "item not stocked at location"
                    )
                )
                continue
            if quantity["quantity"] < 0:
                errors.append(
                    _error([*where, "quantity"], "INVALID_QUANTITY_NEGATIVE", "negative quantity")
                )
            current = level["quantities"].get(name, 0)
            expected = quantity.get("changeFromQuantity")
            if expected is not None and expected != current:
                errors.append(
                    _error(
                        [*where, "changeFromQuantity"],
                        "CHANGE_FROM_QUANTITY_STALE",
                        f"The quantity at this location is {current}, not {expected}.",
                    )
                )
            targets.append((level, quantity["quantity"], current))
        if errors:
            return {"inventoryAdjustmentGroup": None, "userErrors": errors}
        stamp = iso(self.data.now())
        changes = []
        for level, new, current in targets:
            quantities = dict(level["quantities"])
            quantities[name] = new
            if name == "available":
                quantities["on_hand"] = new + quantities.get("committed", 0)
            self.data.update(
                "inventory_levels", level["id"], {"quantities": quantities}, updated_at=stamp
            )
            changes.append(
                {
                    "name": name,
                    "delta": new - current,
                    "quantityAfterChange": new,
                    "item": {"id": level["_item"]},
                    "location": {"id": level["_location"]},
                    "ledgerDocumentUri": None,
                }
            )
        self.applied["inventorySetQuantities"] += 1
        return {
            "inventoryAdjustmentGroup": {
                "id": gid("InventoryAdjustmentGroup", self.data._new_id()),
                "createdAt": stamp,
                "reason": request["reason"],
                "referenceDocumentUri": request.get("referenceDocumentUri"),
                "changes": changes,
            },
            "userErrors": [],
        }

    # -- productSet ------------------------------------------------------------------------
    def product_set(
        self,
        info: Info,
        input: dict[str, Any],
        identifier: dict[str, Any] | None = None,
        synchronous: bool = True,
    ) -> Any:
        self._keyed(info, "productSet", input)
        with self.data.lock:
            product_id = self._upsert_product(input, identifier or {})
            self.applied["productSet"] += 1
            product = self.data.tables["products"][product_id]
        return {
            "product": self.view_product(product),
            "productSetOperation": None,
            "userErrors": [],
        }

    def _upsert_product(self, request: dict[str, Any], identifier: dict[str, Any]) -> str:
        data = self.data
        products = data.tables["products"]
        product_id = identifier.get("id") or request.get("id")
        if product_id is None and identifier.get("handle"):
            product_id = next(
                (p for p, r in products.items() if r["handle"] == identifier["handle"]), None
            )
        stamp = iso(data.now())
        if product_id is None or product_id not in products:
            product_id = gid("Product", data._new_id())
            products[product_id] = {
                "id": product_id,
                "title": "",
                "handle": identifier.get("handle")
                or request.get("handle")
                or product_id.rsplit("/", 1)[1],
                "status": "ACTIVE",
                "vendor": "",
                "productType": "",
                "descriptionHtml": "",
                "tags": [],
                "createdAt": stamp,
                "updatedAt": stamp,
                "options": [],
                "_variants": [],
            }
        product = products[product_id]
        for source, target in (
            ("title", "title"),
            ("handle", "handle"),
            ("status", "status"),
            ("vendor", "vendor"),
            ("productType", "productType"),
            ("descriptionHtml", "descriptionHtml"),
            ("tags", "tags"),
        ):
            if request.get(source) is not None:
                product[target] = request[source]
        if request.get("productOptions") is not None:
            product["options"] = [
                {"name": o["name"], "values": [v["name"] for v in o.get("values") or []]}
                for o in request["productOptions"]
            ]
        if request.get("variants") is not None:
            self._set_variants(product, request["variants"], stamp)
        product["updatedAt"] = stamp
        data.version += 1
        return product_id

    def _set_variants(
        self, product: dict[str, Any], variants: list[dict[str, Any]], stamp: str
    ) -> None:
        data = self.data
        table = data.tables["variants"]
        keep: list[str] = []
        for position, given in enumerate(variants, start=1):
            variant_id = given.get("id")
            if variant_id is None or variant_id not in table:
                variant_id = gid("ProductVariant", data._new_id())
                item_id = gid("InventoryItem", data._new_id())
                levels = []
                for location_id in data.tables["locations"]:
                    item_number = item_id.rsplit("/", 1)[1]
                    level_number = data._new_id()
                    level_id = (
                        f"{gid('InventoryLevel', level_number)}?inventory_item_id={item_number}"
                    )
                    data.tables["inventory_levels"][level_id] = {
                        "id": level_id,
                        "updatedAt": stamp,
                        "quantities": {"available": 0, "committed": 0, "incoming": 0, "on_hand": 0},
                        "_item": item_id,
                        "_location": location_id,
                    }
                    levels.append(level_id)
                data.tables["inventory_items"][item_id] = {
                    "id": item_id,
                    "sku": given.get("sku"),
                    "updatedAt": stamp,
                    "_levels": levels,
                }
                table[variant_id] = {
                    "id": variant_id,
                    "sku": None,
                    "barcode": None,
                    "title": "Default",
                    "price": "0.00",
                    "compareAtPrice": None,
                    "position": position,
                    "updatedAt": stamp,
                    "selectedOptions": [],
                    "_product": product["id"],
                    "_item": item_id,
                }
            variant = table[variant_id]
            options = [
                {"name": o.get("optionName") or "Title", "value": o.get("name") or "Default"}
                for o in given.get("optionValues") or []
            ]
            variant.update(
                sku=given.get("sku", variant["sku"]),
                barcode=given.get("barcode", variant["barcode"]),
                price=_money(given["price"])
                if given.get("price") is not None
                else variant["price"],
                compareAtPrice=_money(given["compareAtPrice"])
                if given.get("compareAtPrice") is not None
                else given.get("compareAtPrice", variant["compareAtPrice"]),
                position=position,
                selectedOptions=options or variant["selectedOptions"],
                title=" / ".join(o["value"] for o in options) or variant["title"],
                updatedAt=stamp,
            )
            data.tables["inventory_items"][variant["_item"]]["sku"] = variant["sku"]
            keep.append(variant_id)
        for removed in set(product["_variants"]) - set(keep):
            table.pop(removed, None)
        product["_variants"] = keep

    # -- fulfillmentCreate -----------------------------------------------------------------
    def fulfillment_create(
        self, info: Info, fulfillment: dict[str, Any], message: str | None = None
    ) -> Any:
        self._keyed(info, "fulfillmentCreate", fulfillment)
        with self.data.lock:
            return self._fulfil(fulfillment)

    def _fulfil(self, request: dict[str, Any]) -> dict[str, Any]:
        data = self.data
        orders = data.tables["orders"]
        groups = request["lineItemsByFulfillmentOrder"]
        touched: list[tuple[dict[str, Any], dict[str, Any], dict[str, int]]] = []
        for group in groups:
            order = next(
                (
                    o
                    for o in orders.values()
                    for fo in fulfillment_orders(o)
                    if fo["id"] == group["fulfillmentOrderId"]
                ),
                None,
            )
            if order is None:
                return _user_error(
                    ["fulfillment", "lineItemsByFulfillmentOrder"], "fulfillment order not found"
                )
            fo = next(
                fo for fo in fulfillment_orders(order) if fo["id"] == group["fulfillmentOrderId"]
            )
            if fo["status"] not in ("OPEN", "IN_PROGRESS"):
                return _user_error(
                    ["fulfillment"], f"Fulfillment order {fo['id']} is not in a fulfillable state."
                )
            # Without fulfillmentOrderLineItems, everything left is fulfilled; with them, only
            # the quantities given (a partial fulfilment leaves the order IN_PROGRESS).
            lines = {line["id"]: line for line in fo["_lines"]}
            asked = group.get("fulfillmentOrderLineItems")
            if asked is None:
                amounts = {i: line["remainingQuantity"] for i, line in lines.items()}
            else:
                amounts = {}
                for item in asked:
                    line = lines.get(item["id"])
                    if line is None:
                        return _user_error(
                            ["fulfillment", "lineItemsByFulfillmentOrder"],
                            f"Fulfillment order line item {item['id']} not found.",
                        )
                    if not 0 < item["quantity"] <= line["remainingQuantity"]:
                        return _user_error(
                            ["fulfillment", "lineItemsByFulfillmentOrder"],
                            f"Invalid quantity {item['quantity']} for line item {item['id']}: "
                            f"{line['remainingQuantity']} remaining.",
                        )
                    amounts[item["id"]] = amounts.get(item["id"], 0) + item["quantity"]
            touched.append((order, fo, amounts))
        stamp = iso(data.now())
        tracking = request.get("trackingInfo") or {}
        created = None
        for order, fo, amounts in touched:
            for line in fo["_lines"]:
                line["remainingQuantity"] -= amounts.get(line["id"], 0)
            left = any(line["remainingQuantity"] for line in fo["_lines"])
            fo["status"] = "IN_PROGRESS" if left else "CLOSED"
            created = {
                "id": gid("Fulfillment", data._new_id()),
                "status": "SUCCESS",
                "createdAt": stamp,
                "trackingInfo": [
                    {
                        "company": tracking.get("company"),
                        "number": tracking.get("number"),
                        "url": tracking.get("url"),
                    }
                ],
            }
            order["fulfillments"] = [*order["fulfillments"], created]
            done = all(f["status"] == "CLOSED" for f in fulfillment_orders(order))
            status = "FULFILLED" if done else "PARTIALLY_FULFILLED"
            data.update(
                "orders", order["id"], {"displayFulfillmentStatus": status}, updated_at=stamp
            )
        self.applied["fulfillmentCreate"] += 1
        return {"fulfillment": {"__typename": "Fulfillment", **(created or {})}, "userErrors": []}


def fulfillment_orders(order: dict[str, Any]) -> list[dict[str, Any]]:
    """An order's fulfillment orders, made on first use (one per order, as a single location)."""
    if "_fulfillmentOrders" not in order:
        fulfilled = bool(order["fulfillments"])
        number = int(order["id"].rsplit("/", 1)[1])
        order["_fulfillmentOrders"] = [
            {
                "id": gid("FulfillmentOrder", number * 10),
                "status": "CLOSED" if fulfilled else "OPEN",
                "_lines": [
                    {
                        "id": gid("FulfillmentOrderLineItem", number * 1000 + i),
                        "remainingQuantity": 0 if fulfilled else line["quantity"],
                        "totalQuantity": line["quantity"],
                        "sku": line["sku"],
                        "_line": line["id"],
                    }
                    for i, line in enumerate(order["_lineItems"])
                ],
            }
        ]
    fos: list[dict[str, Any]] = order["_fulfillmentOrders"]
    return fos


def _money(value: Any) -> str:
    """A ``Money`` scalar as Shopify answers it: two decimals (``"15"`` is read as ``"15.00"``)."""
    return format(Decimal(str(value)).quantize(Decimal("0.01")), "f")


def _error(field: list[str], code: str, message: str) -> dict[str, Any]:
    return {"field": field, "code": code, "message": message}


def _user_error(field: list[str], message: str) -> dict[str, Any]:
    return {"fulfillment": None, "userErrors": [{"field": field, "message": message}]}

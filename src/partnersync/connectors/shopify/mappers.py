"""Shopify import mappers: GraphQL Admin JSON → canonical products, inventory levels, orders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from partnersync.mapping.convert import to_decimal, to_int, to_optional_utc, to_utc, upper_to_lower
from partnersync.mapping.export import ExportMapper
from partnersync.mapping.mapper import Child, Direct, Mapper, Record, get_path, mapping
from partnersync.mapping.model import (
    Address,
    Customer,
    Fulfillment,
    FulfillmentStatus,
    InventoryLevel,
    LineItem,
    Order,
    Product,
    ProductOption,
    Variant,
)

PLATFORM = "shopify"

_FINANCIAL = {
    "PENDING": "pending",
    "AUTHORIZED": "authorized",
    "PARTIALLY_PAID": "partially_paid",
    "PAID": "paid",
    "PARTIALLY_REFUNDED": "partially_refunded",
    "REFUNDED": "refunded",
    "VOIDED": "voided",
    "EXPIRED": "expired",
}

_FULFILLMENT = {
    "UNFULFILLED": FulfillmentStatus.UNFULFILLED,
    "OPEN": FulfillmentStatus.UNFULFILLED,
    "PENDING_FULFILLMENT": FulfillmentStatus.UNFULFILLED,
    "SCHEDULED": FulfillmentStatus.UNFULFILLED,
    "REQUEST_DECLINED": FulfillmentStatus.UNFULFILLED,
    "PARTIALLY_FULFILLED": FulfillmentStatus.PARTIALLY_FULFILLED,
    "FULFILLED": FulfillmentStatus.FULFILLED,
    "IN_PROGRESS": FulfillmentStatus.IN_PROGRESS,
    "ON_HOLD": FulfillmentStatus.ON_HOLD,
    "FULFILLMENT_NOT_REQUIRED": FulfillmentStatus.NOT_REQUIRED,
    "RESTOCKED": FulfillmentStatus.RESTOCKED,
}


def money_bag(record: Record, path: str) -> dict[str, Any] | None:
    """A ``MoneyBag``'s shop money as canonical Money fields."""
    money = get_path(record, f"{path}.shopMoney")
    if money is None:
        return None
    return {"amount": to_decimal(money.get("amount")), "currency": money.get("currencyCode")}


def _origin(mapper: Mapper[Any], record: Record) -> dict[str, Any]:
    return {
        "account": mapper.context.account,
        "platform": PLATFORM,
        "external_id": mapper.external_id(record),
        "updated_at": to_utc(record.get("updatedAt")) if record.get("updatedAt") else None,
    }


class ShopifyVariantImportMapper(Mapper[Variant]):
    """``ProductVariant`` → :class:`Variant` (prices in the shop currency)."""

    model = Variant
    entity = "variants"
    direct = (
        Direct("id", "external_id"),
        Direct("sku", "sku"),
        Direct("barcode", "barcode"),
        Direct("title", "title"),
        Direct("position", "position", to_int),
    )

    def _currency(self) -> str:
        currency = self.context.settings.get("currency")
        if not currency:
            raise ValueError("the shop currency is unknown")
        return str(currency)

    @mapping("price")
    def price(self, record: Record) -> dict[str, Any]:
        """``Money`` scalars are decimal strings in the shop's currency."""
        return {"price": {"amount": to_decimal(record.get("price")), "currency": self._currency()}}

    @mapping("compare_at_price")
    def compare_at_price(self, record: Record) -> dict[str, Any]:
        """The struck-through price, when there is one."""
        compare = record.get("compareAtPrice")
        if compare is None:
            return {"compare_at_price": None}
        return {"compare_at_price": {"amount": to_decimal(compare), "currency": self._currency()}}

    @mapping("options")
    def options(self, record: Record) -> dict[str, Any]:
        """``selectedOptions`` as a name → value dict."""
        return {"options": {o["name"]: o["value"] for o in record.get("selectedOptions") or []}}


class ShopifyProductImportMapper(Mapper[Product]):
    """``Product`` (with its variants completed by the connector) → :class:`Product`."""

    model = Product
    entity = "products"
    direct = (
        Direct("title", "title"),
        Direct("handle", "handle"),
        Direct("status", "status", upper_to_lower),
        Direct("vendor", "vendor"),
        Direct("productType", "product_type"),
        Direct("descriptionHtml", "description_html"),
        Direct("tags", "tags"),
        Direct("createdAt", "created_at", to_utc),
        Direct("updatedAt", "updated_at", to_utc),
    )
    children = (Child("variants.nodes", "variants", ShopifyVariantImportMapper),)

    @mapping("origin")
    def origin(self, record: Record) -> dict[str, Any]:
        """Account, platform, GID and update time."""
        return {"origin": _origin(self, record)}

    @mapping("options")
    def options(self, record: Record) -> dict[str, Any]:
        """Product options with their values."""
        return {
            "options": [
                ProductOption(name=o["name"], values=list(o.get("values") or []))
                for o in record.get("options") or []
            ]
        }


class ShopifyInventoryLevelImportMapper(Mapper[InventoryLevel]):
    """``InventoryLevel`` (carrying its ``item``) → :class:`InventoryLevel`."""

    model = InventoryLevel
    entity = "inventory"
    direct = (
        Direct("item.sku", "sku"),
        Direct("location.id", "location_id"),
        Direct("location.name", "location_name"),
        Direct("updatedAt", "updated_at", to_utc),
    )

    @mapping("origin")
    def origin(self, record: Record) -> dict[str, Any]:
        """The level's GID; its update time drives the cursor."""
        return {"origin": _origin(self, record)}

    @mapping("available", "reserved", "incoming", "on_hand")
    def quantities(self, record: Record) -> dict[str, Any]:
        """Named quantities; ``committed`` is what Shopify reserves for open orders."""
        named = {q["name"]: to_int(q["quantity"]) for q in record.get("quantities") or []}
        if "available" not in named:
            raise ValueError("no 'available' quantity")
        return {
            "available": named["available"],
            "reserved": named.get("committed"),
            "incoming": named.get("incoming"),
            "on_hand": named.get("on_hand"),
        }


class ShopifyLineItemImportMapper(Mapper[LineItem]):
    """``LineItem`` → :class:`LineItem`."""

    model = LineItem
    entity = "line_items"
    direct = (
        Direct("id", "external_id"),
        Direct("sku", "sku"),
        Direct("title", "title"),
        Direct("quantity", "quantity", to_int),
        Direct("variant.id", "variant_id"),
    )

    @mapping("unit_price")
    def unit_price(self, record: Record) -> dict[str, Any]:
        """Price before discounts, in shop money."""
        return {"unit_price": money_bag(record, "originalUnitPriceSet")}


def _address(record: Record, path: str) -> Address | None:
    raw = get_path(record, path)
    if raw is None:
        return None
    return Address(
        name=raw.get("name"),
        company=raw.get("company"),
        address1=raw.get("address1"),
        address2=raw.get("address2"),
        city=raw.get("city"),
        province_code=raw.get("provinceCode"),
        country_code=raw.get("countryCodeV2"),
        zip=raw.get("zip"),
        phone=raw.get("phone"),
    )


class ShopifyOrderImportMapper(Mapper[Order]):
    """``Order`` (with its line items completed by the connector) → :class:`Order`."""

    model = Order
    entity = "orders"
    direct = (
        Direct("name", "number"),
        Direct("currencyCode", "currency"),
        Direct("email", "email"),
        Direct("phone", "phone"),
        Direct("createdAt", "created_at", to_utc),
        Direct("updatedAt", "updated_at", to_utc),
        Direct("cancelledAt", "cancelled_at", to_optional_utc),
    )
    children = (Child("lineItems.nodes", "line_items", ShopifyLineItemImportMapper),)

    @mapping("origin")
    def origin(self, record: Record) -> dict[str, Any]:
        """Account, platform, GID and update time."""
        return {"origin": _origin(self, record)}

    @mapping("financial_status", "fulfillment_status")
    def statuses(self, record: Record) -> dict[str, Any]:
        """Shopify display statuses onto the canonical enums."""
        financial = record.get("displayFinancialStatus")
        fulfillment = record.get("displayFulfillmentStatus")
        return {
            "financial_status": _FINANCIAL.get(financial or "", "unknown"),
            "fulfillment_status": _FULFILLMENT.get(fulfillment or "", FulfillmentStatus.UNKNOWN),
        }

    @mapping("total", "subtotal", "total_tax", "total_shipping")
    def totals(self, record: Record) -> dict[str, Any]:
        """Order totals in shop money."""
        return {
            "total": money_bag(record, "totalPriceSet"),
            "subtotal": money_bag(record, "subtotalPriceSet"),
            "total_tax": money_bag(record, "totalTaxSet"),
            "total_shipping": money_bag(record, "totalShippingPriceSet"),
        }

    @mapping("customer", "shipping_address", "billing_address")
    def people(self, record: Record) -> dict[str, Any]:
        """Customer and addresses (PII)."""
        raw = record.get("customer")
        customer = (
            Customer(
                external_id=raw.get("id"),
                email=raw.get("email"),
                phone=raw.get("phone"),
                first_name=raw.get("firstName"),
                last_name=raw.get("lastName"),
            )
            if raw
            else None
        )
        return {
            "customer": customer,
            "shipping_address": _address(record, "shippingAddress"),
            "billing_address": _address(record, "billingAddress"),
        }

    @mapping("fulfillments")
    def fulfillments(self, record: Record) -> dict[str, Any]:
        """Shipments with the first tracking number of each."""
        result = []
        for raw in record.get("fulfillments") or []:
            tracking = (raw.get("trackingInfo") or [{}])[0] or {}
            result.append(
                Fulfillment(
                    external_id=raw["id"],
                    status=str(raw.get("status", "")).lower(),
                    carrier=tracking.get("company"),
                    tracking_number=tracking.get("number"),
                    tracking_url=tracking.get("url"),
                    created_at=to_optional_utc(raw.get("createdAt")),
                )
            )
        return {"fulfillments": result}


def product_set_input(product: Product, variant_ids: Mapping[str, str]) -> dict[str, Any]:
    """Canonical product → ``ProductSetInput`` (export); existing variants keep their ids."""
    options = [
        {"name": option.name, "values": [{"name": value} for value in option.values]}
        for option in product.options
    ] or [{"name": "Title", "values": [{"name": "Default Title"}]}]
    variants = []
    for variant in product.variants:
        option_values = [
            {"optionName": name, "name": value} for name, value in variant.options.items()
        ] or [{"optionName": "Title", "name": "Default Title"}]
        entry: dict[str, Any] = {
            "sku": variant.sku,
            "price": str(variant.price.amount),
            "compareAtPrice": str(variant.compare_at_price.amount)
            if variant.compare_at_price
            else None,
            "barcode": variant.barcode,
            "optionValues": option_values,
        }
        if variant.sku and variant.sku in variant_ids:
            entry["id"] = variant_ids[variant.sku]
        variants.append(entry)
    fields = {
        "title": product.title,
        "handle": product.handle,
        "vendor": product.vendor,
        "productType": product.product_type,
        "descriptionHtml": product.description_html,
        "tags": list(product.tags),
        "productOptions": options,
        "variants": variants,
    }
    if product.status is not None:  # unknown: leave the shop's status (a new product: its default)
        fields["status"] = product.status.value.upper()
    return fields


class ShopifyProductExportMapper(ExportMapper[Product]):
    """Canonical product → ``ProductSetInput``; ``handles`` are variant ids by SKU."""

    entity = "products"

    def map(self, record: Product, handles: Mapping[str, str]) -> dict[str, Any]:
        """The ``productSet`` input (variants Shopify already has keep their ids)."""
        return product_set_input(record, handles)


EXPORT_MAPPERS: dict[str, type[ExportMapper[Any]]] = {"products": ShopifyProductExportMapper}
"""Entity → export mapper."""

IMPORT_MAPPERS: dict[str, type[Mapper[Any]]] = {
    "products": ShopifyProductImportMapper,
    "inventory": ShopifyInventoryLevelImportMapper,
    "orders": ShopifyOrderImportMapper,
}
"""Entity → import mapper."""

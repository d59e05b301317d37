"""WooCommerce REST v3 JSON → canonical records (import mappers).

Times are the ``*_gmt`` fields (ISO-8601 without a zone, UTC); the plain ones are the site's
local time and never used. Prices are decimal strings in the store currency (line-item
``price`` is a JSON number, read through its text, never as a float).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from partnersync.mapping.convert import to_decimal, to_int
from partnersync.mapping.export import SELF, ExportMapper
from partnersync.mapping.mapper import Child, Direct, Mapper, Record, mapping
from partnersync.mapping.model import (
    Address,
    Customer,
    FinancialStatus,
    FulfillmentStatus,
    InventoryLevel,
    LineItem,
    Money,
    Order,
    Product,
    ProductOption,
    Variant,
)

PLATFORM = "woocommerce"
LOCATION = "default"
"""WooCommerce keeps one stock per item: its only location."""

_PRODUCT_STATUS = {"publish": "active", "draft": "draft", "pending": "draft", "private": "unlisted"}
_FINANCIAL = {
    "pending": FinancialStatus.PENDING,
    "on-hold": FinancialStatus.PENDING,
    "processing": FinancialStatus.PAID,
    "completed": FinancialStatus.PAID,
    "cancelled": FinancialStatus.VOIDED,
    "failed": FinancialStatus.VOIDED,
    "refunded": FinancialStatus.REFUNDED,
}


def gmt(value: Any) -> datetime:
    """A ``*_gmt`` time as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a GMT date-time, got {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def optional_gmt(value: Any) -> datetime | None:
    """``gmt`` or None for an empty value."""
    return gmt(value) if value else None


def stock_handle(record: Record) -> str:
    """``product`` or ``product/variation``: how a stock write finds the item."""
    parent = record.get("parent_id") or record.get("_product_id")
    if parent and parent != record.get("id"):
        return f"{parent}/{record['id']}"
    return str(record["id"])


def _currency(mapper: Mapper[Any]) -> str:
    currency = mapper.context.settings.get("currency")
    if not currency:
        raise ValueError("the store currency is unknown")
    return str(currency)


def _origin(mapper: Mapper[Any], record: Record, external_id: str | None = None) -> dict[str, Any]:
    return {
        "account": mapper.context.account,
        "platform": PLATFORM,
        "external_id": external_id or mapper.external_id(record),
        "updated_at": optional_gmt(record.get("date_modified_gmt")),
    }


class WooVariantImportMapper(Mapper[Variant]):
    """A variation (or a simple product, its own single variant) → :class:`Variant`."""

    model = Variant
    entity = "variants"
    direct = (Direct("id", "external_id", str),)

    @mapping("sku", "title", "options")
    def identity(self, record: Record) -> dict[str, Any]:
        """SKU (empty means none) and the chosen attribute values."""
        options = {a["name"]: a["option"] for a in record.get("attributes") or [] if "option" in a}
        return {
            "sku": record.get("sku") or None,
            "title": " / ".join(options.values()) or "Default",
            "options": options,
        }

    @mapping("price", "compare_at_price")
    def prices(self, record: Record) -> dict[str, Any]:
        """On sale: the sale price, with the regular one struck through; else the regular."""
        currency = _currency(self)
        regular = record.get("regular_price") or record.get("price")
        sale = record.get("sale_price")
        if not regular and not sale:
            raise ValueError("the item has no price")
        if sale:
            return {
                "price": {"amount": to_decimal(sale), "currency": currency},
                "compare_at_price": {"amount": to_decimal(regular), "currency": currency}
                if regular
                else None,
            }
        return {
            "price": {"amount": to_decimal(regular), "currency": currency},
            "compare_at_price": None,
        }


class WooProductImportMapper(Mapper[Product]):
    """A product (variable ones carrying ``_variations``) → :class:`Product`."""

    model = Product
    entity = "products"
    direct = (
        Direct("name", "title"),
        Direct("slug", "handle"),
        Direct("description", "description_html"),
        Direct("date_created_gmt", "created_at", optional_gmt),
        Direct("date_modified_gmt", "updated_at", gmt),
    )

    @mapping("origin")
    def origin(self, record: Record) -> dict[str, Any]:
        """The product id and its GMT modification time."""
        return {"origin": _origin(self, record, str(record.get("id")))}

    @mapping("status")
    def status(self, record: Record) -> dict[str, Any]:
        """The post status onto the canonical one."""
        status = record.get("status")
        if status not in _PRODUCT_STATUS:
            raise ValueError(f"unknown product status {status!r}")
        return {"status": _PRODUCT_STATUS[status]}

    @mapping("product_type", "tags")
    def labels(self, record: Record) -> dict[str, Any]:
        """The first category as the type; tag names."""
        categories = record.get("categories") or []
        return {
            "product_type": categories[0]["name"] if categories else None,
            "tags": [t["name"] for t in record.get("tags") or []],
        }

    @mapping("variants", "options")
    def variants(self, record: Record) -> dict[str, Any]:
        """Variations of a variable product; a simple product is its own single variant."""
        mapper = WooVariantImportMapper(self.context)
        if record.get("type") == "variable":
            raw = record.get("_variations")
            if raw is None:
                raise ValueError("variations were not fetched")
            variants = [mapper.map(v) for v in raw]
        else:
            variants = [mapper.map(record)]
        options = [
            ProductOption(name=a["name"], values=list(a.get("options") or []))
            for a in record.get("attributes") or []
            if a.get("variation")
        ]
        return {"variants": variants, "options": options}


class WooInventoryImportMapper(Mapper[InventoryLevel]):
    """A stock-managed simple product or variation → :class:`InventoryLevel` at ``default``."""

    model = InventoryLevel
    entity = "inventory"
    direct = (Direct("date_modified_gmt", "updated_at", gmt),)

    def external_id(self, record: Record) -> str | None:
        """The stock handle identifies the level (one location)."""
        return stock_handle(record) if record.get("id") else None

    @mapping("sku", "location_id", "location_name", "origin")
    def position(self, record: Record) -> dict[str, Any]:
        """SKU at the store's one location."""
        if not record.get("sku"):
            raise ValueError("a stock-managed item without a SKU cannot be matched")
        handle = stock_handle(record)
        return {
            "sku": record["sku"],
            "location_id": LOCATION,
            "location_name": LOCATION,
            "origin": _origin(self, record, handle),
        }

    @mapping("available")
    def available(self, record: Record) -> dict[str, Any]:
        """``stock_quantity`` (negative when back-ordered)."""
        return {"available": to_int(record.get("stock_quantity"))}


class WooLineItemImportMapper(Mapper[LineItem]):
    """An order line → :class:`LineItem`."""

    model = LineItem
    entity = "line_items"
    direct = (
        Direct("id", "external_id", str),
        Direct("name", "title"),
        Direct("quantity", "quantity", to_int),
    )

    @mapping("sku", "variant_id", "unit_price")
    def item(self, record: Record) -> dict[str, Any]:
        """SKU, the stock handle it sold from, and the unit price."""
        variation = record.get("variation_id") or 0
        product = record.get("product_id")
        price = record.get("price")
        if price is None:
            raise ValueError("the line has no price")
        return {
            "sku": record.get("sku") or None,
            "variant_id": f"{product}/{variation}" if variation else str(product),
            "unit_price": {"amount": Decimal(str(price)), "currency": _currency(self)},
        }


def _address(raw: Any) -> Address | None:
    if not isinstance(raw, dict) or not any(raw.values()):
        return None
    name = " ".join(p for p in (raw.get("first_name"), raw.get("last_name")) if p) or None
    return Address(
        name=name,
        company=raw.get("company") or None,
        address1=raw.get("address_1") or None,
        address2=raw.get("address_2") or None,
        city=raw.get("city") or None,
        province_code=raw.get("state") or None,
        country_code=raw.get("country") or None,
        zip=raw.get("postcode") or None,
        phone=raw.get("phone") or None,
    )


class WooOrderImportMapper(Mapper[Order]):
    """An order → :class:`Order` (numbered ``#<number>`` as the store shows it)."""

    model = Order
    entity = "orders"
    direct = (
        Direct("currency", "currency"),
        Direct("date_created_gmt", "created_at", gmt),
        Direct("date_modified_gmt", "updated_at", gmt),
    )
    children = (Child("line_items", "line_items", WooLineItemImportMapper),)

    @mapping("origin", "number")
    def origin(self, record: Record) -> dict[str, Any]:
        """Order id, and the number customers see."""
        return {
            "origin": _origin(self, record, str(record.get("id"))),
            "number": f"#{record.get('number') or record.get('id')}",
        }

    @mapping("financial_status", "fulfillment_status", "cancelled_at")
    def statuses(self, record: Record) -> dict[str, Any]:
        """One WooCommerce status onto the payment and the shipping state."""
        status = str(record.get("status"))
        return {
            "financial_status": _FINANCIAL.get(status, FinancialStatus.UNKNOWN),
            "fulfillment_status": FulfillmentStatus.FULFILLED
            if status == "completed"
            else FulfillmentStatus.UNFULFILLED,
            "cancelled_at": optional_gmt(record.get("date_modified_gmt"))
            if status == "cancelled"
            else None,
        }

    @mapping("total", "total_tax", "total_shipping")
    def totals(self, record: Record) -> dict[str, Any]:
        """Totals in the order currency."""
        currency = record.get("currency")

        def money(field: str) -> dict[str, Any] | None:
            value = record.get(field)
            return (
                None if value in (None, "") else {"amount": to_decimal(value), "currency": currency}
            )

        return {
            "total": money("total"),
            "total_tax": money("total_tax"),
            "total_shipping": money("shipping_total"),
        }

    @mapping("email", "phone", "customer", "shipping_address", "billing_address")
    def people(self, record: Record) -> dict[str, Any]:
        """Billing contact as the customer; both addresses (PII)."""
        billing = record.get("billing") or {}
        customer_id = record.get("customer_id")
        return {
            "email": billing.get("email") or None,
            "phone": billing.get("phone") or None,
            "customer": Customer(
                external_id=str(customer_id) if customer_id else None,
                email=billing.get("email") or None,
                phone=billing.get("phone") or None,
                first_name=billing.get("first_name") or None,
                last_name=billing.get("last_name") or None,
            )
            if billing
            else None,
            "shipping_address": _address(record.get("shipping")),
            "billing_address": _address(billing),
        }


_WOO_STATUS = {"active": "publish", "draft": "draft", "archived": "draft", "unlisted": "private"}


def _decimal(amount: Decimal) -> str:
    """A price as the store writes it: two decimals unless it has more."""
    cents = amount.quantize(Decimal("0.01"))
    return f"{cents:.2f}" if cents == amount else format(amount, "f")


def _woo_prices(price: Decimal, compare_at: Money | None) -> dict[str, str]:
    """Canonical price (and the struck-through one) as WooCommerce's regular and sale price."""
    if compare_at is not None and compare_at.amount > price:
        return {"regular_price": _decimal(compare_at.amount), "sale_price": _decimal(price)}
    return {"regular_price": _decimal(price), "sale_price": ""}


class WooProductExportMapper(ExportMapper[Product]):
    """Canonical product → a product update and its variations' updates (batch objects).

    ``handles``: variation ids by SKU, and the product's own id under ``SELF`` (a simple
    product is its own single variant). Tags and categories are not written.
    """

    entity = "products"

    def map(self, record: Product, handles: Mapping[str, str]) -> dict[str, Any]:
        """``{"product": {...}, "variations": [{...}, ...]}``."""
        product_id = handles.get(SELF)
        if not product_id:
            raise ValueError("a WooCommerce product update needs the product's id")
        fields: dict[str, Any] = {"id": int(product_id), "name": record.title}
        if record.status is not None:
            fields["status"] = _WOO_STATUS[record.status.value]
        if record.description_html is not None:
            fields["description"] = record.description_html
        variations = []
        for variant in record.variants:
            variant_id = handles.get(variant.sku or "")
            prices = _woo_prices(variant.price.amount, variant.compare_at_price)
            if variant_id == product_id:
                fields.update(prices)
            elif variant_id:
                variations.append({"id": int(variant_id), **prices})
        return {"product": fields, "variations": variations}


EXPORT_MAPPERS: dict[str, type[ExportMapper[Any]]] = {"products": WooProductExportMapper}
"""Entity → export mapper."""

IMPORT_MAPPERS: dict[str, type[Mapper[Any]]] = {
    "products": WooProductImportMapper,
    "inventory": WooInventoryImportMapper,
    "orders": WooOrderImportMapper,
}
"""Entity → import mapper."""

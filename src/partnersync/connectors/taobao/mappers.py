"""Taobao/Tmall TOP JSON → canonical records (import mappers).

TOP writes times as GMT+8 wall-clock strings (``yyyy-MM-dd HH:mm:ss``); they become aware UTC
here, at the edge. Prices are decimal strings in renminbi (CNY). SKUs are matched across
platforms by the seller's ``outer_id`` (商家编码), the canonical SKU.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from partnersync.mapping.convert import to_decimal, to_int
from partnersync.mapping.mapper import Child, Direct, Mapper, Record, mapping
from partnersync.mapping.model import (
    Address,
    Customer,
    FinancialStatus,
    FulfillmentStatus,
    InventoryLevel,
    LineItem,
    Order,
    Product,
    Variant,
)

PLATFORM = "taobao"
CURRENCY = "CNY"
LOCATION = "default"
GMT8 = timezone(timedelta(hours=8))

_PAID = {
    "WAIT_SELLER_SEND_GOODS",
    "SELLER_CONSIGNED_PART",
    "WAIT_BUYER_CONFIRM_GOODS",
    "TRADE_BUYER_SIGNED",
    "TRADE_FINISHED",
}
_FULFILLMENT = {
    "SELLER_CONSIGNED_PART": FulfillmentStatus.PARTIALLY_FULFILLED,
    "WAIT_BUYER_CONFIRM_GOODS": FulfillmentStatus.FULFILLED,
    "TRADE_BUYER_SIGNED": FulfillmentStatus.FULFILLED,
    "TRADE_FINISHED": FulfillmentStatus.FULFILLED,
}


def top_time(value: Any) -> datetime:
    """A TOP time string (GMT+8) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a TOP time 'yyyy-MM-dd HH:mm:ss', got {value!r}")
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=GMT8).astimezone(UTC)


def optional_top_time(value: Any) -> datetime | None:
    """``top_time`` or None for an empty value."""
    return top_time(value) if value else None


def stock_handle(record: Record) -> str | None:
    """What a stock write addresses: ``num_iid:sku_id``, or ``num_iid`` without SKUs."""
    if not record.get("num_iid"):
        return None
    sku = record.get("sku_id")
    return f"{record['num_iid']}:{sku}" if sku else str(record["num_iid"])


def _origin(mapper: Mapper[Any], record: Record, external_id: str) -> dict[str, Any]:
    return {
        "account": mapper.context.account,
        "platform": PLATFORM,
        "external_id": external_id,
        "updated_at": optional_top_time(record.get("modified")),
    }


def _money(value: Any) -> dict[str, Any]:
    return {"amount": to_decimal(value), "currency": CURRENCY}


class TaobaoSkuImportMapper(Mapper[Variant]):
    """A SKU → :class:`Variant` (its property values as options)."""

    model = Variant
    entity = "variants"
    direct = (Direct("sku_id", "external_id", str), Direct("outer_id", "sku"))

    @mapping("title", "options", "price")
    def details(self, record: Record) -> dict[str, Any]:
        """``properties_name`` is ``pid:vid:name:value`` pairs joined by ``;``."""
        options: dict[str, str] = {}
        for part in str(record.get("properties_name") or "").split(";"):
            pieces = part.split(":")
            if len(pieces) == 4:
                options[pieces[2]] = pieces[3]
        return {
            "title": " / ".join(options.values()) or "Default",
            "options": options,
            "price": _money(record.get("price")),
        }


class TaobaoItemImportMapper(Mapper[Product]):
    """An item (``taobao.item.seller.get``, SKUs included) → :class:`Product`."""

    model = Product
    entity = "products"
    external_id_path = "num_iid"
    direct = (Direct("title", "title"), Direct("modified", "updated_at", top_time))

    @mapping("origin", "status")
    def origin(self, record: Record) -> dict[str, Any]:
        """``num_iid``; on sale is active, in the warehouse a draft."""
        return {
            "origin": _origin(self, record, str(record.get("num_iid"))),
            "status": "active" if record.get("approve_status") == "onsale" else "draft",
        }

    @mapping("variants")
    def variants(self, record: Record) -> dict[str, Any]:
        """Its SKUs, or the item itself as its one variant."""
        skus = (record.get("skus") or {}).get("sku") or []
        if skus:
            mapper = TaobaoSkuImportMapper(self.context)
            return {
                "variants": [mapper.map({**s, "_num_iid": record.get("num_iid")}) for s in skus]
            }
        return {
            "variants": [
                {
                    "external_id": str(record.get("num_iid")),
                    "sku": record.get("outer_id") or None,
                    "title": "Default",
                    "price": _money(record.get("price")),
                }
            ]
        }


class TaobaoStockImportMapper(Mapper[InventoryLevel]):
    """A SKU's (or SKU-less item's) quantity → :class:`InventoryLevel` at ``default``."""

    model = InventoryLevel
    entity = "inventory"
    direct = (Direct("modified", "updated_at", top_time),)

    def external_id(self, record: Record) -> str | None:
        """``num_iid:sku_id`` (or ``num_iid``) — the handle a stock write needs."""
        return stock_handle(record)

    @mapping("sku", "location_id", "location_name", "origin", "available")
    def level(self, record: Record) -> dict[str, Any]:
        """The seller's outer id is the SKU; a SKU without one cannot be matched."""
        if not record.get("outer_id"):
            raise ValueError("a SKU without an outer_id (商家编码) cannot be matched")
        handle = self.external_id(record) or ""
        return {
            "sku": record["outer_id"],
            "location_id": LOCATION,
            "location_name": LOCATION,
            "origin": _origin(self, record, handle),
            "available": to_int(record.get("quantity")),
        }


class TaobaoOrderLineImportMapper(Mapper[LineItem]):
    """A sub-order (``orders.order``) → :class:`LineItem`."""

    model = LineItem
    entity = "line_items"
    direct = (
        Direct("oid", "external_id", str),
        Direct("title", "title"),
        Direct("num", "quantity", to_int),
    )

    @mapping("sku", "unit_price", "variant_id")
    def item(self, record: Record) -> dict[str, Any]:
        """The outer SKU id, unit price and the stock handle it sold from."""
        sku = record.get("sku_id")
        return {
            "sku": record.get("outer_sku_id") or record.get("outer_iid") or None,
            "unit_price": _money(record.get("price")),
            "variant_id": f"{record.get('num_iid')}:{sku}" if sku else str(record.get("num_iid")),
        }


class TaobaoTradeImportMapper(Mapper[Order]):
    """A trade (``taobao.trade.fullinfo.get``) → :class:`Order`."""

    model = Order
    entity = "orders"
    external_id_path = "tid"
    direct = (
        Direct("created", "created_at", top_time),
        Direct("modified", "updated_at", top_time),
    )
    children = (Child("orders.order", "line_items", TaobaoOrderLineImportMapper),)

    @mapping("origin", "number", "currency")
    def origin(self, record: Record) -> dict[str, Any]:
        """The trade id is also the number sellers see."""
        tid = str(record.get("tid"))
        return {"origin": _origin(self, record, tid), "number": tid, "currency": CURRENCY}

    @mapping("financial_status", "fulfillment_status", "cancelled_at")
    def statuses(self, record: Record) -> dict[str, Any]:
        """One trade status onto payment and shipping states; a closed trade is cancelled."""
        status = str(record.get("status"))
        closed = status in ("TRADE_CLOSED", "TRADE_CLOSED_BY_TAOBAO")
        if status in _PAID:
            financial = FinancialStatus.PAID
        elif status == "TRADE_CLOSED":
            financial = FinancialStatus.REFUNDED  # closed after payment: refunded
        elif status == "TRADE_CLOSED_BY_TAOBAO":
            financial = FinancialStatus.VOIDED  # closed before payment
        else:
            financial = FinancialStatus.PENDING
        return {
            "financial_status": financial,
            "fulfillment_status": _FULFILLMENT.get(status, FulfillmentStatus.UNFULFILLED),
            "cancelled_at": optional_top_time(record.get("modified")) if closed else None,
        }

    @mapping("total", "total_shipping")
    def totals(self, record: Record) -> dict[str, Any]:
        """What the buyer paid, and the postage."""
        return {
            "total": _money(record.get("payment")),
            "total_shipping": _money(record.get("post_fee")) if record.get("post_fee") else None,
        }

    @mapping("customer", "shipping_address", "phone")
    def people(self, record: Record) -> dict[str, Any]:
        """The buyer's nick and the receiver (PII)."""
        return {
            "customer": Customer(external_id=record.get("buyer_nick") or None),
            "phone": record.get("receiver_mobile") or None,
            "shipping_address": Address(
                name=record.get("receiver_name") or None,
                address1=record.get("receiver_address") or None,
                address2=record.get("receiver_district") or None,
                city=record.get("receiver_city") or None,
                province_code=record.get("receiver_state") or None,
                country_code="CN",
                zip=record.get("receiver_zip") or None,
                phone=record.get("receiver_mobile") or None,
            ),
        }


IMPORT_MAPPERS: dict[str, type[Mapper[Any]]] = {
    "products": TaobaoItemImportMapper,
    "inventory": TaobaoStockImportMapper,
    "orders": TaobaoTradeImportMapper,
}
"""Entity → import mapper."""

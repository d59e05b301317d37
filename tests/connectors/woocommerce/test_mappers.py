"""WooCommerce import mappers, fed the examples from WooCommerce's own API documentation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from partnersync.connectors.woocommerce.mappers import (
    WooInventoryImportMapper,
    WooOrderImportMapper,
    WooProductImportMapper,
)
from partnersync.errors import MappingError
from partnersync.mapping.mapper import MapContext
from partnersync.mapping.model import FinancialStatus, FulfillmentStatus, ProductStatus

FIXTURES = Path(__file__).parents[2] / "fixtures" / "woocommerce"
CTX = MapContext(account="woo", platform="woocommerce", settings={"currency": "USD"})


def examples(name: str) -> list[Any]:
    return list(json.loads((FIXTURES / f"{name}-examples.json").read_text()))


def test_the_documented_simple_product_maps_to_one_variant() -> None:
    raw = examples("products")[0]  # "Premium Quality", id 794
    product = WooProductImportMapper(CTX).map(raw)

    assert product.origin.external_id == "794"
    assert product.title == raw["name"]
    assert product.handle == raw["slug"]
    assert product.status is ProductStatus.ACTIVE
    assert product.updated_at == datetime.fromisoformat(raw["date_modified_gmt"]).replace(
        tzinfo=UTC
    )
    [variant] = product.variants
    assert variant.price.amount == Decimal("21.99")
    assert variant.price.currency == "USD"


def test_the_documented_variable_product_maps_its_variations() -> None:
    raw = examples("products")[1]  # "Ship Your Idea", variable, id 799
    variations = [v for v in examples("product-variations") if isinstance(v, dict) and "id" in v]
    product = WooProductImportMapper(CTX).map({**raw, "_variations": variations[:1]})

    assert raw["type"] == "variable"
    assert [o.name for o in product.options] == ["Color", "Size"]
    [variant] = product.variants
    assert variant.external_id == str(variations[0]["id"])
    assert variant.options == {"Color": "Black"}
    assert variant.price.amount == Decimal(variations[0]["regular_price"])
    assert variant.sku is None  # the docs' variations have an empty SKU
    with pytest.raises(MappingError, match="variations"):
        WooProductImportMapper(CTX).map(raw)  # without its variations it cannot be mapped


def test_the_documented_order_maps_with_its_lines_and_statuses() -> None:
    raw = examples("orders")[1]  # order 727, processing
    order = WooOrderImportMapper(CTX).map(raw)

    assert order.origin.external_id == "727"
    assert order.number == "#727"
    assert order.financial_status is FinancialStatus.PAID
    assert order.fulfillment_status is FulfillmentStatus.UNFULFILLED
    assert order.total.amount == Decimal("29.35")
    assert order.total_shipping is not None
    assert order.total_shipping.amount == Decimal("10.00")
    assert order.email == "john.doe@example.com"
    assert order.created_at == datetime(2017, 3, 22, 19, 28, 2, tzinfo=UTC)
    assert [(line.sku, line.quantity, line.unit_price.amount) for line in order.line_items] == [
        (None, 2, Decimal("3")),
        ("Bar3", 1, Decimal("12")),
    ]
    assert order.line_items[1].variant_id == "22/23"
    assert order.shipping_address is not None
    assert order.shipping_address.city == "San Francisco"


def test_a_cancelled_order_carries_its_cancellation_time() -> None:
    raw = {**examples("orders")[1], "status": "cancelled"}
    order = WooOrderImportMapper(CTX).map(raw)
    assert order.financial_status is FinancialStatus.VOIDED
    assert order.cancelled_at == order.updated_at


def test_a_stock_level_is_the_item_at_the_one_location() -> None:
    raw = {
        **examples("product-variations")[0],
        "sku": "BLK-1",
        "manage_stock": True,
        "stock_quantity": 7,
        "_product_id": 22,  # the connector adds the parent it listed the variation under
    }
    level = WooInventoryImportMapper(CTX).map(raw)
    assert (level.sku, level.location_id, level.available) == ("BLK-1", "default", 7)
    assert level.origin.external_id == f"22/{raw['id']}"  # the stock handle is its id


def test_bad_records_name_the_field_and_reason() -> None:
    raw = {**examples("products")[0], "regular_price": "", "price": "", "sale_price": ""}
    with pytest.raises(MappingError, match="no price"):
        WooProductImportMapper(CTX).map(raw)
    with pytest.raises(MappingError, match="without a SKU"):
        WooInventoryImportMapper(CTX).map(
            {**examples("product-variations")[0], "sku": "", "stock_quantity": 1}
        )

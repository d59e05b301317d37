"""Shopify import mappers: real-shaped records in, canonical records (or typed errors) out."""

from __future__ import annotations

import contextlib
import copy
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partnersync.connectors.shopify.mappers import (
    ShopifyInventoryLevelImportMapper,
    ShopifyOrderImportMapper,
    ShopifyProductImportMapper,
)
from partnersync.errors import MappingError, MappingSpecError
from partnersync.mapping.mapper import FieldOverride, MapContext
from partnersync.mapping.model import FinancialStatus, FulfillmentStatus, ProductStatus

CTX = MapContext(account="shop", platform="shopify", settings={"currency": "EUR"})

PRODUCT: dict[str, Any] = {
    "id": "gid://shopify/Product/1",
    "title": "Tee",
    "handle": "tee",
    "status": "ACTIVE",
    "vendor": None,
    "productType": "Shirts",
    "descriptionHtml": "<p>製品 ☕</p>",
    "tags": ["a"],
    "createdAt": "2026-01-01T10:00:00+08:00",
    "updatedAt": "2026-01-02T00:00:00Z",
    "options": [{"name": "Size", "values": ["S", "M"]}],
    "variants": {
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "nodes": [
            {
                "id": "gid://shopify/ProductVariant/11",
                "sku": "TEE-S",
                "barcode": None,
                "title": "S",
                "price": "19.999",
                "compareAtPrice": None,
                "position": 1,
                "updatedAt": "2026-01-02T00:00:00Z",
                "selectedOptions": [{"name": "Size", "value": "S"}],
                "inventoryItem": {"id": "gid://shopify/InventoryItem/21"},
            }
        ],
    },
}

ORDER: dict[str, Any] = {
    "id": "gid://shopify/Order/5",
    "name": "#1001",
    "email": "a@example.com",
    "phone": None,
    "createdAt": "2026-01-01T00:00:00-05:00",
    "updatedAt": "2026-01-01T06:00:00Z",
    "cancelledAt": None,
    "currencyCode": "EUR",
    "displayFinancialStatus": "PARTIALLY_REFUNDED",
    "displayFulfillmentStatus": "PARTIALLY_FULFILLED",
    "totalPriceSet": {"shopMoney": {"amount": "10.1", "currencyCode": "EUR"}},
    "subtotalPriceSet": {"shopMoney": {"amount": "9.1", "currencyCode": "EUR"}},
    "totalTaxSet": {"shopMoney": {"amount": "0.0", "currencyCode": "EUR"}},
    "totalShippingPriceSet": {"shopMoney": {"amount": "1.0", "currencyCode": "EUR"}},
    "customer": {
        "id": "gid://shopify/Customer/9",
        "email": "a@example.com",
        "phone": None,
        "firstName": "A",
        "lastName": "B",
    },
    "shippingAddress": {
        "name": "A B",
        "company": None,
        "address1": "1 Road",
        "address2": None,
        "city": "X",
        "provinceCode": None,
        "countryCodeV2": "DE",
        "zip": "1",
        "phone": None,
    },
    "billingAddress": None,
    "fulfillments": [
        {
            "id": "gid://shopify/Fulfillment/7",
            "status": "SUCCESS",
            "createdAt": "2026-01-01T07:00:00Z",
            "trackingInfo": [{"company": "DHL", "number": "123", "url": None}],
        }
    ],
    "lineItems": {
        "pageInfo": {"hasNextPage": False, "endCursor": None},
        "nodes": [
            {
                "id": "gid://shopify/LineItem/8",
                "sku": "TEE-S",
                "title": "Tee",
                "quantity": 2,
                "variant": {"id": "gid://shopify/ProductVariant/11"},
                "originalUnitPriceSet": {"shopMoney": {"amount": "4.55", "currencyCode": "EUR"}},
            }
        ],
    },
}

LEVEL: dict[str, Any] = {
    "id": "gid://shopify/InventoryLevel/31?inventory_item_id=21",
    "updatedAt": "2026-01-03T00:00:00Z",
    "location": {"id": "gid://shopify/Location/1", "name": "Main"},
    "quantities": [
        {"name": "available", "quantity": 5},
        {"name": "committed", "quantity": 1},
        {"name": "incoming", "quantity": 0},
        {"name": "on_hand", "quantity": 6},
    ],
    "item": {
        "id": "gid://shopify/InventoryItem/21",
        "sku": "TEE-S",
        "updatedAt": "2026-01-03T00:00:00Z",
    },
}


def test_product_maps_with_exact_money_and_utc_times() -> None:
    product = ShopifyProductImportMapper(CTX).map(PRODUCT)
    assert product.status is ProductStatus.ACTIVE
    assert product.variants[0].price.amount == Decimal("19.999")
    assert product.variants[0].price.currency == "EUR"
    assert product.variants[0].options == {"Size": "S"}
    assert product.created_at is not None
    assert product.created_at.utcoffset() is not None
    assert product.created_at.isoformat() == "2026-01-01T02:00:00+00:00"
    assert product.description_html == "<p>製品 ☕</p>"
    assert product.origin.external_id == "gid://shopify/Product/1"


def test_order_maps_statuses_totals_people_and_tracking() -> None:
    order = ShopifyOrderImportMapper(CTX).map(ORDER)
    assert order.financial_status is FinancialStatus.PARTIALLY_REFUNDED
    assert order.fulfillment_status is FulfillmentStatus.PARTIALLY_FULFILLED
    assert order.total.amount == Decimal("10.1")
    assert order.created_at.isoformat() == "2026-01-01T05:00:00+00:00"
    assert order.line_items[0].unit_price.amount == Decimal("4.55")
    assert order.fulfillments[0].tracking_number == "123"
    assert order.shipping_address is not None
    assert order.shipping_address.country_code == "DE"


def test_inventory_level_maps_named_quantities() -> None:
    level = ShopifyInventoryLevelImportMapper(CTX).map(LEVEL)
    assert (level.sku, level.available, level.reserved, level.on_hand) == ("TEE-S", 5, 1, 6)


@pytest.mark.parametrize(
    ("mapper", "record", "path", "value", "field", "reason"),
    [
        (
            ShopifyProductImportMapper,
            PRODUCT,
            ("variants", "nodes", 0, "price"),
            "12,99",
            "variants[0].price",
            "not a decimal",
        ),
        (ShopifyProductImportMapper, PRODUCT, ("title",), None, "title", "valid string"),
        (
            ShopifyProductImportMapper,
            PRODUCT,
            ("updatedAt",),
            "yesterday",
            "updated_at",
            "ISO-8601",
        ),
        (
            ShopifyOrderImportMapper,
            ORDER,
            ("totalPriceSet", "shopMoney", "amount"),
            10.1,
            "total",
            "decimal string",
        ),
        (ShopifyInventoryLevelImportMapper, LEVEL, ("item", "sku"), None, "sku", "valid string"),
        (
            ShopifyInventoryLevelImportMapper,
            LEVEL,
            ("quantities", 0, "quantity"),
            "five",
            "available",
            "integer",
        ),
    ],
)
def test_bad_fields_raise_a_mapping_error_naming_record_field_and_reason(
    mapper: Any, record: dict[str, Any], path: tuple[Any, ...], value: Any, field: str, reason: str
) -> None:
    broken = copy.deepcopy(record)
    target = broken
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(MappingError) as caught:
        mapper(CTX).map(broken)
    error = caught.value
    assert error.account == "shop"
    assert error.external_id == record["id"]
    assert error.field.startswith(field)
    assert reason in error.reason
    assert record["id"] in str(error)


def test_per_account_overrides_rename_constant_default_and_enum_map() -> None:
    overrides = {
        "vendor": FieldOverride(default="Acme"),
        "product_type": FieldOverride(constant="Apparel"),
        "handle": FieldOverride(source="title"),
        "status": FieldOverride(enum_map={"ACTIVE": "archived"}),
    }
    product = ShopifyProductImportMapper(CTX, overrides).map(PRODUCT)
    assert product.vendor == "Acme"
    assert product.product_type == "Apparel"
    assert product.handle == "Tee"
    assert product.status is ProductStatus.ARCHIVED


def test_override_of_an_unknown_field_is_a_spec_error() -> None:
    with pytest.raises(MappingSpecError, match="venodr"):
        ShopifyProductImportMapper(CTX, {"venodr": FieldOverride(default="x")})


def test_a_missing_shop_currency_is_named() -> None:
    with pytest.raises(MappingError, match="currency"):
        ShopifyProductImportMapper(MapContext("shop", "shopify")).map(PRODUCT)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(ORDER), "x"]), json_values, max_size=12))
def test_arbitrary_json_only_ever_raises_mapping_error(record: dict[str, Any]) -> None:
    for mapper in (
        ShopifyProductImportMapper,
        ShopifyOrderImportMapper,
        ShopifyInventoryLevelImportMapper,
    ):
        with contextlib.suppress(MappingError):
            mapper(CTX).map(record)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(PRODUCT)), json_values)
def test_corrupting_one_product_field_is_mapped_or_a_mapping_error(key: str, value: Any) -> None:
    broken = {**PRODUCT, key: value}
    try:
        first = ShopifyProductImportMapper(CTX).map(broken)
    except MappingError:
        return
    assert ShopifyProductImportMapper(CTX).map(broken).model_dump_json() == first.model_dump_json()

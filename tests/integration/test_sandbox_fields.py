"""Every non-null field of the types real clients select resolves in the sandbox shop (issue 7:
tap-shopify selects every field of its schemas, and one unresolved non-null field nulls out a
whole page). The selections are built by walking Shopify's own schema, not from a hand list."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    Undefined,
    get_named_type,
    is_leaf_type,
)

from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.server import load_schema
from tests.conftest import SHOP_TOKEN

ROOTS = {
    "Product": "products",
    "ProductVariant": "productVariants",
    "InventoryItem": "inventoryItems",
    "Location": "locations",
    "Order": "orders",
    "Customer": "customers",
}
NESTED = {
    "InventoryLevel": ("InventoryItem", "inventoryLevels"),
    "LineItem": ("Order", "lineItems"),
}


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopifySandbox]:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, bucket_size=10_000.0) as s:
        yield s


def _callable_without_arguments(field: GraphQLField) -> bool:
    return all(
        not isinstance(arg.type, GraphQLNonNull) or arg.default_value is not Undefined
        for arg in field.args.values()
    )


def non_null_selection(type_name: str) -> tuple[str, list[str]]:
    """The selection of every non-null field of ``type_name`` (objects by ``__typename``,
    connections by one node's ``__typename``), and the names selected."""
    owner = load_schema().get_type(type_name)
    assert isinstance(owner, GraphQLObjectType)
    parts, names = [], []
    for name, field in sorted(owner.fields.items()):
        if not isinstance(field.type, GraphQLNonNull) or not _callable_without_arguments(field):
            continue
        named = get_named_type(field.type)
        if is_leaf_type(named):
            parts.append(name)
        elif named.name.endswith("Connection") and "first" in field.args:
            parts.append(f"{name}(first: 1) {{ nodes {{ __typename }} }}")
        elif "first" in field.args:
            parts.append(f"{name}(first: 1) {{ __typename }}")
        else:
            parts.append(f"{name} {{ __typename }}")
        names.append(name)
    return " ".join(parts), names


def ask(shop: ShopifySandbox, document: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{shop.url}/admin/api/2026-10/graphql.json",
        json={"query": document},
        headers={"X-Shopify-Access-Token": SHOP_TOKEN},
        timeout=30,
    )
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body["errors"][:3]
    return body["data"]


@pytest.mark.parametrize("type_name", sorted([*ROOTS, *NESTED]))
def test_every_non_null_field_resolves(shop: ShopifySandbox, type_name: str) -> None:
    selection, names = non_null_selection(type_name)
    assert len(names) >= 3
    if type_name in ROOTS:
        data = ask(shop, f"{{ {ROOTS[type_name]}(first: 2) {{ nodes {{ {selection} }} }} }}")
        nodes = data[ROOTS[type_name]]["nodes"]
    else:
        parent, field = NESTED[type_name]
        data = ask(
            shop,
            f"{{ {ROOTS[parent]}(first: 2) {{ nodes {{ {field}(first: 2) "
            f"{{ nodes {{ {selection} }} }} }} }} }}",
        )
        nodes = [
            n for parent_node in data[ROOTS[parent]]["nodes"] for n in parent_node[field]["nodes"]
        ]
    assert nodes, f"the sandbox has no {type_name}"
    for node in nodes:
        missing = [name for name in names if node.get(name) is None]
        assert not missing, f"{type_name}: {missing}"


def test_stored_values_win_over_filled_ones(shop: ShopifySandbox) -> None:
    order = next(iter(shop.data.tables["orders"].values()))
    data = ask(
        shop,
        "{ orders(first: 1) { nodes { id name createdAt legacyResourceId "
        "customer { email numberOfOrders } } } }",
    )
    node = data["orders"]["nodes"][0]
    assert node["name"] == order["name"]
    assert node["legacyResourceId"] == order["id"].rsplit("/", 1)[-1]
    customers = ask(shop, "{ customers(first: 250) { nodes { id email numberOfOrders } } }")
    emails = {c["email"] for c in customers["customers"]["nodes"]}
    assert {o["customer"]["email"] for o in shop.data.tables["orders"].values()} == emails

"""Every document the connector sends is valid against Shopify's 2026-10 schema and costed right."""

from __future__ import annotations

import pytest

from partnersync.connectors.base import AccountInfo
from partnersync.connectors.shopify import queries
from partnersync.connectors.shopify.connector import ShopifyConnector
from partnersync.connectors.shopify.cost import largest_page, requested_cost
from partnersync.sandbox.shopify import validate_document
from partnersync.sandbox.shopify.cost import requested_points


@pytest.mark.parametrize("name", sorted(queries.ALL_DOCUMENTS))
def test_document_validates_against_the_2026_10_schema(name: str) -> None:
    ast, errors = validate_document(queries.ALL_DOCUMENTS[name])
    assert ast is not None
    assert errors == ()


def test_a_broken_document_is_caught_by_the_same_check() -> None:
    _, errors = validate_document("query { products(first: 1) { nodes { idd } } }")
    assert errors
    assert "idd" in errors[0]


WORKED_EXAMPLES = [
    # A real shop's answer (community.shopify.dev thread 23101): product 1 + variants
    # 2 + floor(2 ln 250) = 11 × (variant 1 + inventoryItem 1) = 25; a linear rule says 503.
    (
        '{ product(id: "x") { variants(first: 250) { nodes { inventoryItem { id tracked } } } } }',
        25,
    ),
    # Connections scale logarithmically: 2 + floor(2 ln 10) = 4 × (1 + 2 + floor(2 ln 5) = 3 × 1)
    ("{ products(first: 10) { nodes { title variants(first: 5) { nodes { price } } } } }", 26),
    ("{ shop { name currencyCode } }", 1),  # an object 1, scalars free
    ("{ orders(first: 3) { pageInfo { hasNextPage } edges { node { id } } } }", 4),
    ('mutation { productDelete(input: {id: "x"}) { userErrors { field } } }', 10),
    # An interface field costs the maximum of its possible selections, not their sum:
    # node is 1, a Product its variants connection (2 + 1 × 1), a variant its product 1.
    (
        '{ node(id: "x") { id ... on Product { title variants(first: 2) { nodes { id } } } '
        "... on ProductVariant { price product { id } } } }",
        4,
    ),
    # Fragments on the same type add up (they all apply to the node); a sized list scales
    # like a connection without the 2: options(first: 3) is floor(2 ln 3) = 2 × 1.
    (
        '{ node(id: "x") { ... on Product { options(first: 3) { id } } '
        "... on Product { category { id } } } }",
        1 + 2 + 1,
    ),
]


@pytest.mark.parametrize(("document", "points"), WORKED_EXAMPLES)
def test_both_sides_cost_the_documented_examples_alike(document: str, points: int) -> None:
    # The connector's calculator and the sandbox's are written apart; both follow the docs.
    assert requested_cost(document) == points
    assert requested_points(document) == points


def test_cost_rules_for_objects_lists_and_mutations() -> None:
    assert requested_cost("{ shop { name } }") == 1
    assert requested_cost("{ shop { name currencyCode } }") == 1  # scalars are free
    # pageInfo is free; edges/node count like nodes
    assert (
        requested_cost("{ orders(first: 3) { pageInfo { hasNextPage } edges { node { id } } } }")
        == 4
    )
    assert (
        requested_cost('mutation { productDelete(input: {id: "x"}) { userErrors { field } } }')
        == 10
    )


@pytest.mark.parametrize(
    ("document", "extra"),
    [
        (queries.PRODUCTS, {"variantsFirst": 10}),
        (queries.PRODUCTS, {"variantsFirst": 100}),
        (queries.ORDERS, {"lineItemsFirst": 10}),
        (queries.INVENTORY_ITEMS, {"levelsFirst": 10}),
        (queries.PRODUCT_VARIANTS, {"id": "gid://shopify/Product/1"}),
    ],
)
def test_page_size_is_the_largest_under_the_single_query_maximum(
    document: str, extra: dict[str, object]
) -> None:
    size = largest_page(document, extra)
    assert 1 <= size <= 250
    assert requested_cost(document, {**extra, "first": size}) <= 1000
    if size < 250:
        assert requested_cost(document, {**extra, "first": size + 1}) > 1000


def test_connector_respects_a_lower_configured_maximum() -> None:
    connector = ShopifyConnector(
        AccountInfo("s", "shopify", "https://x.example", options={"max_query_cost": 300})
    )
    size = connector.page_size(queries.PRODUCTS, {"variantsFirst": 10})
    assert requested_cost(queries.PRODUCTS, {"variantsFirst": 10, "first": size}) <= 300

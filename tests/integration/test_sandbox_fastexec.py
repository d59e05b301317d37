"""The sandbox shop's fast executor answers exactly as graphql-core does (issue 7: the sandbox
must cost less CPU than the client it serves). Each document runs both ways over the same
shop — every query the connector sends, the schema-walked selections of every non-null field
real clients read, fragments, aliases and interfaces, and bulk queries without page sizes —
and the answers must be equal; what the fast one cannot answer alike it must refuse."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from graphql import OperationDefinitionNode, execute_sync, parse, validate

from partnersync.connectors.shopify import queries
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.fastexec import Unsupported, execute_query
from partnersync.sandbox.shopify.fill import fill_missing, filling_resolver
from partnersync.sandbox.shopify.server import IN_BULK, _Resolvers, load_schema
from tests.conftest import SHOP_TOKEN
from tests.integration.test_sandbox_fields import NESTED, ROOTS, non_null_selection


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopifySandbox]:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, products=30, orders=40) as s:
        yield s


def both(
    shop: ShopifySandbox, document: str, variables: dict[str, Any]
) -> tuple[Any, Any, list[Any], list[Any]]:
    """(graphql-core's data, the fast executor's data, and the search warnings of each)."""
    schema = load_schema()
    ast = parse(document)
    assert validate(schema, ast) == []
    (operation,) = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
    slow_warnings: list[Any] = []
    fast_warnings: list[Any] = []
    slow = execute_sync(
        schema,
        ast,
        root_value=_Resolvers(shop.data, slow_warnings, shop.mutations, shop.bulk).root(),
        variable_values=variables,
        field_resolver=filling_resolver,
    )
    assert slow.errors is None, slow.errors
    fast = execute_query(
        schema,
        ast,
        operation,
        _Resolvers(shop.data, fast_warnings, shop.mutations, shop.bulk).root(),
        variables,
        fill_missing,
    )
    return slow.data, fast, slow_warnings, fast_warnings


def first_id(shop: ShopifySandbox, table: str) -> str:
    return str(next(iter(shop.data.tables[table].values()))["id"])


def connector_documents(shop: ShopifySandbox) -> list[tuple[str, dict[str, Any]]]:
    product = next(iter(shop.data.tables["products"].values()))
    return [
        (queries.SHOP, {}),
        (queries.PRODUCTS, {"first": 7, "variantsFirst": 2, "query": "status:active"}),
        (queries.PRODUCTS, {"first": 250, "variantsFirst": 250, "query": None}),
        (queries.ORDERS, {"first": 9, "lineItemsFirst": 3, "query": "updated_at:>'2020-01-01'"}),
        (queries.INVENTORY_ITEMS, {"first": 20, "levelsFirst": 2, "query": None}),
        (queries.PRODUCT_VARIANTS, {"id": product["id"], "first": 1, "after": None}),
        (queries.READ_ITEM_LEVELS, {"id": first_id(shop, "inventory_items"), "first": 5}),
        (queries.INVENTORY_ITEM_LEVELS, {"id": first_id(shop, "inventory_items"), "first": 1}),
        (queries.ORDER_LINE_ITEMS, {"id": first_id(shop, "orders"), "first": 2, "after": None}),
        (queries.PRODUCT_BY_HANDLE, {"handle": product["handle"]}),
        (queries.ORDER_FULFILLMENT_STATE, {"id": first_id(shop, "orders")}),
        *((document, {"query": None}) for document in queries.COUNTS.values()),
    ]


def test_every_query_the_connector_sends_is_answered_alike(shop: ShopifySandbox) -> None:
    for document, variables in connector_documents(shop):
        slow, fast, slow_warnings, fast_warnings = both(shop, document, variables)
        assert fast == slow, document
        assert fast_warnings == slow_warnings


@pytest.mark.parametrize("type_name", sorted([*ROOTS, *NESTED]))
def test_every_non_null_field_real_clients_read_is_answered_alike(
    shop: ShopifySandbox, type_name: str
) -> None:
    selection, _ = non_null_selection(type_name)
    if type_name in ROOTS:
        document = f"{{ {ROOTS[type_name]}(first: 5) {{ nodes {{ {selection} }} }} }}"
    else:
        owner, field = NESTED[type_name]
        document = (
            f"{{ {ROOTS[owner]}(first: 3) {{ nodes {{ {field}(first: 3) {{ "
            f"edges {{ cursor node {{ {selection} }} }} }} }} }} }}"
        )
    slow, fast, _, _ = both(shop, document, {})
    assert fast == slow


def test_fragments_aliases_interfaces_and_search_warnings_are_answered_alike(
    shop: ShopifySandbox,
) -> None:
    document = """
    query Mixed($id: ID!) {
      node(id: $id) { __typename id ...P ... on Order { name } }
      a: products(first: 2, query: "tag:x nonsense:y") {
        edges { cursor node { id t: title ...P } } pageInfo { hasNextPage endCursor }
      }
      b: products(first: 2, reverse: true, sortKey: UPDATED_AT) { nodes { __typename id } }
      locations(first: 3) { nodes { id name inventoryLevels(first: 2) { nodes { id } } } }
    }
    fragment P on Product { handle variants(first: 1) { nodes { sku product { id } } } }
    """
    slow, fast, slow_warnings, fast_warnings = both(
        shop, document, {"id": first_id(shop, "products")}
    )
    assert fast == slow
    assert slow_warnings  # the unknown search field is warned about ...
    assert fast_warnings == slow_warnings  # ... by both


def test_bulk_queries_over_the_whole_shop_are_answered_alike(shop: ShopifySandbox) -> None:
    token = IN_BULK.set(True)
    try:
        for entity in ("products", "orders", "inventory"):
            slow, fast, _, _ = both(shop, queries.bulk_query(entity, None), {})
            assert fast == slow
            (root,) = fast.values()
            assert len(root["edges"]) > 0
    finally:
        IN_BULK.reset(token)


@pytest.mark.parametrize(
    ("document", "variables"),
    [
        (queries.PRODUCTS, {"first": 5, "variantsFirst": 1, "after": "not-a-cursor"}),
        (queries.PRODUCTS, {"first": 251, "variantsFirst": 1}),
        ("query Q($s: Boolean!) { shop { name @include(if: $s) } }", {"s": True}),
    ],
)
def test_what_it_cannot_answer_alike_it_refuses(
    shop: ShopifySandbox, document: str, variables: dict[str, Any]
) -> None:
    ast = parse(document)
    (operation,) = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
    root = _Resolvers(shop.data, [], shop.mutations, shop.bulk).root()
    with pytest.raises(Unsupported):
        execute_query(load_schema(), ast, operation, root, variables, fill_missing)

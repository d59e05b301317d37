"""Our pull queries select only what is read (issue 7: every selected object costs points, at
Shopify's rate on every page). Records pulled from the sandbox shop are wrapped so that every
key the import mapper reads is recorded; the query's selection, walked with graphql-core, must
equal what the mapper reads plus the few fields the connector itself needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from graphql import FieldNode, InlineFragmentNode, OperationDefinitionNode, SelectionSetNode, parse

from partnersync.auth.schemes import HeaderTokenAuth
from partnersync.connectors.base import AccountInfo
from partnersync.connectors.shopify import queries
from partnersync.connectors.shopify.connector import ShopifyConnector
from partnersync.connectors.shopify.mappers import IMPORT_MAPPERS
from partnersync.mapping.mapper import MapContext
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN

pytestmark = pytest.mark.anyio

CONNECTOR_READS = {
    # The record's id (the origin and nested refetches by node(id:)), its update time (the
    # cursor), and the nested connection's paging (completing a record's children).
    "products": {
        "id",
        "updatedAt",
        "variants.pageInfo.hasNextPage",
        "variants.pageInfo.endCursor",
    },
    "orders": {
        "id",
        "updatedAt",
        "lineItems.pageInfo.hasNextPage",
        "lineItems.pageInfo.endCursor",
    },
    # Inventory is walked by item; the connector flattens each item's levels, carrying the
    # item's id, sku and update time on every level (the mapper reads the sku).
    "inventory": {
        "id",
        "updatedAt",
        "inventoryLevels.pageInfo.hasNextPage",
        "inventoryLevels.pageInfo.endCursor",
        "inventoryLevels.nodes.id",
        "inventoryLevels.nodes.updatedAt",
    },
}

DOCUMENTS = {
    "products": queries.PRODUCTS,
    "orders": queries.ORDERS,
    "inventory": queries.INVENTORY_ITEMS,
}


def _leaves(selection: SelectionSetNode, prefix: str) -> Iterator[str]:
    for node in selection.selections:
        if isinstance(node, InlineFragmentNode):
            yield from _leaves(node.selection_set, prefix)
            continue
        assert isinstance(node, FieldNode)
        path = f"{prefix}{node.name.value}"
        if node.selection_set is None:
            yield path
        else:
            yield from _leaves(node.selection_set, path + ".")


def selected(document: str) -> set[str]:
    """Leaf paths the query selects on each record (below ``root.nodes``)."""
    (operation,) = [
        d for d in parse(document).definitions if isinstance(d, OperationDefinitionNode)
    ]
    (root,) = operation.selection_set.selections
    assert isinstance(root, FieldNode)
    assert root.selection_set is not None
    nodes = next(
        s
        for s in root.selection_set.selections
        if isinstance(s, FieldNode) and s.name.value == "nodes"
    )
    assert nodes.selection_set is not None
    return set(_leaves(nodes.selection_set, ""))


class Tracked(dict[str, Any]):
    """A record that notes every key read from it (as a dotted path; list items share their
    list's path)."""

    def __init__(self, raw: dict[str, Any], prefix: str, reads: set[str]) -> None:
        super().__init__({key: _wrap(value, f"{prefix}{key}", reads) for key, value in raw.items()})
        self._prefix = prefix
        self._reads = reads

    def __getitem__(self, key: str) -> Any:
        self._reads.add(self._prefix + key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._reads.add(self._prefix + key)
        return super().get(key, default)


def _wrap(value: Any, path: str, reads: set[str]) -> Any:
    if isinstance(value, dict):
        return Tracked(value, path + ".", reads)
    if isinstance(value, list):
        return [_wrap(item, path, reads) for item in value]
    return value


def _as_query_path(entity: str, read: str) -> str:
    """A path the inventory mapper read on a flattened level, as the query spells it."""
    if entity != "inventory":
        return read
    if read == "item":
        return "id"  # the item itself (its header)
    return (
        read.removeprefix("item.") if read.startswith("item.") else f"inventoryLevels.nodes.{read}"
    )


@pytest.mark.parametrize("entity", ["products", "orders", "inventory"])
async def test_a_pull_query_selects_exactly_what_the_mapper_and_connector_read(
    entity: str,
) -> None:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, products=40, orders=60) as shop:
        account = AccountInfo(
            "shop", "shopify", shop.url, options={"allow_loopback": True, "bulk": "never"}
        )
        records: list[dict[str, Any]] = []
        async with ShopifyConnector(
            account, auth=HeaderTokenAuth("X-Shopify-Access-Token", SHOP_TOKEN)
        ) as connector:
            async for page in connector.stream(entity):
                records.extend(page.records)
    assert records
    mapper = IMPORT_MAPPERS[entity](MapContext("shop", "shopify", {"currency": "USD"}))
    reads: set[str] = set()
    for record in records:
        mapper.map(Tracked(record, "", reads))
    mapper_reads = {_as_query_path(entity, path) for path in reads}
    query = selected(DOCUMENTS[entity])
    # Everything the mapper reads is selected (else it would always read nothing) ...
    objects = {leaf.rsplit(".", n)[0] for leaf in query for n in range(1, leaf.count(".") + 1)}
    assert mapper_reads <= query | objects, mapper_reads - query - objects
    # ... and nothing is selected that nobody reads.
    assert query - mapper_reads - CONNECTOR_READS[entity] == set()

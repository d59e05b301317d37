"""The sandbox's own reading of Shopify's query-cost rules (never the connector's calculator).

From shopify.dev, "GraphQL Admin API rate limits" → "Cost calculation": a scalar or enum
costs 0, an object 1, a mutation 10, ``pageInfo`` nothing, a field of an interface or union
type the **maximum** of its possible selections, not their sum; a connection is sized by
``first``/``last`` with logarithmic scaling (Shopify staff, community.shopify.dev thread
24364): ``2 + floor(2 ln max(2, n)) × (one node)`` for ``n`` items asked. That reproduces what
a real shop answered for ``product(id:) { variants(first: 250) { nodes { inventoryItem { id
tracked } } } }``: 25 points (thread 23101). Nested connections multiply. The sandbox charges
its bucket with these numbers, so a connector that sizes its pages with a wrong calculator gets
THROTTLED or "max cost exceeded" answers in tests instead of agreeing with itself.

Selections are told apart by their type condition: fragments on one type add up (they all
apply to a node of that type), fragments on different types are alternatives (a node is one of
them) and the most expensive one counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    parse,
)

MUTATION_POINTS = 10
MAX_QUERY_POINTS = 1000
LARGEST_PAGE = 250


def scaled(items: int) -> int:
    """The factor ``items`` nodes of a connection (or a sized list) charge their cost by."""
    if items < 1:
        return 0
    if items < 3:
        return 1  # floor(2 ln 2) = 1: one or two items cost one item
    return int(2 * math.log(min(items, LARGEST_PAGE)))


@lru_cache(maxsize=256)
def parsed(document: str) -> DocumentNode:
    """A document parsed once."""
    return parse(document)


@dataclass(frozen=True)
class CostRules:
    """Shopify's static cost rules applied to one document with its variables."""

    document: DocumentNode
    variables: Mapping[str, Any]

    @property
    def fragments(self) -> dict[str, FragmentDefinitionNode]:
        """Named fragments of the document."""
        return {
            d.name.value: d
            for d in self.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }

    def requested(self) -> int:
        """Points asked of the bucket before the query runs."""
        operation = next(
            d for d in self.document.definitions if isinstance(d, OperationDefinitionNode)
        )
        if operation.operation is OperationType.MUTATION:
            return MUTATION_POINTS
        return self.of_selection(operation.selection_set)

    def page_size(self, node: FieldNode) -> int | None:
        """``first``/``last`` of a field (a variable resolved), or None without one."""
        for argument in node.arguments or ():
            if argument.name.value not in ("first", "last"):
                continue
            value = argument.value
            if isinstance(value, IntValueNode):
                return int(value.value)
            if isinstance(value, VariableNode):
                return int(self.variables.get(value.name.value) or 0)
        return None

    def of_selection(self, selection_set: SelectionSetNode | None) -> int:
        """Fields add up; alternatives for different concrete types count by the largest."""
        if selection_set is None:
            return 0
        common = 0
        per_type: dict[str, int] = {}
        fragments = self.fragments
        for item in selection_set.selections:
            if isinstance(item, FieldNode):
                common += self.of_field(item)
                continue
            if isinstance(item, InlineFragmentNode):
                condition = item.type_condition.name.value if item.type_condition else None
                points = self.of_selection(item.selection_set)
            elif isinstance(item, FragmentSpreadNode):
                definition = fragments[item.name.value]
                condition = definition.type_condition.name.value
                points = self.of_selection(definition.selection_set)
            else:
                continue
            if condition is None:
                common += points
            else:
                per_type[condition] = per_type.get(condition, 0) + points
        return common + max(per_type.values(), default=0)

    def of_field(self, node: FieldNode) -> int:
        """A field's points: scalar 0, object 1 + its selection, connection scaled by page size."""
        if node.selection_set is None or node.name.value == "pageInfo":
            return 0
        size = self.page_size(node)
        if size is None:
            return 1 + self.of_selection(node.selection_set)
        inner = {s.name.value: s for s in node.selection_set.selections if isinstance(s, FieldNode)}
        if "nodes" in inner or "edges" in inner:
            return 2 + scaled(size) * self.of_node(inner)
        return scaled(size) * (1 + self.of_selection(node.selection_set))

    def of_node(self, inner: Mapping[str, FieldNode]) -> int:
        """One node of a connection, selected through ``nodes`` or ``edges { node }``."""
        costs = []
        if "nodes" in inner:
            costs.append(1 + self.of_selection(inner["nodes"].selection_set))
        edges = inner.get("edges")
        if edges is not None and edges.selection_set is not None:
            for item in edges.selection_set.selections:
                if isinstance(item, FieldNode) and item.name.value == "node":
                    costs.append(1 + self.of_selection(item.selection_set))
        return max(costs, default=0)


def requested_points(document: str, variables: Mapping[str, Any] | None = None) -> int:
    """What Shopify asks of the bucket for ``document`` before running it."""
    return CostRules(parsed(document), variables or {}).requested()

"""Shopify GraphQL Admin requested-cost calculation, done before sending a query.

The rules (shopify.dev "GraphQL Admin API rate limits", "Cost calculation"): scalars and enums
cost 0, an object 1, a connection is "sized by ``first`` and ``last``", ``pageInfo`` is free, a
mutation costs 10, an interface or union field the maximum of its possible selections (not their
sum). Shopify scales connections logarithmically, not linearly ("we do incorporate logarithmic
scaling into connection fields", Shopify staff on community.shopify.dev, thread 24364): a
connection costs ``2 + ⌊2·ln(max(2, first))⌋ × (cost of one node)``, so ``first: 250`` multiplies
by 11, not 250. A real shop answered ``product(id:) { variants(first: 250) { nodes {
inventoryItem { id tracked } } } }`` with ``requestedQueryCost`` 25 (community.shopify.dev thread
23101): 1 + 2 + 11 × 2 by this rule, 503 by the linear rule third-party guides give. A list of
objects taking ``first`` (``Customer.addresses``) is sized the same way without the 2; one
without counts as a single object.

The connector uses this to size pages under the 1,000-point single-query maximum and to pace
itself. The sandbox charges its bucket with its own implementation of the documented rules
(``partnersync.sandbox.shopify.cost``), so a mistake here shows up as a failing test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

# graphql-core is imported when a cost is first computed: loading it costs every command's
# start-up (~0.1 s), and most commands never size a query.
if TYPE_CHECKING:
    from graphql import DocumentNode, FieldNode, SelectionSetNode

MUTATION_COST = 10
SINGLE_QUERY_MAX_COST = 1000
MAX_PAGE_SIZE = 250


def size_multiplier(size: int) -> int:
    """How many times a connection or list of ``size`` items charges one item's cost."""
    if size <= 0:
        return 0
    return math.floor(2 * math.log(max(2, min(size, MAX_PAGE_SIZE))))


@lru_cache(maxsize=256)
def parse_document(document: str) -> DocumentNode:
    """Parse once per distinct document."""
    from graphql import parse

    return parse(document)


class _Coster:
    def __init__(self, document: DocumentNode, variables: Mapping[str, Any]) -> None:
        from graphql import FragmentDefinitionNode

        self.variables = variables
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def page_size(self, node: FieldNode) -> int | None:
        from graphql import IntValueNode, VariableNode

        for argument in node.arguments or ():
            if argument.name.value in ("first", "last"):
                value = argument.value
                if isinstance(value, IntValueNode):
                    return int(value.value)
                if isinstance(value, VariableNode):
                    bound = self.variables.get(value.name.value)
                    return int(bound) if bound is not None else 0
        return None

    def selection(self, selection_set: SelectionSetNode | None) -> int:
        # Fragments on different types are alternatives (an interface or union field costs
        # the maximum of its possible selections); fragments on one type add up.
        from graphql import FieldNode, FragmentSpreadNode, InlineFragmentNode

        if selection_set is None:
            return 0
        total = 0
        alternatives: dict[str, int] = {}
        for item in selection_set.selections:
            if isinstance(item, FieldNode):
                total += self.field(item)
                continue
            if isinstance(item, InlineFragmentNode):
                on = item.type_condition.name.value if item.type_condition else ""
                cost = self.selection(item.selection_set)
            elif isinstance(item, FragmentSpreadNode):
                fragment = self.fragments[item.name.value]
                on = fragment.type_condition.name.value
                cost = self.selection(fragment.selection_set)
            else:
                continue
            if on:
                alternatives[on] = alternatives.get(on, 0) + cost
            else:
                total += cost
        return total + max(alternatives.values(), default=0)

    def field(self, node: FieldNode) -> int:
        from graphql import FieldNode

        if node.selection_set is None or node.name.value == "pageInfo":
            return 0
        size = self.page_size(node)
        names = {s.name.value for s in node.selection_set.selections if isinstance(s, FieldNode)}
        if size is not None and names & {"nodes", "edges"}:
            return 2 + size_multiplier(size) * self.connection_node(node.selection_set)
        if size is not None:
            return size_multiplier(size) * (1 + self.selection(node.selection_set))
        return 1 + self.selection(node.selection_set)

    def connection_node(self, selection_set: SelectionSetNode) -> int:
        from graphql import FieldNode

        cost = 0
        for item in selection_set.selections:
            if not isinstance(item, FieldNode) or item.selection_set is None:
                continue
            if item.name.value == "nodes":
                cost = max(cost, 1 + self.selection(item.selection_set))
            elif item.name.value == "edges":
                for inner in item.selection_set.selections:
                    if isinstance(inner, FieldNode) and inner.name.value == "node":
                        cost = max(cost, 1 + self.selection(inner.selection_set))
        return cost


def requested_cost(document: str, variables: Mapping[str, Any] | None = None) -> int:
    """The points Shopify will ask the bucket for before running ``document``."""
    from graphql import OperationDefinitionNode, OperationType

    parsed = parse_document(document)
    operation = next(d for d in parsed.definitions if isinstance(d, OperationDefinitionNode))
    if operation.operation is OperationType.MUTATION:
        return MUTATION_COST
    return _Coster(parsed, variables or {}).selection(operation.selection_set)


def largest_page(
    document: str,
    variables: Mapping[str, Any],
    *,
    page_variable: str = "first",
    max_cost: int = SINGLE_QUERY_MAX_COST,
    hard_cap: int = MAX_PAGE_SIZE,
) -> int:
    """The largest ``page_variable`` keeping the query's requested cost within ``max_cost``.

    The cost only grows with the page size (in steps, by the logarithmic multiplier), so the
    answer is found by bisection."""

    def cost(size: int) -> int:
        return requested_cost(document, {**variables, page_variable: size})

    if cost(1) > max_cost:
        raise ValueError(f"a single item already costs {cost(1)} points, over {max_cost}")
    if cost(hard_cap) <= max_cost:
        return hard_cap
    low, high = 1, hard_cap  # cost(low) fits, cost(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if cost(middle) <= max_cost:
            low = middle
        else:
            high = middle
    return low
